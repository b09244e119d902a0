"""EFTNAS pieces without NNCF: the search-space generator and importance reordering (the EFTNAS
issue, items 2-3)."""

import json
import pytest
import tiny
import torch
from torch.utils.flop_counter import FlopCounterMode

from explorer.figures.eftnas import search_space_figure
from nas import (SearchSpace, encoder_macs, generate_search_space, reorder_by_importance,
                 widths_at_threshold)


def tiny_bert(layers=3, heads=4, hidden=32, ffn=64, seed=0, attn="eager"):
    return tiny.tiny_bert(layers, heads, hidden, ffn, seed=seed, attn=attn, weight_scale=5.0)


def test_encoder_macs_formula_matches_torch_flop_counter():
    model = tiny_bert()
    ids = torch.randint(0, 100, (1, 16))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=ids)
    assert counter.get_total_flops() // 2 == encoder_macs(32, 8, [4] * 3, [64] * 3, seq_len=16)


def test_search_space_hits_each_macs_target_and_takes_the_union_of_widths():
    torch.manual_seed(0)
    layers, heads, ffn = 6, 12, 256
    head_scores = [torch.rand(heads) * (i + 1) for i in range(layers)]  # upper layers more important
    neuron_scores = [torch.rand(ffn) * (i + 1) for i in range(layers)]
    neuron_scores[2] = torch.full((ffn,), 1e-6)  # a layer whose FFN is unimportant
    space = generate_search_space(head_scores, neuron_scores, hidden=64, head_dim=16,
                                  targets=[0.3, 0.5, 0.7, 0.9], seq_len=128, tolerance=0.01)
    assert space.achieved == pytest.approx([0.3, 0.5, 0.7, 0.9], abs=0.01)
    dense = encoder_macs(64, 16, [heads] * layers, [ffn] * layers)
    for target, threshold in zip(space.targets, space.thresholds):
        h, n = widths_at_threshold(head_scores, neuron_scores, threshold)
        assert encoder_macs(64, 16, h, n) / dense == pytest.approx(target, abs=0.01)
        for layer in range(layers):  # every target's widths are choices (the union; < 2% of full -> 0)
            assert (h[layer] if h[layer] >= 0.02 * heads else 0) in space.head_choices[layer]
            assert (n[layer] if n[layer] >= 0.02 * ffn else 0) in space.ffn_choices[layer]
    for layer in range(layers):
        assert space.head_choices[layer][-1] == heads and space.ffn_choices[layer][-1] == ffn  # full width always a choice
        assert list(space.head_choices[layer]) == sorted(set(space.head_choices[layer]))
    assert space.ffn_choices[2][0] == 0  # under 2% of full at a low target: skippable
    assert all(len(c) > 2 for c in space.ffn_choices[3:])  # several widths per layer
    fig = search_space_figure(space)
    assert sorted(fig.data[1].y) == sorted(v for c in space.ffn_choices for v in c)


def test_widths_at_threshold_and_bad_input():
    heads, neurons = widths_at_threshold([torch.tensor([0.0, 1.0, 2.0])], [torch.tensor([0.0, 4.0])], 0.5)
    assert heads == [2] and neurons == [1]
    assert widths_at_threshold([torch.tensor([0.0, 1.0])], [torch.tensor([0.0, 1.0])], 0.0) == ([2], [2])
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        generate_search_space([torch.rand(4)], [torch.rand(8)], hidden=8, head_dim=2, targets=[1.2])
    with pytest.raises(ValueError, match="same, non-empty"):
        generate_search_space([torch.rand(4)], [], hidden=8, head_dim=2)


def test_search_space_json_round_trip(tmp_path):
    space = generate_search_space([torch.rand(4) for _ in range(2)], [torch.rand(16) for _ in range(2)], hidden=16,
                                  head_dim=4, targets=[0.5])
    space.to_json(tmp_path / "space.json")
    assert SearchSpace.from_json(tmp_path / "space.json") == space
    # Files written before the choices were named head_choices / ffn_choices still load.
    data = json.loads((tmp_path / "space.json").read_text())
    data["heads"], data["neurons"] = data.pop("head_choices"), data.pop("ffn_choices")
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert SearchSpace.from_json(tmp_path / "old.json") == space
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a search space"):
        SearchSpace.from_json(tmp_path / "bad.json")


def test_reordered_model_computes_the_same_outputs_most_important_first():
    model = tiny_bert()
    torch.manual_seed(1)
    head_scores = [torch.rand(4) for _ in range(3)]
    neuron_scores = [torch.rand(64) for _ in range(3)]
    reordered, head_orders, neuron_orders = reorder_by_importance(model, head_scores, neuron_scores)
    ids = torch.randint(0, 100, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).last_hidden_state
        after = reordered(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(before, after, atol=1e-5)
    for layer in range(3):
        assert head_orders[layer] == torch.argsort(head_scores[layer], descending=True).tolist()
        best = head_orders[layer][0]
        old_q = model.encoder.layer[layer].attention.self.query.weight
        new_q = reordered.encoder.layer[layer].attention.self.query.weight
        assert torch.equal(new_q[:8], old_q[best * 8:(best + 1) * 8])  # head 0 is now the most important
        best_n = neuron_orders[layer][0]
        assert torch.equal(reordered.encoder.layer[layer].intermediate.dense.weight[0],
                           model.encoder.layer[layer].intermediate.dense.weight[best_n])
    # A wrong order breaks equivalence (the test can fail): permute only Q's heads.
    broken, _, _ = reorder_by_importance(model, head_scores, neuron_scores)
    with torch.no_grad():
        broken.encoder.layer[0].attention.self.query.weight.copy_(model.encoder.layer[0].attention.self.query.weight)
        assert not torch.allclose(broken(input_ids=ids, attention_mask=mask).last_hidden_state, before, atol=1e-3)
    with pytest.raises(ValueError, match="layers"):
        reorder_by_importance(model, head_scores[:2], neuron_scores)


def test_extracted_subnetwork_round_trips_through_save_and_load(tmp_path):
    from transformers import BertForSequenceClassification

    from nas.extract import extract_subnetwork
    from pruning import load_pruned, save_pruned

    model = BertForSequenceClassification(tiny_bert(attn="sdpa").config).eval()  # with pooler and classifier, as EFTNAS ships
    reordered, _, _ = reorder_by_importance(model, [torch.rand(4) for _ in range(3)],
                                            [torch.rand(64) for _ in range(3)])
    sub, plan = extract_subnetwork(reordered, [1, 4, 2], [16, 64, 40])
    assert [layer.attention.self.query.out_features for layer in sub.bert.encoder.layer] == [8, 32, 16]
    assert [layer.intermediate.dense.out_features for layer in sub.bert.encoder.layer] == [16, 64, 40]
    ids = torch.randint(0, 100, (2, 10))
    with torch.no_grad():
        out = sub(input_ids=ids).logits
    save_pruned(sub, plan, tmp_path / "sub")
    loaded = load_pruned(tmp_path / "sub").eval()
    with torch.no_grad():
        assert loaded.config._attn_implementation == sub.config._attn_implementation, "attention kernel changed"
        assert torch.equal(loaded(input_ids=ids).logits, out)
    # The full-width configuration is the reordered (= dense) model.
    full, _ = extract_subnetwork(reordered, [4, 4, 4], [64, 64, 64])
    with torch.no_grad():
        assert torch.allclose(full(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5)
    with pytest.raises(ValueError, match="between 0 .skip the sublayer. and the full width"):
        extract_subnetwork(reordered, [5, 4, 4], [64, 64, 64])
    with pytest.raises(ValueError, match="between 0"):
        extract_subnetwork(reordered, [4, 4, 4], [64, -1, 64])


def test_nsga2_finds_the_pareto_front_of_a_synthetic_metric():
    """With a metric that is a known function of the widths, the front NSGA-II returns must be
    non-dominated among everything it evaluated, span the smallest and largest subnetworks, and
    come close to the true front (found by enumerating the small space)."""
    import itertools

    from nas.records import FrontPoint, SubnetworkConfig
    from nas.search import nsga2_search, pareto_front

    space = SearchSpace(num_heads=4, ffn_dim=64, hidden=32, head_dim=8, head_choices=((1, 2, 4),) * 3,
                        ffn_choices=((0, 16, 32, 64),) * 3, targets=(0.5,), achieved=(0.5,), seq_len=16)
    weights = (1.0, 2.0, 3.0)  # upper layers matter more

    def metric(heads, neurons):
        return sum(w * (h / 4 + n / 64) for w, h, n in zip(weights, heads, neurons))

    calls = []
    front, evaluated = nsga2_search(space, lambda h, n: calls.append((h, n)) or metric(h, n), population=16,
                                    generations=12, seed=1)
    assert len(calls) == len(set(calls)) == len(evaluated)  # each configuration evaluated once
    macs = [c.macs for c in front]
    assert macs == sorted(macs) and all(a.search_metric <= b.search_metric for a, b in zip(front, front[1:]))
    assert front[0].head_widths == (1, 1, 1) and front[0].ffn_widths == (0, 0, 0)
    assert front[-1].head_widths == (4, 4, 4) and front[-1].ffn_widths == (64, 64, 64)
    everything = [FrontPoint(SubnetworkConfig(h, n), encoder_macs(32, 8, list(h), list(n), 16), metric(h, n))
                  for h in itertools.product(*space.head_choices) for n in itertools.product(*space.ffn_choices)]
    true_front = pareto_front(everything)
    # every true-front point at or below 50% of dense MACs is matched within 10% of the metric range
    span = true_front[-1].search_metric - true_front[0].search_metric
    for t in true_front:
        best = max((c.search_metric for c in front if c.macs <= t.macs), default=float("-inf"))
        assert best >= t.search_metric - 0.1 * span
    with pytest.raises(ValueError, match="population"):
        nsga2_search(space, metric, population=1)


def test_run_summary_round_trips_reads_old_front_points_and_keeps_unknown_keys(tmp_path):
    from nas import RunSummary

    old_point = {"heads": [2, 0], "neurons": [16, 8], "macs": 1000, "metric": 71.5, "search_metric": 71.5,
                 "macs_fraction": 0.5, "eval": {"accuracy": 70.0}}
    data = {"method": "eftnas", "model": "minilm", "task": "rte", "weights": "pretrained", "device": "cpu",
            "metric": "accuracy", "eval_split": "validation", "eval_examples": 277,
            "dense": {"eval": {"accuracy": 72.0}, "gmacs": 2.0}, "front": [old_point], "wall_s": 60.0,
            "a_key_from_a_later_version": [1, 2]}
    summary = RunSummary.from_dict(data)
    assert summary.front[0].head_widths == (2, 0) and summary.front[0].search_metric == 71.5
    assert summary.dense_quality == 72.0 and summary.retimed is None
    written = json.loads(summary.to_json())
    assert written["a_key_from_a_later_version"] == [1, 2] and "metric" not in written["front"][0]
    assert RunSummary.from_dict(written) == summary
    with pytest.raises(ValueError, match="Not an EFTNAS run summary"):
        RunSummary.from_dict({k: v for k, v in data.items() if k != "task"})
