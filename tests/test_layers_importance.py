"""Decoder layer selection and training-free importance (issue: NASH core, item 5)."""

import pytest
import torch
from conftest import SHARED
from tiny import FAMILIES, batch

from pruning import LAYER_SELECTIONS, get_adapter, plan_from_scores, select_decoder_layers, taylor_importance


def test_uniform_selection_follows_nash_formula():
    assert select_decoder_layers(12, 3, "uniform") == (0, 5, 11)
    assert select_decoder_layers(6, 2, "uniform") == (0, 5)
    assert select_decoder_layers(12, 1, "uniform") == (0,)  # k = 1 must not divide by zero
    assert select_decoder_layers(8, 8, "uniform") == tuple(range(8))
    assert select_decoder_layers(12, 4, "uniform") == (0, 3, 7, 11)


def test_low_and_high_selection():
    assert select_decoder_layers(6, 2, "low") == (0, 1)
    assert select_decoder_layers(6, 2, "high") == (4, 5)


@pytest.mark.parametrize("num_layers", [1, 2, 5, 12, 24])
def test_every_selection_is_valid(num_layers):
    for k in range(1, num_layers + 1):
        for how in LAYER_SELECTIONS:
            kept = select_decoder_layers(num_layers, k, how)
            assert len(kept) == k and list(kept) == sorted(set(kept)) and 0 <= kept[0] and kept[-1] < num_layers


@pytest.mark.parametrize("keep", [0, 7, -1])
def test_bad_layer_counts_are_rejected(keep):
    with pytest.raises(ValueError, match="between 1 and 6"):
        select_decoder_layers(6, keep)


def test_unknown_selection_is_rejected():
    with pytest.raises(ValueError, match="uniform, low, high"):
        select_decoder_layers(6, 2, "middle")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_taylor_scores_are_zero_for_units_that_contribute_nothing(family):
    model = FAMILIES[family]()
    adapter = get_adapter(model)
    layer = adapter.encoder_layers(model)[1]
    att, out = adapter.attention(layer), getattr(*adapter.ffn(layer).output)
    with torch.no_grad():
        att.o.weight[:, 2 * att.head_dim:3 * att.head_dim] = 0  # head 2 of layer 1 is dead
        out.weight[:, 5] = 0  # neuron 5 of layer 1 is dead
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = taylor_importance(model, [batch(seed=1), batch(seed=2)])
    assert scores.num_examples == 4
    assert [s.shape[0] for s in scores.head_scores] == [adapter.num_heads(model)] * 3
    assert [s.shape[0] for s in scores.neuron_scores] == [adapter.ffn_dim(model)] * 3
    assert scores.head_scores[1][2].item() == 0.0 and scores.neuron_scores[1][5].item() == 0.0
    assert scores.head_scores[1].sum() > 0 and scores.neuron_scores[1].sum() > 0
    # The model is unchanged and carries no hooks or gradients afterwards.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    plan = plan_from_scores(model, scores.head_scores, scores.neuron_scores, 0.3, (0,))
    assert 2 not in plan.kept_encoder_heads[1] and 5 not in plan.kept_encoder_neurons[1]


def test_importance_needs_batches():
    with pytest.raises(ValueError, match="at least one example"):
        taylor_importance(FAMILIES["t5"](), [])


def test_ranking_keeps_one_unit_per_layer_even_at_high_sparsity():
    model = FAMILIES["t5"]()
    heads = [torch.tensor([0.0, 0.0, 0.0, 0.0]), torch.rand(4), torch.rand(4)]
    plan = plan_from_scores(model, heads, [torch.rand(48) for _ in range(3)], 0.9, (0,))
    assert all(len(h) >= 1 for h in plan.kept_encoder_heads)
    assert all(len(n) >= 1 for n in plan.kept_encoder_neurons)


def test_calibration_stops_at_the_token_budget_and_the_example_cap():
    from transformers import AutoTokenizer

    from explorer.pipelines.nash_steps import calibration_examples
    from explorer.data.tasks import Example

    t5_dir = SHARED / "models" / "t5-small"
    if not t5_dir.exists():
        pytest.skip("../shared/models is not beside the project")
    tokenizer = AutoTokenizer.from_pretrained(t5_dir)
    examples = [Example(source="one two three four five six seven eight nine", target="x")] * 50
    per = len(tokenizer(examples[0].source)["input_ids"])
    chosen = calibration_examples(tokenizer, "samsum", examples, max_examples=40, token_budget=5 * per)
    assert len(chosen) == 5  # stops as soon as the budget is reached
    assert len(calibration_examples(tokenizer, "samsum", examples, max_examples=3, token_budget=10**6)) == 3
    assert len(calibration_examples(tokenizer, "samsum", examples, max_examples=40, token_budget=1)) == 1
