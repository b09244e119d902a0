"""Model surgery: build a physically smaller model from a :class:`PruningPlan`.

Small pure functions return *new* smaller ``nn.Linear`` layers from the indices to
keep (the idea of ``prune_linear_layer`` in transformers v4's ``pytorch_utils.py``);
:func:`apply_plan` composes them, updates head counts and config fields in the same
place, and never edits a transformers model file. Transformers 5 removed
``prune_heads`` / ``config.pruned_heads``, so non-uniform encoder widths are rebuilt
from ``plan.json`` at load time by :func:`load_pruned`.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .adapters import DECODER_ONLY_FAMILIES, Attention, FamilyAdapter, get_adapter, hidden_axes
from .atomic import atomic_directory
from .plan import PruningPlan

try:  # T5 is the only family that needs a head-subset attention (shared position bias).
    from transformers.models.t5.modeling_t5 import T5Attention
except ImportError:  # pragma: no cover - transformers always ships T5
    T5Attention = None


def prune_linear(layer: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A new ``nn.Linear`` keeping only ``index`` along ``dim`` of the weight.

    Args:
        layer: Linear with weight (out_features, in_features).
        index: 1-D long tensor of kept indices.
        dim: 0 keeps output rows (and bias entries); 1 keeps input columns (bias kept whole).

    Returns:
        A new Linear on the same device and dtype, weights copied (not shared), with
        ``requires_grad`` as in ``layer``.
    """
    index = index.to(layer.weight.device)
    weight = layer.weight.index_select(dim, index).detach().clone()
    bias = None
    if layer.bias is not None:
        bias = (layer.bias.index_select(0, index) if dim == 0 else layer.bias).detach().clone()
    out_features, in_features = weight.shape
    with warnings.catch_warnings():  # a skipped sublayer's Linear has 0 inputs or outputs: nothing to initialise
        warnings.filterwarnings("ignore", "Initializing zero-element tensors is a no-op")
        new = nn.Linear(in_features, out_features, bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    new.weight.requires_grad = layer.weight.requires_grad
    if bias is not None:
        new.bias.requires_grad = layer.bias.requires_grad
    return new


def head_index(heads: tuple[int, ...], head_dim: int) -> torch.Tensor:
    """Rows (of Q/K/V) or columns (of the output projection) owned by ``heads``.

    Returns:
        Long tensor of shape (len(heads) * head_dim,).
    """
    if not heads:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in heads])


def keep_heads(adapter: FamilyAdapter, layer: nn.Module, heads: tuple[int, ...], current_heads: int,
                attention: Attention | None = None) -> None:
    """Keep ``heads`` (indices into the block's current heads) of one attention block of
    ``layer``, in place: its self-attention, or the block ``attention`` names (a decoder
    layer's cross-attention, ``adapter.cross_attention(layer)``).

    An empty ``heads`` removes the block's attention entirely (EFTNAS's skipped sublayer): this
    is supported for BERT self-attention (``BertSelfAttention``), which becomes a
    :class:`SkippedSelfAttention` with no parameters, while the output projection keeps its bias
    (a Linear with 0 inputs), so the layer computes LayerNorm(x + bias) exactly as a zero-head
    attention would.

    Raises:
        ValueError: If ``heads`` is empty for any other attention (T5, BART, a decoder's
            blocks): keep at least one head per layer there.
    """
    if len(heads) == current_heads:
        return
    att = attention or adapter.attention(layer)
    if not heads:
        if attention is not None or type(att.module).__name__ != "BertSelfAttention":
            raise ValueError("Removing every head of an attention block is supported only for a BERT encoder's "
                             "self-attention; keep at least one head per layer.")
        _replace_module(layer, att.module, SkippedSelfAttention())
        _replace_linear(_parent_of(layer, att.o), att.o, prune_linear(att.o, head_index((), att.head_dim), 1))
        return
    index = head_index(heads, att.head_dim)
    if att.kv_heads:  # grouped-query attention: K and V keep the groups that keep query heads
        groups = grouped_query_heads(heads, current_heads, att.kv_heads)
        kv_index = head_index(tuple(groups), att.head_dim)
        projections = (("q", att.q, index), ("k", att.k, kv_index), ("v", att.v, kv_index))
    else:
        projections = (("q", att.q, index), ("k", att.k, index), ("v", att.v, index))
    for _name, lin, rows in projections:
        _replace_linear(att.module, lin, prune_linear(lin, rows, 0))
    o_parent = _parent_of(layer, att.o)
    _replace_linear(o_parent, att.o, prune_linear(att.o, index, 1))
    if att.kv_heads:
        setattr(att.module, att.groups_attr, len(heads) // len(groups))
    if att.heads_attr:
        setattr(att.module, att.heads_attr, len(heads))
    for size_attr in ("inner_dim", "all_head_size"):
        if hasattr(att.module, size_attr):
            setattr(att.module, size_attr, len(heads) * att.head_dim)
    if adapter.family == "t5":
        _use_head_subset_of_position_bias(att.module, heads)


def grouped_query_heads(heads: tuple[int, ...], num_heads: int, kv_heads: int) -> dict[int, tuple[int, ...]]:
    """The K/V groups that kept query heads ``heads`` (of ``num_heads``) fall in, with their query heads:
    ``{group: (query heads, ...)}``. Query head h reads K/V head ``h // (num_heads // kv_heads)``
    (grouped-query attention, Ainslie et al., EMNLP 2023, Sec. 2.2).

    A pruned GQA block must keep the same number of query heads in every group it keeps, because the
    attention repeats each K/V head ``num_key_value_groups`` times (one number per layer, as
    transformers' ``repeat_kv`` does). Both ways of removing heads satisfy this: removing whole groups
    (a K/V head and all its query heads: the K/V cache shrinks) and removing the same number of query
    heads from every group (finer steps; the K/V cache stays).

    Raises:
        ValueError: If the kept groups keep different numbers of query heads.
    """
    size = num_heads // kv_heads
    groups: dict[int, list[int]] = {}
    for h in heads:
        groups.setdefault(h // size, []).append(h)
    counts = {len(q) for q in groups.values()}
    if len(counts) > 1:
        raise ValueError(f"Grouped-query attention ({num_heads} query heads sharing {kv_heads} K/V heads) keeps the "
                         f"same number of query heads in every kept group; the plan keeps {sorted(heads)}, "
                         f"which gives groups of {sorted(counts)}. Keep whole groups, or as many heads in each.")
    return {g: tuple(q) for g, q in groups.items()}


class SkippedSelfAttention(nn.Module):
    """A BERT self-attention with every head removed (EFTNAS's skipped attention sublayer,
    Munoz et al. 2024, Sec. 3.1: a layer under 2% of its width may be skipped).

    It has no parameters and returns a (B, T, 0) tensor, which the output projection (a Linear
    with 0 inputs, bias kept) turns into its bias; no attention is computed.
    """

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, None]:
        """(B, T, d) -> ((B, T, 0) zeros, no attention weights)."""
        return hidden_states.new_zeros(*hidden_states.shape[:-1], 0), None


def keep_neurons(adapter: FamilyAdapter, layer: nn.Module, neurons: tuple[int, ...], current_dim: int) -> None:
    """Keep ``neurons`` (indices into the current FFN intermediate) of one layer, in place."""
    if len(neurons) == current_dim:
        return
    ffn = adapter.ffn(layer)
    index = torch.tensor(neurons, dtype=torch.long)
    for parent, name in ffn.inputs:
        setattr(parent, name, prune_linear(getattr(parent, name), index, 0))
    parent, name = ffn.output
    setattr(parent, name, prune_linear(getattr(parent, name), index, 1))


def narrow_encoder(model: nn.Module, plan: PruningPlan) -> None:
    """Apply the encoder part of ``plan`` (heads and FFN neurons) in place to a model
    whose encoder is still dense-shaped.

    Raises:
        ValueError: If the plan does not fit the model (family, layer count, sizes).
    """
    adapter = get_adapter(model)
    _check_plan_fits(adapter, model, plan)
    for i, layer in enumerate(adapter.encoder_layers(model)):
        att, ffn = adapter.attention(layer), adapter.ffn(layer)
        if att.q.out_features != plan.num_heads * att.head_dim or getattr(*ffn.output).in_features != plan.ffn_dim:
            raise ValueError(f"Encoder layer {i} is already narrowed; apply a plan to the dense model it was made for.")
    for layer, heads, neurons in zip(adapter.encoder_layers(model), plan.kept_encoder_heads, plan.kept_encoder_neurons):
        keep_heads(adapter, layer, heads, plan.num_heads)
        keep_neurons(adapter, layer, neurons, plan.ffn_dim)


def narrow_decoder(model: nn.Module, plan: PruningPlan) -> None:
    """Apply the decoder widths of ``plan`` (self-attention heads, cross-attention heads, FFN
    neurons of each kept decoder layer) in place, before or after :func:`select_decoder`: a
    decoder with all L dense layers is narrowed at the kept indices, one with exactly the k
    kept layers layer by layer. Nothing happens for a plan without decoder widths.

    Raises:
        ValueError: If the decoder has neither L nor k layers, or a layer is already narrowed
            or of another size than the plan's dense decoder.
    """
    if not plan.narrows_decoder:
        return
    adapter = get_adapter(model)
    layers = adapter.decoder_layers(model)
    if len(layers) == plan.num_decoder_layers:
        pairs = [(layers[i], i) for i in plan.kept_decoder_layers]
    elif len(layers) == len(plan.kept_decoder_layers):
        pairs = list(zip(layers, plan.kept_decoder_layers))
    else:
        raise ValueError(f"The decoder has {len(layers)} layers; the plan is for {plan.num_decoder_layers} "
                         f"(keeping {len(plan.kept_decoder_layers)}).")
    heads, ffn_dim = plan.decoder_num_heads, plan.decoder_ffn_dim
    for layer, i in pairs:
        self_att, cross_att = adapter.attention(layer), adapter.cross_attention(layer)
        if (self_att.q.out_features != heads * self_att.head_dim
                or cross_att is not None and cross_att.q.out_features != heads * cross_att.head_dim
                or getattr(*adapter.ffn(layer).output).in_features != ffn_dim):
            raise ValueError(f"Decoder layer {i} is already narrowed or not of the plan's dense size "
                             f"({heads} heads, FFN {ffn_dim}).")
        if plan.kept_decoder_heads:
            keep_heads(adapter, layer, plan.kept_decoder_heads[i], heads)
        if plan.kept_cross_heads:
            keep_heads(adapter, layer, plan.kept_cross_heads[i], heads, attention=cross_att)
        if plan.kept_decoder_neurons:
            keep_neurons(adapter, layer, plan.kept_decoder_neurons[i], ffn_dim)


def narrow_hidden(model: nn.Module, plan: PruningPlan) -> None:
    """Keep only the hidden dimensions ``plan.kept_hidden_dims`` everywhere on the residual stream, in
    place (CoFi's hidden-dimension pruning, Xia et al. 2022, Sec. 3.1; CoFi's ``prune_hidden``):
    columns of every embedding table of width d and of every Linear that reads hidden (Q, K, V,
    FFN inputs, LM head, pooler), rows and bias entries of every Linear that writes it (attention
    output projections, FFN outputs, BERT's LM-head transform), and entries of every norm, which
    then normalises over the kept dimensions only. Works at any point of :func:`apply_plan`
    (heads, neurons and decoder layers are independent of it). Tied tables (T5's and BART's shared
    embedding and LM head, BERT's decoder embedding and projection) stay tied: each parameter is
    cut once and handed to every module that holds it. T5's tied-head scale ``model_dim`` is kept
    at the dense d, as in the gated model. Nothing happens for a plan without hidden dims.

    Raises:
        ValueError: If the model's hidden size is not the plan's dense one, or it is already narrowed.
    """
    if not plan.narrows_hidden:
        return
    adapter = get_adapter(model)
    sites = adapter.hidden_sites(model)
    d = plan.hidden_size
    if adapter.hidden_size(model) != d:
        raise ValueError(f"The plan is for hidden size {d}; the model has {adapter.hidden_size(model)}.")
    reads, writes = adapter.layer_hidden_linears(model)
    if any(lin.in_features != d for lin in reads):
        raise ValueError("The model's hidden dimensions are already narrowed; apply the plan to the dense model.")
    marks = hidden_axes(reads + list(sites.reads), writes + list(sites.writes), sites.embeddings, sites.norms)
    new: dict[int, nn.Parameter] = {}
    for key, (param, dims) in marks.items():
        data = param.detach()
        for dim in sorted(dims):
            data = data.index_select(dim, torch.tensor(plan.kept_hidden_dims, device=data.device))
        new[key] = nn.Parameter(data.clone(), requires_grad=param.requires_grad)
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is not None and id(param) in new:
                module._parameters[name] = new[id(param)]
        if isinstance(module, nn.Linear):
            module.out_features, module.in_features = module.weight.shape
        elif isinstance(module, nn.Embedding):
            module.embedding_dim = module.weight.shape[1]
        elif isinstance(module, nn.LayerNorm):
            module.normalized_shape = (module.weight.shape[0],)


def select_decoder(model: nn.Module, kept: tuple[int, ...]) -> None:
    """Keep only decoder layers ``kept`` (indices into the dense decoder), in place.

    Renumbers ``layer_idx`` of the kept layers to 0..k-1 so that generation caches
    (``DynamicCache`` / ``EncoderDecoderCache``, indexed by ``layer_idx``) address the
    kept layers, updates the config's decoder layer count, and lets the family
    repair shared state (T5's relative position bias, owned by block 0).
    """
    adapter = get_adapter(model)
    container = adapter.decoder_container(model)
    if container is None:
        if kept:
            raise ValueError("This model has no decoder; the plan must keep no decoder layers.")
        return
    parent, attr = container
    old_layers = list(getattr(parent, attr))
    if tuple(kept) == tuple(range(len(old_layers))):
        return
    setattr(parent, attr, nn.ModuleList([old_layers[i] for i in kept]))
    for new_idx, layer in enumerate(getattr(parent, attr)):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_idx
    adapter.set_num_decoder_layers(model, len(kept))
    adapter.after_decoder_selection(model, tuple(kept), old_layers)


def apply_plan(model: nn.Module, plan: PruningPlan, *, inplace: bool = False) -> nn.Module:
    """Build the physically smaller model that ``plan`` describes.

    Args:
        model: A dense model of a supported family (see ``pruning.adapters``).
        plan: The plan; its sizes must match the model.
        inplace: Modify ``model`` instead of a deep copy.

    Returns:
        The pruned model (a ``PreTrainedModel`` of the same class), in eval mode if
        the input was.

    Raises:
        ValueError: If the plan does not fit the model.
    """
    target = model if inplace else copy.deepcopy(model)
    narrow_encoder(target, plan)
    narrow_decoder(target, plan)
    select_decoder(target, plan.kept_decoder_layers)
    narrow_hidden(target, plan)
    target.config.pruning_plan_summary = plan.describe()
    return target


def save_pruned(model: nn.Module, plan: PruningPlan, directory: str | os.PathLike, tokenizer=None,
                extra_files: dict[str, dict] | None = None) -> Path:
    """Save a pruned model with ``save_pretrained`` plus ``plan.json``, atomically.

    Everything is written into a temporary sibling folder that replaces
    ``directory`` only when complete, so a crash leaves no half-written model.

    Args:
        extra_files: Optional ``{file name: JSON-able dict}`` written beside the model
            (e.g. ``metrics.json``).

    Returns:
        The final folder.
    """
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        plan.save(tmp)
        for name, data in (extra_files or {}).items():
            (tmp / name).write_text(json.dumps(data, indent=1, default=str))
    return directory


def load_pruned(directory: str | os.PathLike, *, device: str | torch.device = "cpu", quantized: bool = True) -> nn.Module:
    """Load a model written by :func:`save_pruned` (the project's documented loader).

    The saved config already has the reduced decoder layer count; the encoder's (and, for
    plans that narrow them, the decoder's) per-layer widths and the hidden dimensions are
    rebuilt from ``plan.json`` before the weights are loaded (the config keeps the dense
    hidden size, which BART and BERT also use to derive the head size).

    A plan with ``quantization`` = ``"int8"`` gives the int8 model (``pruning.quantization``, CPU only),
    unless ``quantized`` is False (then the fp32 weights as saved, e.g. to count MACs).

    Raises:
        FileNotFoundError: If ``directory`` has no ``plan.json`` or no weights.
        ValueError: If the weights do not match the shapes the plan describes, or an int8
            model is asked for on a GPU.
    """
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoModel

    directory = Path(directory)
    plan = PruningPlan.load(directory)
    config = AutoConfig.from_pretrained(directory)
    archs = getattr(config, "architectures", None) or []
    if plan.family in DECODER_ONLY_FAMILIES:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_config(config)
    elif plan.family == "bert" and any("SequenceClassification" in a for a in archs):
        model = AutoModelForSequenceClassification.from_config(config)
    elif plan.family == "bert":
        model = AutoModel.from_config(config)
    else:
        model = AutoModelForSeq2SeqLM.from_config(config)
    narrow_encoder(model, plan)
    narrow_decoder(model, plan)
    narrow_hidden(model, plan)
    state = read_safetensors(directory)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise ValueError(f"The weights in {directory} do not match its plan.json: {err}") from err
    tied = _tied_parameter_names(model)
    really_missing = [k for k in missing if k not in tied]
    if really_missing or unexpected:
        raise ValueError(f"Weights in {directory} do not match the model: missing {really_missing[:5]}, "
                         f"unexpected {unexpected[:5]}.")
    model.tie_weights()
    if plan.quantization != "none" and quantized:  # saved in fp32; quantized again at load (pruning.quantization)
        from .quantization import quantize

        if torch.device(device).type != "cpu":
            raise ValueError(f"{directory} holds an {plan.quantization} model, which runs on the CPU; load it with "
                             f"device='cpu'.")
        return quantize(model.eval(), plan.quantization)
    return model.to(device).eval()


def read_safetensors(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of every ``*.safetensors`` file in ``directory`` (a sharded checkpoint too).

    Raises:
        FileNotFoundError: If there are none.
    """
    from safetensors.torch import load_file

    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"No *.safetensors weights in {directory}.")
    state = {}
    for f in files:
        state.update(load_file(f))
    return state


# -- helpers ----------------------------------------------------------------------------

def _tied_parameter_names(model: nn.Module) -> set[str]:
    """Names of parameters that share storage with an earlier one (tied embeddings)."""
    seen, tied = {}, set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            tied.add(name)
            tied.add(seen[id(p)])
        else:
            seen[id(p)] = name
    keys = getattr(model, "_tied_weights_keys", None) or {}
    tied.update(keys if isinstance(keys, (list, set, tuple)) else list(keys))
    return tied


def _parent_of(root: nn.Module, child: nn.Module) -> nn.Module:
    for module in root.modules():
        for sub in module.children():
            if sub is child:
                return module
    raise ValueError("Linear layer not found under the given layer.")


def _replace_module(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    parent = _parent_of(root, old)
    for name, child in parent.named_children():
        if child is old:
            setattr(parent, name, new)
            return
    raise ValueError("Module not found in its parent.")  # pragma: no cover - _parent_of found it


def _replace_linear(parent: nn.Module, old: nn.Linear, new: nn.Linear) -> None:
    for name, sub in parent.named_children():
        if sub is old:
            setattr(parent, name, new)
            return
    raise ValueError("Linear layer not found in its parent module.")


def _check_plan_fits(adapter: FamilyAdapter, model: nn.Module, plan: PruningPlan) -> None:
    if plan.family != adapter.family:
        raise ValueError(f"The plan was made for a {plan.family} model but this is a {adapter.family} model.")
    n_enc = len(adapter.encoder_layers(model))
    if plan.num_encoder_layers != n_enc:
        raise ValueError(f"The plan describes {plan.num_encoder_layers} encoder layers; the model has {n_enc}.")
    if plan.num_heads != adapter.num_heads(model) or plan.ffn_dim != adapter.ffn_dim(model):
        raise ValueError(
            f"The plan is for {plan.num_heads} heads / FFN {plan.ffn_dim}; the model has "
            f"{adapter.num_heads(model)} heads / FFN {adapter.ffn_dim(model)}."
        )
    if plan.kept_hidden_dims and plan.hidden_size != adapter.hidden_size(model):
        raise ValueError(f"The plan is for hidden size {plan.hidden_size}; the model has {adapter.hidden_size(model)}.")
    if plan.narrows_decoder and (plan.decoder_num_heads, plan.decoder_ffn_dim) != (
            adapter.decoder_num_heads(model), adapter.decoder_ffn_dim(model)):
        raise ValueError(
            f"The plan's decoder has {plan.decoder_num_heads} heads / FFN {plan.decoder_ffn_dim}; the model's has "
            f"{adapter.decoder_num_heads(model)} heads / FFN {adapter.decoder_ffn_dim(model)}."
        )


if T5Attention is not None:

    class HeadSubsetT5Attention(T5Attention):
        """T5 attention (encoder or decoder, self or cross) that keeps a subset of the original heads.

        T5 computes the relative position bias once, in block 0 of each stack, as a tensor of
        shape (1, H, q_len, k_len) for all H original heads, and passes it to every later
        block (``T5Stack.forward``). A self-attention with fewer heads must add only its kept
        heads' slice, and must hand the *full* bias on to the next block; in the decoder the
        bias of block 0 covers the cached positions too (queries start after
        ``past_seen_tokens``, keys span cache + new tokens). Cross-attention has no position
        bias (T5 adds zeros of its own head count), so a narrowed one computes its own zeros
        and passes on what it received. This subclass does exactly that and nothing else; its
        parameters and their names are those of ``T5Attention``, so checkpoints are unchanged.
        """

        kept_heads: tuple[int, ...] = ()

        def forward(self, hidden_states, mask=None, key_value_states=None, position_bias=None,
                    past_key_values=None, **kwargs):
            if key_value_states is not None:
                out, _, weights = super().forward(hidden_states, mask, key_value_states, None, past_key_values,
                                                  **kwargs)
                return out, position_bias, weights
            if position_bias is None:
                if not self.has_relative_attention_bias:
                    return super().forward(hidden_states, mask, None, None, past_key_values, **kwargs)
                length = hidden_states.shape[1]
                past = past_key_values.get_seq_length(self.layer_idx) if past_key_values is not None else 0
                position_bias = self.compute_bias(length, past + length, device=hidden_states.device,
                                                  past_seen_tokens=past)  # (1, H, T, past + T)
            index = torch.tensor(self.kept_heads, device=position_bias.device)
            own = position_bias.index_select(1, index)  # (1 or B, kept, T, K)
            out, _, weights = super().forward(hidden_states, mask, None, own, past_key_values, **kwargs)
            return out, position_bias, weights


def _use_head_subset_of_position_bias(att: nn.Module, heads: tuple[int, ...]) -> None:
    """Turn a T5 attention into :class:`HeadSubsetT5Attention` (see there)."""
    att.__class__ = HeadSubsetT5Attention
    att.kept_heads = tuple(heads)
