"""Subnetworks you can ship (EFTNAS issue, item 6): a width configuration of the reordered
super-network becomes a standalone Hugging Face model through ``pruning``'s surgery, so loading
and running it needs neither NNCF nor this package (``pruning.load_pruned`` rebuilds the
per-layer widths from ``plan.json``)."""

from __future__ import annotations

from torch import nn

from pruning.adapters import get_adapter
from pruning.plan import PruningPlan
from pruning.surgery import apply_plan


def subnetwork_plan(model: nn.Module, heads: list[int], neurons: list[int], notes: dict | None = None) -> PruningPlan:
    """The plan keeping the first ``heads[l]`` heads and first ``neurons[l]`` FFN neurons of every
    encoder layer l of an importance-reordered model (``nas.reorder_by_importance``).

    Raises:
        ValueError: For a wrong number of layers, a width outside [0, full], or a model with a
            decoder. Width 0 removes the sublayer (a skipped attention keeps only its output
            projection's bias, ``pruning.surgery.SkippedSelfAttention``; a skipped FFN likewise).
    """
    adapter = get_adapter(model)
    if adapter.decoder_container(model) is not None:
        raise ValueError("EFTNAS subnetworks are for BERT-style encoders; this model has a decoder.")
    n_layers, n_heads, ffn = len(adapter.encoder_layers(model)), adapter.num_heads(model), adapter.ffn_dim(model)
    if len(heads) != n_layers or len(neurons) != n_layers:
        raise ValueError(f"The configuration has {len(heads)} / {len(neurons)} layers; the encoder has {n_layers}.")
    for i, (h, f) in enumerate(zip(heads, neurons)):
        if not (0 <= h <= n_heads and 0 <= f <= ffn):
            raise ValueError(f"Layer {i}: {h} heads and {f} neurons; each must be between 0 (skip the sublayer) and "
                             f"the full width ({n_heads} heads, {ffn} neurons).")
    return PruningPlan(family=adapter.family, num_decoder_layers=0, num_heads=n_heads, ffn_dim=ffn,
                       kept_decoder_layers=(), kept_encoder_heads=tuple(tuple(range(h)) for h in heads),
                       kept_encoder_neurons=tuple(tuple(range(f)) for f in neurons),
                       notes=dict(notes or {}, method="eftnas-subnetwork"))


def extract_subnetwork(model: nn.Module, heads: list[int], neurons: list[int], notes: dict | None = None):
    """``(standalone smaller model, plan)`` for a width configuration of a reordered model;
    ``model`` is not modified. See :func:`subnetwork_plan` for the errors."""
    plan = subnetwork_plan(model, heads, neurons, notes)
    return apply_plan(model, plan), plan
