"""Plans for decoder-only LMs (the ``llama`` and ``gemma3`` families of ``pruning.adapters``): which
decoder layers to keep (depth) and which attention heads and FFN neurons to keep inside them (width).

A decoder-only plan is a :class:`pruning.plan.PruningPlan` with no encoder: ``kept_decoder_layers``,
and optionally ``kept_decoder_heads`` (query heads, per dense layer) and ``kept_decoder_neurons``;
:func:`pruning.apply_plan`, :func:`pruning.save_pruned` and :func:`pruning.load_pruned` take it as they
take an encoder-decoder plan.

Attention heads under grouped-query attention (GQA) are removed as **the same number of query heads in
every K/V group** (:func:`keep_query_heads_per_group`): SmolLM2-135M has only 3 K/V groups of 3 query
heads, so removing whole groups moves in steps of a third of the attention, too coarse to search; the
K/V heads (and so the KV cache) stay. Whole groups can be removed too (``pruning.surgery`` accepts
both; :func:`keep_whole_groups`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .adapters import DECODER_ONLY_FAMILIES, get_adapter
from .plan import PruningPlan


def lm_plan(model: nn.Module, kept_layers: Sequence[int], kept_heads: Sequence[Sequence[int]] | None = None,
            kept_neurons: Sequence[Sequence[int]] | None = None, notes: dict | None = None) -> PruningPlan:
    """The plan that keeps decoder layers ``kept_layers`` (indices in [0, L)) of a dense decoder-only LM,
    and in each dense layer i the query heads ``kept_heads[i]`` and FFN neurons ``kept_neurons[i]``
    (None: all of them).

    Raises:
        ValueError: If ``model`` is not a decoder-only LM of a supported family, or an index is out of
            range (see :class:`PruningPlan`).
    """
    adapter = get_adapter(model)
    if adapter.family not in DECODER_ONLY_FAMILIES:
        raise ValueError(f"lm_plan is for decoder-only LMs ({', '.join(DECODER_ONLY_FAMILIES)}); this is a "
                         f"{adapter.family} model.")
    n_layers = len(adapter.decoder_layers(model))
    heads, ffn = adapter.decoder_num_heads(model), adapter.decoder_ffn_dim(model)
    return PruningPlan(
        family=adapter.family, num_decoder_layers=n_layers, num_heads=0, ffn_dim=0,
        kept_decoder_layers=tuple(sorted(kept_layers)), kept_encoder_heads=(), kept_encoder_neurons=(),
        decoder_num_heads=heads, decoder_ffn_dim=ffn,
        kept_decoder_heads=tuple(tuple(sorted(h)) for h in kept_heads) if kept_heads is not None else (),
        kept_decoder_neurons=tuple(tuple(sorted(n)) for n in kept_neurons) if kept_neurons is not None else (),
        notes=dict(notes or {}))


def keep_query_heads_per_group(scores: torch.Tensor, num_kv_heads: int, per_group: int) -> tuple[int, ...]:
    """The ``per_group`` highest-scoring query heads of every K/V group (GQA), as sorted indices.

    Args:
        scores: (H,) importance of each query head of one layer (higher: more important).
        num_kv_heads: K/V heads (groups); H must be a multiple of it.
        per_group: Query heads kept per group, in [1, H / num_kv_heads].

    Raises:
        ValueError: If ``per_group`` is out of range.
    """
    size = scores.numel() // num_kv_heads
    if not 1 <= per_group <= size:
        raise ValueError(f"Keep between 1 and {size} query heads per K/V group, not {per_group}.")
    kept = []
    for g in range(num_kv_heads):
        top = torch.topk(scores[g * size:(g + 1) * size], per_group).indices
        kept += [g * size + int(i) for i in top]
    return tuple(sorted(kept))


def keep_whole_groups(scores: torch.Tensor, num_kv_heads: int, groups: int) -> tuple[int, ...]:
    """The query heads of the ``groups`` K/V groups with the highest summed score (GQA), sorted.

    Args:
        scores: (H,) importance of each query head of one layer.
        num_kv_heads: K/V heads (groups).
        groups: Groups kept, in [1, num_kv_heads].

    Raises:
        ValueError: If ``groups`` is out of range.
    """
    if not 1 <= groups <= num_kv_heads:
        raise ValueError(f"Keep between 1 and {num_kv_heads} K/V groups, not {groups}.")
    size = scores.numel() // num_kv_heads
    best = torch.topk(scores.view(num_kv_heads, size).sum(1), groups).indices
    return tuple(sorted(int(g) * size + j for g in best for j in range(size)))


def keep_top_neurons(scores: torch.Tensor, keep: int) -> tuple[int, ...]:
    """The ``keep`` highest-scoring FFN neurons of one layer, sorted. ``scores``: (F,).

    Raises:
        ValueError: If ``keep`` is not in [1, F].
    """
    if not 1 <= keep <= scores.numel():
        raise ValueError(f"Keep between 1 and {scores.numel()} FFN neurons, not {keep}.")
    return tuple(sorted(int(i) for i in torch.topk(scores, keep).indices))
