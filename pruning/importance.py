"""Training-free importance of encoder heads and FFN neurons, and plans from scores.

Criterion: first-order Taylor expansion of the loss with respect to a multiplicative
mask on each head's output and each FFN neuron (Michel, Levy & Neubig, "Are Sixteen
Heads Really Better than One?", NeurIPS 2019, Sec. 4.1, Eq. 2; the same mask-gradient
view as Molchanov et al. 2019 and Kwon et al. 2022). For a mask variable m fixed at
1, I(m) = E_x |dL(x)/dm|: the expected absolute change of the loss if the unit were
removed, to first order. Scores are normalised per layer by their L2 norm (Michel et
al., Sec. 4.2) so that layers compare, then ranked globally within each family.

The masks act through forward pre-hooks on the attention output projection and the
FFN output Linear, so no model file is forked; learned L0 gates (a later step) use
the same hook points and also produce a :class:`PruningPlan`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from .adapters import get_adapter
from .plan import PruningPlan


@dataclass(frozen=True)
class ImportanceScores:
    """One score per unit; higher means more important.

    Attributes:
        head_scores: Per encoder layer, a float tensor of shape (H,).
        neuron_scores: Per encoder layer, a float tensor of shape (ffn_dim,).
        criterion: Name of the criterion that produced the scores.
        num_examples: Calibration examples the scores were averaged over.
    """

    head_scores: list[torch.Tensor]
    neuron_scores: list[torch.Tensor]
    criterion: str
    num_examples: int


def taylor_importance(model: nn.Module, batches: Iterable[dict], device: str | torch.device = "cpu") -> ImportanceScores:
    """First-order Taylor importance of every encoder head and FFN neuron.

    Args:
        model: A dense model of a supported family; it is not modified (hooks are
            removed, gradients of its weights are not kept).
        batches: Calibration batches with ``input_ids`` (B, T_src), ``attention_mask``
            (B, T_src) and ``labels`` (B, T_tgt), as the model's forward takes them.
        device: Where to run.

    Returns:
        :class:`ImportanceScores` with sum over examples of |dL/dm| per unit
        (per-example gradients, since each example has its own mask entry).

    Raises:
        ValueError: If ``batches`` is empty.
    """
    adapter = get_adapter(model)
    layers = adapter.encoder_layers(model)
    was_training = model.training
    model.eval()
    model.to(device)
    heads = [torch.zeros(adapter.attention(layer).o.in_features // adapter.attention(layer).head_dim) for layer in layers]
    neurons = [torch.zeros(getattr(*adapter.ffn(layer).output).in_features) for layer in layers]
    current: dict[str, list[torch.Tensor]] = {}

    def head_hook(i, head_dim):
        def hook(_module, args):
            (x,) = args  # (B, T, heads * head_dim)
            b, t, _ = x.shape
            m = current["heads"][i]  # (B, heads)
            return ((x.view(b, t, -1, head_dim) * m[:, None, :, None]).view(b, t, -1),)
        return hook

    def neuron_hook(i):
        def hook(_module, args):
            (x,) = args  # (B, T, ffn_dim)
            return (x * current["neurons"][i][:, None, :],)
        return hook

    handles = []
    for i, layer in enumerate(layers):
        att = adapter.attention(layer)
        handles.append(att.o.register_forward_pre_hook(head_hook(i, att.head_dim)))
        handles.append(getattr(*adapter.ffn(layer).output).register_forward_pre_hook(neuron_hook(i)))
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    n_examples = 0
    try:
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            b = batch["input_ids"].shape[0]
            current["heads"] = [torch.ones(b, len(h), device=device, requires_grad=True) for h in heads]
            current["neurons"] = [torch.ones(b, len(n), device=device, requires_grad=True) for n in neurons]
            loss = model(**batch).loss
            grads = torch.autograd.grad(loss * b, current["heads"] + current["neurons"])
            for i in range(len(layers)):
                heads[i] += grads[i].abs().sum(0).cpu()
                neurons[i] += grads[len(layers) + i].abs().sum(0).cpu()
            n_examples += b
    finally:
        for h in handles:
            h.remove()
        for p in params:
            p.requires_grad_(True)
        model.train(was_training)
    if n_examples == 0:
        raise ValueError("No calibration batches were given; importance needs at least one example.")
    return ImportanceScores([h / n_examples for h in heads], [n / n_examples for n in neurons],
                            "taylor-first-order (Michel et al. 2019)", n_examples)


def _keep_top(scores: list[torch.Tensor], sparsity: float, min_per_layer: int) -> list[tuple[int, ...]]:
    """Global top-(1 - sparsity) ranking of layer-normalised scores, at least
    ``min_per_layer`` units kept in every layer. Returns sorted kept indices per layer."""
    normed = [s / (s.norm() + 1e-12) for s in scores]
    total = sum(len(s) for s in scores)
    n_remove = int(round(sparsity * total))
    flat = torch.cat([torch.stack([torch.full_like(s, i), torch.arange(len(s), dtype=s.dtype), s])
                      for i, s in enumerate(normed)], dim=1)  # (3, total): layer, index, score
    order = torch.argsort(flat[2], stable=True)
    kept = [set(range(len(s))) for s in scores]
    removed = 0
    for j in order.tolist():
        if removed == n_remove:
            break
        layer, idx = int(flat[0, j]), int(flat[1, j])
        if len(kept[layer]) > min_per_layer:
            kept[layer].discard(idx)
            removed += 1
    return [tuple(sorted(k)) for k in kept]


def plan_from_scores(model: nn.Module, head_scores: list[torch.Tensor], neuron_scores: list[torch.Tensor],
                     encoder_sparsity: float, decoder_layers: tuple[int, ...], notes: dict | None = None) -> PruningPlan:
    """A plan removing the least important encoder units to reach ``encoder_sparsity``.

    Sparsity is NASH's (Sec. 3): the fraction of encoder attention-head and FFN
    parameters removed. Every head of a layer owns the same number of parameters,
    and so does every FFN neuron, so removing the same fraction ``s`` of heads and of
    neurons (each ranked globally across layers) removes exactly the fraction ``s``
    of those parameters, up to rounding. At least one head and one neuron stay in
    every layer.

    Args:
        model: The dense model the scores belong to.
        head_scores: Per encoder layer, shape (H,).
        neuron_scores: Per encoder layer, shape (ffn_dim,).
        encoder_sparsity: Target s in [0, 1).
        decoder_layers: Kept decoder layer indices (see ``pruning.layers``).
        notes: Provenance stored in the plan.

    Raises:
        ValueError: If s is outside [0, 1) or the scores do not fit the model.
    """
    if not (isinstance(encoder_sparsity, (int, float)) and 0.0 <= encoder_sparsity < 1.0) or math.isnan(encoder_sparsity):
        raise ValueError(f"Encoder sparsity must be in [0, 1), got {encoder_sparsity}.")
    adapter = get_adapter(model)
    n_layers = len(adapter.encoder_layers(model))
    if len(head_scores) != n_layers or len(neuron_scores) != n_layers:
        raise ValueError(f"Scores are for {len(head_scores)} layers; the encoder has {n_layers}.")
    return PruningPlan(
        family=adapter.family,
        num_decoder_layers=adapter.num_decoder_layers(model),
        num_heads=adapter.num_heads(model),
        ffn_dim=adapter.ffn_dim(model),
        kept_decoder_layers=tuple(decoder_layers),
        kept_encoder_heads=tuple(_keep_top(head_scores, encoder_sparsity, 1)),
        kept_encoder_neurons=tuple(_keep_top(neuron_scores, encoder_sparsity, 1)),
        notes=dict(notes or {}, encoder_sparsity_target=encoder_sparsity),
    )


def keep_all_plan(model: nn.Module) -> PruningPlan:
    """The identity plan: every decoder layer, head and neuron kept."""
    adapter = get_adapter(model)
    n_layers = len(adapter.encoder_layers(model))
    return PruningPlan(
        family=adapter.family,
        num_decoder_layers=adapter.num_decoder_layers(model),
        num_heads=adapter.num_heads(model),
        ffn_dim=adapter.ffn_dim(model),
        kept_decoder_layers=tuple(range(adapter.num_decoder_layers(model))),
        kept_encoder_heads=tuple(tuple(range(adapter.num_heads(model))) for _ in range(n_layers)),
        kept_encoder_neurons=tuple(tuple(range(adapter.ffn_dim(model))) for _ in range(n_layers)),
        notes={"method": "keep-all"},
    )
