"""Parameter accounting of a plan: achieved encoder sparsity and expected parameter count.

Sparsity follows NASH (Sec. 3): the fraction of the encoder's attention-head and FFN
parameters that the plan removes (embeddings, layer norms, position biases and the
decoder are not part of it).
"""

from __future__ import annotations

from torch import nn

from .adapters import get_adapter, params_of_one_head, params_of_one_neuron
from .plan import PruningPlan


def encoder_sparsity(plan: PruningPlan, dense_model: nn.Module) -> float:
    """Fraction in [0, 1] of encoder head + FFN parameters the plan removes."""
    adapter = get_adapter(dense_model)
    per_head, per_neuron = adapter.params_per_head(dense_model), adapter.params_per_neuron(dense_model)
    n_layers = plan.num_encoder_layers
    total = n_layers * (plan.num_heads * per_head + plan.ffn_dim * per_neuron)
    kept = sum(len(h) for h in plan.encoder_heads) * per_head + sum(len(n) for n in plan.encoder_neurons) * per_neuron
    return 1.0 - kept / total


def expected_num_parameters(dense_model: nn.Module, plan: PruningPlan) -> int:
    """Parameters the pruned model must have, counted analytically from the dense model:
    dense count - removed heads x params per head - removed neurons x params per neuron
    (encoder, and decoder widths of kept layers when the plan narrows them) - parameters of
    the dropped decoder layers (counted from the dense layers). Tied parameters are counted
    once, as ``nn.Module.parameters()`` does.
    """
    adapter = get_adapter(dense_model)
    total = sum(p.numel() for p in dense_model.parameters())
    removed_heads = sum(plan.num_heads - len(h) for h in plan.encoder_heads)
    removed_neurons = sum(plan.ffn_dim - len(n) for n in plan.encoder_neurons)
    total -= removed_heads * adapter.params_per_head(dense_model)
    total -= removed_neurons * adapter.params_per_neuron(dense_model)
    decoder = adapter.decoder_layers(dense_model)
    kept = set(plan.decoder_layers)
    for i, layer in enumerate(decoder):
        if i not in kept:
            total -= sum(p.numel() for p in layer.parameters())
            continue
        for per_layer, att in ((plan.decoder_heads, adapter.attention(layer)),
                               (plan.decoder_cross_heads, adapter.cross_attention(layer))):
            if per_layer:
                total -= (plan.decoder_num_heads - len(per_layer[i])) * params_of_one_head(att)
        if plan.decoder_neurons:
            total -= (plan.decoder_ffn_dim - len(plan.decoder_neurons[i])) * params_of_one_neuron(adapter.ffn(layer))
    if adapter.family == "t5" and decoder and 0 not in kept:
        # Block 0's relative position bias table moves to the new block 0 instead of going away.
        total += decoder[0].layer[0].SelfAttention.relative_attention_bias.weight.numel()
    return total
