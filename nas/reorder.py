"""Weight reordering by importance (EFTNAS, Munoz et al. 2024, Sec. 3.2; the same idea as
DynaBERT's network rewiring): within each encoder layer, heads are permuted by descending summed
Q/K/V importance and FFN neurons by descending importance, so that "width k" of the super-network
means "the first k" and every subnetwork keeps the most important units. A permutation inside a
layer changes no output (tested in ``tests/test_nas.py``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from pruning.adapters import get_adapter
from pruning.surgery import _parent_of, _replace_linear, head_index, prune_linear


def reorder_by_importance(model: nn.Module, head_scores: list[torch.Tensor], neuron_scores: list[torch.Tensor],
                          *, inplace: bool = False) -> tuple[nn.Module, list[list[int]], list[list[int]]]:
    """Permute every encoder layer's heads and FFN neurons, most important first.

    Args:
        model: A dense model of a supported family (BERT-style encoders for EFTNAS).
        head_scores: Per encoder layer, (H,) importance (EFTNAS: summed over Q, K and V).
        neuron_scores: Per encoder layer, (F,).
        inplace: Permute ``model`` itself instead of a copy.

    Returns:
        ``(model, head_orders, neuron_orders)``: the reordered model and, per layer, the original
        index of each new position (descending importance, ties by original index).

    Raises:
        ValueError: If the scores do not match the encoder's layers and widths.
    """
    adapter = get_adapter(model)
    layers = adapter.encoder_layers(model)
    if len(head_scores) != len(layers) or len(neuron_scores) != len(layers):
        raise ValueError(f"Scores are for {len(head_scores)} / {len(neuron_scores)} layers; the encoder has "
                         f"{len(layers)}.")
    if not inplace:
        model = copy.deepcopy(model)
        layers = adapter.encoder_layers(model)
    head_orders, neuron_orders = [], []
    for i, (layer, hs, ns) in enumerate(zip(layers, head_scores, neuron_scores)):
        att, ffn = adapter.attention(layer), adapter.ffn(layer)
        n_heads = att.q.out_features // att.head_dim
        n_neurons = getattr(*ffn.output).in_features
        if len(hs) != n_heads or len(ns) != n_neurons:
            raise ValueError(f"Layer {i}: {len(hs)} head and {len(ns)} neuron scores for {n_heads} heads and "
                             f"{n_neurons} neurons.")
        h_order = torch.argsort(-torch.as_tensor(hs, dtype=torch.float64), stable=True).tolist()
        n_order = torch.argsort(-torch.as_tensor(ns, dtype=torch.float64), stable=True).tolist()
        rows = head_index(tuple(h_order), att.head_dim)
        for linear in (att.q, att.k, att.v):
            _replace_linear(_parent_of(layer, linear), linear, prune_linear(linear, rows, 0))
        _replace_linear(_parent_of(layer, att.o), att.o, prune_linear(att.o, rows, 1))
        index = torch.tensor(n_order, dtype=torch.long)
        for owner, name in ffn.inputs:
            setattr(owner, name, prune_linear(getattr(owner, name), index, 0))
        owner, name = ffn.output
        setattr(owner, name, prune_linear(getattr(owner, name), index, 1))
        head_orders.append(h_order)
        neuron_orders.append(n_order)
    return model, head_orders, neuron_orders
