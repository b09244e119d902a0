"""Which decoder layers, attention heads and FFN neurons of a decoder-only LM matter, measured on a few
calibration texts (issue 18). Every function takes ``batches``: an iterable of dicts with ``input_ids``
and ``attention_mask``, each of shape (B, T); the LM loss is next-token cross-entropy on the unpadded
tokens.

Depth (which k of the L layers to keep; :func:`select_lm_layers`):
    * ``uniform``: NASH's rule (Ko et al., Findings of EMNLP 2023, Sec. 4), ``pruning.layers``;
    * ``block-influence``: ShortGPT (Men et al., 2024, Sec. 3.1, Eq. 1): BI_i = 1 - E_t cos(x_i,t, x_i+1,t),
      one minus the mean cosine similarity of layer i's input and output hidden states over tokens;
      the layers with the lowest BI (those that change the residual stream least) are removed;
    * ``perplexity``: Shortened LLaMA (Kim et al., 2024, Sec. 3, the PPL criterion): the calibration
      perplexity with each layer removed alone; the layers whose removal raises it least are removed
      (one shot: scores from the dense model, not recomputed after each removal).

Width (which query heads and FFN neurons to keep inside each layer; :func:`width_scores`):
    * ``taylor``: first-order Taylor importance of a multiplicative mask on each head's output and each
      neuron (Michel et al., NeurIPS 2019, Sec. 4.1, Eq. 2), as ``pruning.importance`` does for NASH;
    * ``activation``: Minitron (Muralidharan et al., 2024, Sec. 2.2): the size of each head's attention
      output and each neuron's activation on the calibration tokens, aggregated here as the L2 norm over
      every unpadded token (no gradient needed).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from .adapters import get_adapter
from .layers import select_decoder_layers

LM_LAYER_SELECTIONS = ("uniform", "block-influence", "perplexity")
WIDTH_CRITERIA = ("taylor", "activation")


def lm_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, int]:
    """(summed next-token cross-entropy in nats over the unpadded target tokens, number of those tokens)."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1]
    targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                       ignore_index=-100, reduction="sum")
    return loss, int((targets != -100).sum())


@torch.no_grad()
def perplexity(model: nn.Module, batches: Iterable[dict]) -> float:
    """exp(mean next-token cross-entropy) over every unpadded target token of ``batches``."""
    total, count = 0.0, 0
    for batch in batches:
        loss, n = lm_loss(model, batch)
        total, count = total + float(loss), count + n
    return math.exp(total / max(count, 1))


@torch.no_grad()
def block_influence(model: nn.Module, batches: Iterable[dict]) -> torch.Tensor:
    """ShortGPT's Block Influence of every decoder layer (see the module docstring).

    Returns:
        (L,) float tensor in [0, 2]; higher: the layer changes its input more (more important).
    """
    layers = get_adapter(model).decoder_layers(model)
    sums, counts = torch.zeros(len(layers), dtype=torch.float64), 0
    seen: dict[int, torch.Tensor] = {}

    def hook(i):
        def record(module, args, kwargs, output):
            x_in = kwargs.get("hidden_states", args[0] if args else None)
            x_out = output[0] if isinstance(output, tuple) else output
            seen[i] = nn.functional.cosine_similarity(x_in.float(), x_out.float(), dim=-1)  # (B, T)
        return record

    handles = [layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]
    try:
        for batch in batches:
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
            real = batch["attention_mask"].bool()
            for i in range(len(layers)):
                sums[i] += float(seen[i][real].sum())
            counts += int(real.sum())
    finally:
        for h in handles:
            h.remove()
    return (1.0 - sums / max(counts, 1)).float()


@torch.no_grad()
def perplexity_sensitivity(model: nn.Module, batches: Iterable[dict]) -> torch.Tensor:
    """Shortened LLaMA's PPL criterion: the calibration perplexity with each decoder layer removed alone.

    Returns:
        (L,) float tensor; higher: removing the layer hurts more (more important).
    """
    batches = list(batches)
    layers = get_adapter(model).decoder_layers(model)
    scores = torch.zeros(len(layers))
    for i, layer in enumerate(layers):
        forward = layer.forward
        layer.forward = _pass_through
        try:
            scores[i] = perplexity(model, batches)
        finally:
            layer.forward = forward
    return scores


def _pass_through(hidden_states, *args, **kwargs):
    return hidden_states


def select_lm_layers(model: nn.Module, keep: int, how: str = "block-influence",
                     batches: Iterable[dict] | None = None) -> tuple[tuple[int, ...], torch.Tensor | None]:
    """The ``keep`` decoder layers to keep, and the per-layer scores that chose them (None for uniform).

    Raises:
        ValueError: If ``keep`` is not in [1, L], ``how`` is unknown, or a data-driven selection gets no
            batches.
    """
    n = len(get_adapter(model).decoder_layers(model))
    if how == "uniform":
        return select_decoder_layers(n, keep, "uniform"), None
    if how not in LM_LAYER_SELECTIONS:
        raise ValueError(f"Unknown layer selection {how!r}; choose one of {', '.join(LM_LAYER_SELECTIONS)}.")
    if not 1 <= keep <= n:
        raise ValueError(f"Layers to keep must be between 1 and {n} (the model's count), got {keep}.")
    if batches is None:
        raise ValueError(f"{how} needs calibration texts.")
    scores = block_influence(model, batches) if how == "block-influence" else perplexity_sensitivity(model, batches)
    kept = torch.topk(scores, keep).indices
    return tuple(sorted(int(i) for i in kept)), scores


def width_scores(model: nn.Module, batches: Iterable[dict], criterion: str = "activation"
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Importance of every query head and FFN neuron of every decoder layer (see the module docstring).

    Returns:
        (head scores: per layer an (H,) tensor, neuron scores: per layer an (F,) tensor); higher: more
        important.

    Raises:
        ValueError: For an unknown criterion.
    """
    if criterion not in WIDTH_CRITERIA:
        raise ValueError(f"Unknown width criterion {criterion!r}; choose one of {', '.join(WIDTH_CRITERIA)}.")
    adapter = get_adapter(model)
    layers = adapter.decoder_layers(model)
    atts = [adapter.attention(layer) for layer in layers]
    outs = [getattr(*adapter.ffn(layer).output) for layer in layers]
    heads = [torch.zeros(a.o.in_features // a.head_dim) for a in atts]
    neurons = [torch.zeros(o.in_features) for o in outs]
    taylor = criterion == "taylor"
    head_masks = [torch.ones(len(h), requires_grad=taylor) for h in heads]
    neuron_masks = [torch.ones(len(n), requires_grad=taylor) for n in neurons]
    current: dict[str, torch.Tensor] = {}

    def on_heads(i, head_dim):
        def pre(module, args):
            x = args[0]
            per_head = x.unflatten(-1, (-1, head_dim))  # (B, T, H, head_dim)
            if not taylor:
                real = current["mask"].bool()
                heads[i] += per_head[real].detach().float().norm(dim=-1).pow(2).sum(0)
                return None
            return ((per_head * head_masks[i][:, None]).flatten(-2),)
        return pre

    def on_neurons(i):
        def pre(module, args):
            x = args[0]
            if not taylor:
                neurons[i] += x[current["mask"].bool()].detach().float().pow(2).sum(0)
                return None
            return (x * neuron_masks[i],)
        return pre

    handles = [a.o.register_forward_pre_hook(on_heads(i, a.head_dim)) for i, a in enumerate(atts)]
    handles += [o.register_forward_pre_hook(on_neurons(i)) for i, o in enumerate(outs)]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            current["mask"] = batch["attention_mask"]
            if taylor:
                loss, n = lm_loss(model, batch)
                grads = torch.autograd.grad(loss / max(n, 1), head_masks + neuron_masks)
                for score, grad in zip(heads + neurons, grads):
                    score += grad.abs()
            else:
                with torch.no_grad():
                    model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not taylor:
        heads, neurons = [h.sqrt() for h in heads], [n.sqrt() for n in neurons]
    return heads, neurons
