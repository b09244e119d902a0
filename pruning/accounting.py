"""Parameter accounting of a plan: achieved encoder sparsity and expected parameter count.

Sparsity follows NASH (Sec. 3): the fraction of the encoder's attention-head and FFN
parameters that the plan removes (embeddings, layer norms, position biases and the
decoder are not part of it).
"""

from __future__ import annotations

import math

from torch import nn

from .adapters import (get_adapter, hidden_axes, params_of_one_head, params_of_one_neuron, per_hidden_dim_of_head,
                       per_hidden_dim_of_neuron)
from .plan import PruningPlan


def encoder_sparsity(plan: PruningPlan, dense_model: nn.Module) -> float:
    """Fraction in [0, 1] of encoder head + FFN parameters the plan removes."""
    adapter = get_adapter(dense_model)
    per_head, per_neuron = adapter.params_per_head(dense_model), adapter.params_per_neuron(dense_model)
    n_layers = plan.num_encoder_layers
    total = n_layers * (plan.num_heads * per_head + plan.ffn_dim * per_neuron)
    kept = sum(len(h) for h in plan.kept_encoder_heads) * per_head + sum(len(n) for n in plan.kept_encoder_neurons) * per_neuron
    return 1.0 - kept / total


def encoder_decoder_sparsity(plan: PruningPlan, dense_model: nn.Module) -> float:
    """Fraction in [0, 1] of all head + FFN parameters of encoder *and* decoder that the plan
    removes: CoFi's sparsity (Xia et al. 2022, Sec. 3.2), the one its target sets. Dropped decoder
    layers count as removed; with hidden dims cut, each kept unit counts at the kept hidden size
    (embeddings and norms are not counted, as in CoFi). For an encoder-only model: the encoder's.
    """
    adapter = get_adapter(dense_model)
    r = plan.hidden_size - len(plan.kept_hidden_dims) if plan.narrows_hidden else 0

    def at_kept_width(per_unit: int, per_dim: int) -> int:
        return per_unit - per_dim * r

    total = kept = 0
    for layer, heads, neurons in zip(adapter.encoder_layers(dense_model), plan.kept_encoder_heads, plan.kept_encoder_neurons):
        att, ffn = adapter.attention(layer), adapter.ffn(layer)
        total += plan.num_heads * params_of_one_head(att) + plan.ffn_dim * params_of_one_neuron(ffn)
        kept += len(heads) * at_kept_width(params_of_one_head(att), per_hidden_dim_of_head(att))
        kept += len(neurons) * at_kept_width(params_of_one_neuron(ffn), per_hidden_dim_of_neuron(ffn))
    n_heads, ffn_dim = adapter.decoder_num_heads(dense_model), adapter.decoder_ffn_dim(dense_model)
    for i, layer in enumerate(adapter.decoder_layers(dense_model)):
        atts = ((adapter.attention(layer), plan.kept_decoder_heads), (adapter.cross_attention(layer), plan.kept_cross_heads))
        ffn = adapter.ffn(layer)
        total += sum(n_heads * params_of_one_head(att) for att, _ in atts) + ffn_dim * params_of_one_neuron(ffn)
        if i not in plan.kept_decoder_layers:
            continue
        for att, per_layer in atts:
            kept += (len(per_layer[i]) if per_layer else n_heads) * at_kept_width(params_of_one_head(att), per_hidden_dim_of_head(att))
        kept += (len(plan.kept_decoder_neurons[i]) if plan.kept_decoder_neurons else ffn_dim) * at_kept_width(
            params_of_one_neuron(ffn), per_hidden_dim_of_neuron(ffn))
    return 1.0 - kept / total


def expected_num_parameters(dense_model: nn.Module, plan: PruningPlan) -> int:
    """Parameters the pruned model must have, counted analytically from the dense model:
    dense count - removed heads x params per head - removed neurons x params per neuron
    (encoder, and decoder widths of kept layers when the plan narrows them) - parameters of
    the dropped decoder layers (counted from the dense layers) - what cutting hidden dims takes
    from every table on the residual stream. Tied parameters are counted once, as
    ``nn.Module.parameters()`` does.
    """
    adapter = get_adapter(dense_model)
    total = sum(p.numel() for p in dense_model.parameters())
    removed_heads = sum(plan.num_heads - len(h) for h in plan.kept_encoder_heads)
    removed_neurons = sum(plan.ffn_dim - len(n) for n in plan.kept_encoder_neurons)
    total -= removed_heads * adapter.params_per_head(dense_model)
    total -= removed_neurons * adapter.params_per_neuron(dense_model)
    decoder = adapter.decoder_layers(dense_model)
    kept = set(plan.kept_decoder_layers)
    for i, layer in enumerate(decoder):
        if i not in kept:
            total -= sum(p.numel() for p in layer.parameters())
            continue
        for per_layer, att in ((plan.kept_decoder_heads, adapter.attention(layer)),
                               (plan.kept_cross_heads, adapter.cross_attention(layer))):
            if per_layer:
                total -= (plan.decoder_num_heads - len(per_layer[i])) * params_of_one_head(att)
        if plan.kept_decoder_neurons:
            total -= (plan.decoder_ffn_dim - len(plan.kept_decoder_neurons[i])) * params_of_one_neuron(adapter.ffn(layer))
    if adapter.family == "t5" and decoder and 0 not in kept:
        # Block 0's relative position bias table moves to the new block 0 instead of going away.
        total += decoder[0].layer[0].SelfAttention.relative_attention_bias.weight.numel()
    if plan.narrows_hidden:
        total -= _hidden_removed(adapter, dense_model, plan)
    return total


def _hidden_removed(adapter, dense_model: nn.Module, plan: PruningPlan) -> int:
    """Parameters that removing hidden dimensions takes away from the model the rest of the plan
    leaves: r = d - d' entries per kept head dimension of Q, K, V and the output projection, per
    kept FFN neuron of each FFN Linear, per bias of a Linear that writes hidden, and per row of
    every other table on the residual stream (embeddings, norms, LM head, pooler), tied ones once."""
    r = plan.hidden_size - len(plan.kept_hidden_dims)
    removed = 0

    def layer_part(att_widths, ffn, neurons: int) -> int:
        part = 0
        for att, heads in att_widths:
            part += r * heads * per_hidden_dim_of_head(att) + (r if att.o.bias is not None else 0)
        out = getattr(*ffn.output)
        return part + r * neurons * per_hidden_dim_of_neuron(ffn) + (r if out.bias is not None else 0)

    for layer, heads, neurons in zip(adapter.encoder_layers(dense_model), plan.kept_encoder_heads, plan.kept_encoder_neurons):
        removed += layer_part([(adapter.attention(layer), len(heads))], adapter.ffn(layer), len(neurons))
    decoder = adapter.decoder_layers(dense_model)
    width = lambda per_layer, i, full: len(per_layer[i]) if per_layer else full  # noqa: E731
    for i in plan.kept_decoder_layers:
        layer = decoder[i]
        atts = [(adapter.attention(layer), width(plan.kept_decoder_heads, i, adapter.decoder_num_heads(dense_model))),
                (adapter.cross_attention(layer), width(plan.kept_cross_heads, i, adapter.decoder_num_heads(dense_model)))]
        removed += layer_part(atts, adapter.ffn(layer), width(plan.kept_decoder_neurons, i, adapter.decoder_ffn_dim(dense_model)))
    sites = adapter.hidden_sites(dense_model)
    kept = set(plan.kept_decoder_layers)
    dropped = {id(p) for i, layer in enumerate(decoder) if i not in kept for p in layer.parameters()}
    marks = hidden_axes(sites.reads, sites.writes, sites.embeddings, sites.norms, skip=frozenset(dropped))
    for param, which in marks.values():
        removed += param.numel() - math.prod(s - r if i in which else s for i, s in enumerate(param.shape))
    return removed
