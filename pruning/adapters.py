"""Family adapters: where each architecture keeps its layers, heads, FFN and config fields.

All differences between T5 (and T5 v1.1 / FLAN-T5), BART and BERT-style models live
here, so that surgery, importance and gates are written once. An adapter never
changes a model; it only *finds* things.

Supported:
    * ``t5``: ``T5ForConditionalGeneration`` (ReLU FFN ``wi``/``wo``, or gated-GELU
      ``wi_0``/``wi_1``/``wo`` in T5 v1.1 and FLAN-T5).
    * ``bart``: ``BartForConditionalGeneration`` (also distilbart).
    * ``bert2bert``: ``EncoderDecoderModel`` whose encoder and decoder are BERT-style
      (BERT, MiniLM), e.g. warm-started with ``from_encoder_decoder_pretrained``.
    * ``bert``: a BERT-style encoder alone (``BertModel`` / ``BertFor*``), for EFTNAS.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

SUPPORTED_ENCODER_DECODER = "T5 (t5-*), T5 v1.1 / FLAN-T5, BART (bart-*, distilbart-*), BERT2BERT EncoderDecoderModel"
_BERT_LIKE = ("bert", "roberta")


@dataclass(frozen=True)
class Attention:
    """The projections of one multi-head attention block.

    ``q``, ``k``, ``v`` map hidden -> heads * head_dim (rows grouped by head);
    ``o`` maps heads * head_dim -> hidden (columns grouped by head).
    ``module`` holds the head-count attribute named ``heads_attr`` (empty: none, the module infers it).
    With grouped-query attention (``kv_heads`` > 0), ``k`` and ``v`` map hidden -> kv_heads * head_dim,
    and query head h reads K/V head ``h // (heads / kv_heads)``.
    """

    module: nn.Module
    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear
    head_dim: int
    heads_attr: str
    kv_heads: int = 0  # grouped-query attention: K and V have this many heads (0: as many as Q)
    groups_attr: str = ""  # the module's attribute with query heads per K/V head (GQA)


@dataclass(frozen=True)
class FFN:
    """The FFN of one layer: ``inputs`` map hidden -> intermediate (one Linear, or
    two for a gated FFN); ``output`` maps intermediate -> hidden. Each entry is
    ``(parent_module, attribute_name)`` so surgery can replace the Linear."""

    inputs: tuple[tuple[nn.Module, str], ...]
    output: tuple[nn.Module, str]


@dataclass(frozen=True)
class HiddenSites:
    """Where the hidden dimension d (the residual stream) lives outside the attention and FFN
    Linears of the layers (those come from :meth:`FamilyAdapter.layer_hidden_linears`), for
    CoFi's hidden-dimension pruning (Xia et al., ACL 2022, Sec. 3.1).

    Attributes:
        entries: Modules whose output starts the residual stream: the token embedding (T5) or
            the embedding LayerNorm (BART, BERT). A hidden gate scales their output.
        reads: Other Linears whose input is hidden (LM head, pooler, BERT's LM-head transform).
        writes: Other Linears whose output is hidden (BERT's LM-head transform, whose LayerNorm
            and tied vocabulary projection are sized d).
        embeddings: Every embedding table of width d (columns are hidden dims); tables shared by
            several modules appear once per module.
        norms: Every LayerNorm / RMS norm over d.
        output_norm: The norm right before the LM head (T5), which compensates a gate folded into
            a token embedding the LM head is tied to; None where entries are norms.
    """

    entries: tuple[nn.Module, ...]
    reads: tuple[nn.Linear, ...]
    writes: tuple[nn.Linear, ...]
    embeddings: tuple[nn.Embedding, ...]
    norms: tuple[nn.Module, ...]
    output_norm: nn.Module | None = None


def _hidden_tables(model: nn.Module, d: int) -> tuple[tuple[nn.Embedding, ...], tuple[nn.Module, ...]]:
    """Embeddings of width d (not T5's relative position bias, whose width is the head count) and
    norms over d (``nn.LayerNorm``, T5's RMS ``T5LayerNorm``) anywhere in ``model``."""
    embeddings, norms = [], []
    for name, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, nn.Embedding) and module.embedding_dim == d and "relative_attention_bias" not in name:
            embeddings.append(module)
        elif "LayerNorm" in type(module).__name__ and getattr(module, "weight", None) is not None \
                and tuple(module.weight.shape) == (d,):
            norms.append(module)
    return tuple(embeddings), tuple(norms)


class FamilyAdapter:
    """Interface of a family adapter. See module docstring."""

    family: str = ""

    def encoder_layers(self, model: nn.Module) -> list[nn.Module]:
        """The encoder's layers (blocks), bottom to top."""
        raise NotImplementedError

    def decoder_container(self, model: nn.Module) -> tuple[nn.Module, str] | None:
        """``(parent, attribute)`` of the decoder's ``nn.ModuleList``, or None for an encoder."""
        raise NotImplementedError

    def attention(self, layer: nn.Module) -> Attention:
        """The self-attention projections of one encoder layer."""
        raise NotImplementedError

    def ffn(self, layer: nn.Module) -> FFN:
        """The FFN Linears of one encoder or decoder layer."""
        raise NotImplementedError

    def cross_attention(self, layer: nn.Module) -> Attention:
        """The cross-attention projections of one decoder layer (q from the decoder, k and v
        from the encoder output). ``attention(layer)`` of a decoder layer is its self-attention."""
        raise NotImplementedError

    def decoder_num_heads(self, model: nn.Module) -> int:
        """Heads per decoder self- and cross-attention of the dense model (from the config)."""
        raise NotImplementedError

    def decoder_ffn_dim(self, model: nn.Module) -> int:
        """FFN intermediate size per decoder layer of the dense model (from the config)."""
        raise NotImplementedError

    def encoder_config(self, model: nn.Module):
        """The config object that describes the encoder's sizes."""
        return model.config

    def set_num_decoder_layers(self, model: nn.Module, k: int) -> None:
        """Write the decoder layer count k into every config field that holds it."""
        raise NotImplementedError

    def after_decoder_selection(self, model: nn.Module, kept: tuple[int, ...], old_layers: list[nn.Module]) -> None:
        """Family-specific repairs after decoder layers were dropped (default: none)."""

    # -- sizes, read from the dense config --------------------------------------------
    def num_heads(self, model: nn.Module) -> int:
        """H, attention heads per encoder layer of the dense model (from the config)."""
        raise NotImplementedError

    def ffn_dim(self, model: nn.Module) -> int:
        """FFN intermediate size per encoder layer of the dense model (from the config)."""
        raise NotImplementedError

    def num_decoder_layers(self, model: nn.Module) -> int:
        """Decoder layers the model has now (0 for an encoder)."""
        container = self.decoder_container(model)
        return 0 if container is None else len(getattr(*container))

    def decoder_layers(self, model: nn.Module) -> list[nn.Module]:
        """The decoder's layers, bottom to top (empty for an encoder)."""
        container = self.decoder_container(model)
        return [] if container is None else list(getattr(*container))

    def hidden_size(self, model: nn.Module) -> int:
        """d, the hidden size of the dense model (from the config).

        Raises:
            ValueError: Where encoder and decoder have different hidden sizes (one hidden mask
                cannot cover both).
        """
        raise NotImplementedError

    def hidden_sites(self, model: nn.Module) -> HiddenSites:
        """Where d lives outside the layers' attention and FFN Linears (see :class:`HiddenSites`)."""
        raise NotImplementedError

    def layer_hidden_linears(self, model: nn.Module) -> tuple[list[nn.Linear], list[nn.Linear]]:
        """``(reads, writes)``: every attention and FFN Linear of the encoder and decoder layers
        that reads hidden (Q, K, V of self- and cross-attention, FFN inputs) or writes it
        (attention output projections, FFN outputs)."""
        reads, writes = [], []
        decoder = self.decoder_layers(model)
        for layer in self.encoder_layers(model) + decoder:
            atts = [self.attention(layer)] + ([self.cross_attention(layer)] if any(layer is d for d in decoder) else [])
            for att in atts:
                reads += [att.q, att.k, att.v]
                writes.append(att.o)
            ffn = self.ffn(layer)
            reads += [getattr(*inp) for inp in ffn.inputs]
            writes.append(getattr(*ffn.output))
        return reads, writes

    def params_per_head(self, model: nn.Module) -> int:
        """Parameters one encoder head owns: its rows of Q, K, V (with biases) and its
        columns of the output projection (NASH, Sec. 3: sparsity counts these)."""
        return params_of_one_head(self.attention(self.encoder_layers(model)[0]))

    def params_per_neuron(self, model: nn.Module) -> int:
        """Parameters one encoder FFN neuron owns: a row (and bias) of each input
        Linear (two for gated FFN) and a column of the output Linear."""
        return params_of_one_neuron(self.ffn(self.encoder_layers(model)[0]))


def params_of_one_head(att: Attention) -> int:
    """Parameters one head of an attention block owns: its head_dim rows of Q, K and V (with
    their biases) and head_dim columns of the output projection (cross-attention included:
    K and V read the encoder's hidden size)."""
    per = att.head_dim * (att.q.in_features + att.k.in_features + att.v.in_features + att.o.out_features)
    return per + sum(att.head_dim for lin in (att.q, att.k, att.v) if lin.bias is not None)


def params_of_one_neuron(ffn: FFN) -> int:
    """Parameters one FFN neuron owns: a row (and bias) of each input Linear, a column of the output one."""
    per = sum(getattr(*inp).in_features + (getattr(*inp).bias is not None) for inp in ffn.inputs)
    return per + getattr(*ffn.output).out_features


def per_hidden_dim_of_head(att: Attention) -> int:
    """Of :func:`params_of_one_head`, the parameters per hidden dimension: head_dim in each of
    Q, K, V (a column) and the output projection (a row); the rest are Q, K, V biases."""
    return 4 * att.head_dim


def per_hidden_dim_of_neuron(ffn: FFN) -> int:
    """Of :func:`params_of_one_neuron`, the parameters per hidden dimension: one per FFN Linear."""
    return len(ffn.inputs) + 1


def hidden_axes(reads, writes, embeddings, norms, skip: frozenset[int] = frozenset()) -> dict:
    """Which axes of which parameters are hidden-sized: ``{id(param): (param, {axes})}``, each
    parameter once however many modules hold it (tied tables). Columns (axis 1) of the weights
    of Linears in ``reads`` and of ``embeddings``; rows and bias entries (axis 0) of ``writes``;
    weight and bias of ``norms``. Parameters whose id is in ``skip`` are left out."""
    axes: dict[int, tuple[nn.Parameter, set[int]]] = {}

    def mark(param, axis: int) -> None:
        if param is not None and id(param) not in skip:
            axes.setdefault(id(param), (param, set()))[1].add(axis)

    for module in list(reads) + list(embeddings):
        mark(module.weight, 1)
    for lin in writes:
        mark(lin.weight, 0)
        mark(lin.bias, 0)
    for norm in norms:
        mark(norm.weight, 0)
        mark(getattr(norm, "bias", None), 0)
    return axes


class T5Adapter(FamilyAdapter):
    """T5 and T5 v1.1 / FLAN-T5 (``modeling_t5.py``): blocks in ``encoder.block`` /
    ``decoder.block``; ``layer[0].SelfAttention`` (q, k, v, o, no biases);
    ``layer[-1].DenseReluDense`` (wi or wi_0/wi_1, wo). The relative position bias
    lives only in block 0 of each stack and is shared by the later blocks."""

    family = "t5"

    def encoder_layers(self, model):
        return list(model.encoder.block)

    def decoder_container(self, model):
        return model.decoder, "block"

    def attention(self, layer):
        att = layer.layer[0].SelfAttention
        return Attention(att, att.q, att.k, att.v, att.o, att.key_value_proj_dim, "n_heads")

    def ffn(self, layer):
        dense = layer.layer[-1].DenseReluDense
        names = ("wi_0", "wi_1") if hasattr(dense, "wi_0") else ("wi",)
        return FFN(tuple((dense, n) for n in names), (dense, "wo"))

    def cross_attention(self, layer):
        att = layer.layer[1].EncDecAttention
        return Attention(att, att.q, att.k, att.v, att.o, att.key_value_proj_dim, "n_heads")

    def num_heads(self, model):
        return model.config.num_heads

    def ffn_dim(self, model):
        return model.config.d_ff

    def hidden_size(self, model):
        return model.config.d_model

    def hidden_sites(self, model):
        # T5 scales the decoder output by d_model ** -0.5 before a tied LM head (``model_dim``, set
        # at construction); surgery keeps that attribute, so the pruned model scales as the dense one.
        embeddings, norms = _hidden_tables(model, self.hidden_size(model))
        return HiddenSites(entries=(model.encoder.embed_tokens, model.decoder.embed_tokens), reads=(model.lm_head,),
                           writes=(), embeddings=embeddings, norms=norms, output_norm=model.decoder.final_layer_norm)

    def decoder_num_heads(self, model):
        return model.config.num_heads

    def decoder_ffn_dim(self, model):
        return model.config.d_ff

    def set_num_decoder_layers(self, model, k):
        model.config.num_decoder_layers = k
        model.decoder.config.num_layers = k

    def after_decoder_selection(self, model, kept, old_layers):
        # The relative position bias table is owned by decoder block 0 and shared by
        # all later blocks; if block 0 was dropped, hand its table to the new block 0.
        first = model.decoder.block[0].layer[0].SelfAttention
        if not first.has_relative_attention_bias:
            first.relative_attention_bias = old_layers[0].layer[0].SelfAttention.relative_attention_bias
            first.has_relative_attention_bias = True
        for block in list(model.decoder.block)[1:]:
            att = block.layer[0].SelfAttention
            if att.has_relative_attention_bias:
                att.has_relative_attention_bias = False
                del att.relative_attention_bias


class BartAdapter(FamilyAdapter):
    """BART / distilBART (``modeling_bart.py``): ``model.encoder.layers[i]`` with
    ``self_attn`` (q_proj, k_proj, v_proj, out_proj, with biases), ``fc1``, ``fc2``."""

    family = "bart"

    def encoder_layers(self, model):
        return list(model.model.encoder.layers)

    def decoder_container(self, model):
        return model.model.decoder, "layers"

    def attention(self, layer):
        att = layer.self_attn
        return Attention(att, att.q_proj, att.k_proj, att.v_proj, att.out_proj, att.head_dim, "num_heads")

    def ffn(self, layer):
        return FFN(((layer, "fc1"),), (layer, "fc2"))

    def cross_attention(self, layer):
        att = layer.encoder_attn
        return Attention(att, att.q_proj, att.k_proj, att.v_proj, att.out_proj, att.head_dim, "num_heads")

    def num_heads(self, model):
        return model.config.encoder_attention_heads

    def ffn_dim(self, model):
        return model.config.encoder_ffn_dim

    def decoder_num_heads(self, model):
        return model.config.decoder_attention_heads

    def hidden_size(self, model):
        return model.config.d_model

    def hidden_sites(self, model):
        embeddings, norms = _hidden_tables(model, self.hidden_size(model))
        return HiddenSites(entries=(model.model.encoder.layernorm_embedding, model.model.decoder.layernorm_embedding),
                           reads=(model.lm_head,), writes=(), embeddings=embeddings, norms=norms)

    def decoder_ffn_dim(self, model):
        return model.config.decoder_ffn_dim

    def set_num_decoder_layers(self, model, k):
        model.config.decoder_layers = k


class _BertLayers:
    """Shared accessors for BERT-style layers (``modeling_bert.py``): ``attention.self``
    (query, key, value), ``attention.output.dense``, ``intermediate.dense``, ``output.dense``."""

    @staticmethod
    def attention(layer):
        att = layer.attention.self
        return Attention(att, att.query, att.key, att.value, layer.attention.output.dense,
                         att.attention_head_size, "num_attention_heads")

    @staticmethod
    def ffn(layer):
        return FFN(((layer.intermediate, "dense"),), (layer.output, "dense"))

    @staticmethod
    def cross_attention(layer):
        att = layer.crossattention.self
        return Attention(att, att.query, att.key, att.value, layer.crossattention.output.dense,
                         att.attention_head_size, "num_attention_heads")


class Bert2BertAdapter(FamilyAdapter):
    """``EncoderDecoderModel`` with BERT-style encoder and decoder: encoder layers in
    ``encoder.encoder.layer``, decoder layers in ``decoder.bert.encoder.layer``
    (``BertLMHeadModel``) or ``decoder.<base>.encoder.layer`` for RoBERTa-style."""

    family = "bert2bert"

    def encoder_layers(self, model):
        return list(model.encoder.encoder.layer)

    def decoder_container(self, model):
        base = getattr(model.decoder, model.decoder.base_model_prefix)
        return base.encoder, "layer"

    def attention(self, layer):
        return _BertLayers.attention(layer)

    def ffn(self, layer):
        return _BertLayers.ffn(layer)

    def cross_attention(self, layer):
        return _BertLayers.cross_attention(layer)

    def decoder_num_heads(self, model):
        return model.config.decoder.num_attention_heads

    def hidden_size(self, model):
        enc, dec = model.config.encoder.hidden_size, model.config.decoder.hidden_size
        if enc != dec:
            raise ValueError(f"Encoder hidden size {enc} and decoder hidden size {dec} differ; hidden-dimension "
                             f"pruning needs one hidden size.")
        return enc

    def hidden_sites(self, model):
        decoder_base = getattr(model.decoder, model.decoder.base_model_prefix)
        reads, writes = [], []
        for base in (model.encoder, decoder_base):
            if getattr(base, "pooler", None) is not None:
                reads.append(base.pooler.dense)  # its output (tanh) is not the residual stream: input only
        head = getattr(model.decoder, "cls", None)
        if head is not None:  # BertLMHeadModel: transform (dense d -> d, LayerNorm) then the tied projection
            reads += [head.predictions.transform.dense, head.predictions.decoder]
            writes.append(head.predictions.transform.dense)
        else:
            raise ValueError("This BERT-style decoder has no BERT LM head (cls.predictions); hidden-dimension "
                             "pruning knows BertLMHeadModel only.")
        embeddings, norms = _hidden_tables(model, self.hidden_size(model))
        return HiddenSites(entries=(model.encoder.embeddings.LayerNorm, decoder_base.embeddings.LayerNorm),
                           reads=tuple(reads), writes=tuple(writes), embeddings=embeddings, norms=norms)

    def decoder_ffn_dim(self, model):
        return model.config.decoder.intermediate_size

    def encoder_config(self, model):
        return model.config.encoder

    def num_heads(self, model):
        return model.config.encoder.num_attention_heads

    def ffn_dim(self, model):
        return model.config.encoder.intermediate_size

    def set_num_decoder_layers(self, model, k):
        model.config.decoder.num_hidden_layers = k
        model.decoder.config.num_hidden_layers = k


class BertEncoderAdapter(Bert2BertAdapter):
    """A BERT-style encoder alone (``BertModel``, ``BertForSequenceClassification``), for EFTNAS."""

    family = "bert"

    def _base(self, model):
        return getattr(model, model.base_model_prefix, model)

    def encoder_layers(self, model):
        return list(self._base(model).encoder.layer)

    def decoder_container(self, model):
        return None

    def encoder_config(self, model):
        return model.config

    def num_heads(self, model):
        return model.config.num_attention_heads

    def ffn_dim(self, model):
        return model.config.intermediate_size

    def decoder_num_heads(self, model):
        return 0

    def hidden_size(self, model):
        return model.config.hidden_size

    def hidden_sites(self, model):
        base = self._base(model)
        reads = (base.pooler.dense,) if getattr(base, "pooler", None) is not None else ()
        embeddings, norms = _hidden_tables(model, self.hidden_size(model))
        return HiddenSites(entries=(base.embeddings.LayerNorm,), reads=reads, writes=(), embeddings=embeddings,
                           norms=norms)

    def decoder_ffn_dim(self, model):
        return 0

    def set_num_decoder_layers(self, model, k):
        if k:
            raise ValueError("An encoder-only model has no decoder layers to select.")


class LlamaAdapter(FamilyAdapter):
    """Decoder-only LMs of the Llama layout (``LlamaForCausalLM``; SmolLM2): ``model.model.layers``, each
    with ``self_attn`` (q/k/v/o_proj, grouped-query attention) and a gated FFN ``mlp`` (gate_proj and
    up_proj read hidden, down_proj writes it). No encoder and no cross-attention: plans of this family
    keep decoder layers (``kept_decoder_layers``) and narrow them (``kept_decoder_heads``,
    ``kept_decoder_neurons``); their encoder fields are empty."""

    family = "llama"

    def encoder_layers(self, model):
        return []

    def decoder_container(self, model):
        return model.model, "layers"

    def attention(self, layer):
        a = layer.self_attn
        return Attention(a, a.q_proj, a.k_proj, a.v_proj, a.o_proj, a.head_dim, "",
                         kv_heads=a.k_proj.out_features // a.head_dim, groups_attr="num_key_value_groups")

    def ffn(self, layer):
        return FFN(((layer.mlp, "gate_proj"), (layer.mlp, "up_proj")), (layer.mlp, "down_proj"))

    def cross_attention(self, layer):
        return None

    def num_heads(self, model):
        return 0

    def ffn_dim(self, model):
        return 0

    def decoder_num_heads(self, model):
        return model.config.num_attention_heads

    def decoder_kv_heads(self, model) -> int:
        """K/V heads per layer of the dense model (grouped-query attention)."""
        return model.config.num_key_value_heads

    def decoder_ffn_dim(self, model):
        return model.config.intermediate_size

    def hidden_size(self, model):
        raise ValueError(f"Hidden-dimension pruning (CoFi) is not supported for {self.family} models.")

    def set_num_decoder_layers(self, model, k):
        model.config.num_hidden_layers = k

    def after_decoder_selection(self, model, kept, old_layers):
        # Per-layer lists of the config follow the kept layers (Gemma 3 and newer Llama-style configs
        # list each layer's attention type; the mask and the KV cache are built from it).
        types = getattr(model.config, "layer_types", None)
        if types is not None and len(types) == len(old_layers):
            model.config.layer_types = [types[i] for i in kept]
        for i, layer in enumerate(getattr(*self.decoder_container(model))):
            if hasattr(layer, "attention_type") and getattr(model.config, "layer_types", None):
                layer.attention_type = model.config.layer_types[i]


class Gemma3Adapter(LlamaAdapter):
    """Gemma 3 text models (``Gemma3ForCausalLM``): the Llama layout plus per-head-dim q/k norms (unchanged
    by head pruning), four norms per layer, and ``config.layer_types`` alternating sliding-window and full
    attention, which :meth:`after_decoder_selection` keeps for the kept layers (so the Gemma3Attention
    objects' own ``is_sliding`` / ``sliding_window`` stay right, and the model builds the matching masks)."""

    family = "gemma3"


_ADAPTERS = {"t5": T5Adapter, "bart": BartAdapter, "bert2bert": Bert2BertAdapter, "bert": BertEncoderAdapter,
             "llama": LlamaAdapter, "gemma3": Gemma3Adapter}
DECODER_ONLY_FAMILIES = {"llama": ("llama",), "gemma3": ("gemma3_text", "gemma3")}  # family -> model_type


def lm_family_of_config(config) -> str | None:
    """The decoder-only LM family of a config (``"llama"``, ``"gemma3"``), or None for any other model
    (:func:`family_of_config` covers the encoder-decoder and encoder families)."""
    model_type = getattr(config, "model_type", None)
    for family, types in DECODER_ONLY_FAMILIES.items():
        if model_type in types:
            return family
    return None


def family_of_config(config) -> str:
    """The adapter family for a transformers config.

    Raises:
        ValueError: For a decoder-only or otherwise unsupported architecture, naming
            what is supported.
    """
    model_type = getattr(config, "model_type", None)
    if model_type in ("t5", "mt5"):
        return "t5"
    if model_type == "bart":
        return "bart"
    if model_type == "encoder-decoder":
        enc, dec = config.encoder.model_type, config.decoder.model_type
        if enc in _BERT_LIKE and dec in _BERT_LIKE:
            return "bert2bert"
        raise ValueError(
            f"EncoderDecoderModel with a {enc} encoder and a {dec} decoder is not supported; "
            f"supported: {SUPPORTED_ENCODER_DECODER}."
        )
    if model_type in _BERT_LIKE and not getattr(config, "is_decoder", False):
        return "bert"
    archs = ", ".join(getattr(config, "architectures", None) or []) or model_type
    if not getattr(config, "is_encoder_decoder", False):
        raise ValueError(
            f"{archs} is a decoder-only (or unknown) architecture; NASH needs an encoder-decoder model. "
            f"Supported: {SUPPORTED_ENCODER_DECODER}."
        )
    raise ValueError(f"Model type {model_type!r} is not supported. Supported: {SUPPORTED_ENCODER_DECODER}.")


def get_adapter(model_or_config) -> FamilyAdapter:
    """The family adapter for a model (or its config).

    Raises:
        ValueError: For unsupported architectures (see :func:`family_of_config`).
    """
    config = getattr(model_or_config, "config", model_or_config)
    return _ADAPTERS[lm_family_of_config(config) or family_of_config(config)]()
