"""CoFi's sparsity matched to NASH's latency (explorer.evaluation.latency_match)."""

import pytest
import torch
from tiny import tiny_bart, tiny_bert2bert, tiny_t5

from explorer.evaluation import latency_match as lm
from explorer.evaluation.latency import new_cache
from pruning import apply_plan, encoder_decoder_sparsity


@pytest.mark.parametrize("make", [tiny_t5, tiny_bart, tiny_bert2bert])
def test_uniform_width_plan_narrows_every_layer_and_keeps_every_decoder_layer(make):
    model = make()
    plan = lm.uniform_width_plan(model, 0.5)
    assert plan.kept_decoder_layers == tuple(range(plan.num_decoder_layers))
    assert all(len(h) == plan.num_heads // 2 for h in plan.kept_encoder_heads)
    assert all(len(n) == plan.ffn_dim // 2 for n in plan.kept_encoder_neurons)
    assert all(len(n) == plan.decoder_ffn_dim // 2 for n in plan.kept_decoder_neurons)
    assert encoder_decoder_sparsity(plan, model) == pytest.approx(0.5, abs=0.1)
    smaller = apply_plan(model, plan)
    with torch.no_grad():
        out = smaller.generate(input_ids=torch.tensor([[5, 6, 7, 8]]), max_new_tokens=3, min_new_tokens=3,
                               past_key_values=new_cache())
    assert out.shape[1] >= 3
    assert all(len(h) == 1 for h in lm.uniform_width_plan(model, 0.99).kept_encoder_heads)  # at least one unit
    with pytest.raises(ValueError, match="Sparsity"):
        lm.uniform_width_plan(model, 1.0)


def test_the_sparsity_for_a_speedup_is_interpolated_and_corrected_by_a_real_run():
    curve = [(0.3, 1.2), (0.5, 1.5), (0.7, 2.0), (0.9, 3.0)]
    assert lm.sparsity_for_speedup(curve, 1.75) == pytest.approx(0.6)
    assert lm.sparsity_for_speedup(curve, 1.0) == 0.3  # already past the target at the first point
    assert lm.sparsity_for_speedup(curve, 3.5) is None  # unreachable within the sparsities tried
    # a real run at 0.6 reached 1.4x where the surrogate said 1.75x: the next guess aims higher
    following = lm.next_sparsity(curve, 1.75, tried=0.6, measured=1.4)
    assert following == pytest.approx(lm.sparsity_for_speedup(curve, 1.75 * 1.75 / 1.4)) and following > 0.6
    assert lm.within(1.70, 1.75) and not lm.within(1.60, 1.75)


def test_real_runs_on_both_sides_of_the_target_are_interpolated_instead_of_the_surrogate():
    # ratios CoFi / NASH speed-up of real runs: 0.35 too slow, 0.62 and 0.72 too fast
    tries = [(0.62, 1.091), (0.35, 0.923), (0.72, 1.223)]
    assert lm.sparsity_between_tries(tries) == pytest.approx(0.35 + 0.077 / 0.168 * 0.27)
    assert lm.sparsity_between_tries([(0.62, 1.09), (0.72, 1.22)]) is None  # not bracketed yet
    assert lm.sparsity_between_tries([]) is None
