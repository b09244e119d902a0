"""The dense seq2seq fine-tune's learning curve (pruning.training.LearningCurve): held-out examples
that are never reported ones, keep-best, patience, and a killed run that resumes to the same curve."""

import json

import pytest
import torch
from conftest import SHARED, T5_TOKENIZER

from explorer.training.finetune import FinetuneSettings, cached_dense_finetune, finetune, training_examples
from explorer.models.loading import load_model
from explorer.data.splits import load_split

SAMSUM = SHARED / "data" / "SAMSum"
pytestmark = pytest.mark.skipif(not SAMSUM.exists() or not T5_TOKENIZER.exists(),
                                reason="../shared/data and ../shared/models are not beside the project")


@pytest.fixture(autouse=True)
def cache(isolated_cache):
    """Every test here gets a fresh project cache (conftest.isolated_cache)."""


def test_curve_examples_are_never_reported_ones():
    """GLUE reports on dev: the curve holds out training examples (not trained on); SAMSum reports on
    test: the curve reads validation."""
    settings = FinetuneSettings(curve_every=5, curve_samples=50)
    train, held = training_examples("rte", settings, str(SHARED / "data"))
    everything = load_split("rte", "train", SHARED / "data")
    assert len(held) == 50 and len(train) == len(everything) - 50
    assert not {e.source for e in held} & {e.source for e in train}
    assert training_examples("rte", settings, str(SHARED / "data"))[1] == held  # the same for every run
    train, held = training_examples("samsum", settings, str(SAMSUM))
    assert held == load_split("samsum", "validation", SAMSUM, limit=50) and len(train) == len(
        load_split("samsum", "train", SAMSUM))
    assert training_examples("samsum", FinetuneSettings(), str(SAMSUM))[1] is None


def test_settings_without_a_curve_keep_their_cache_key():
    plain = FinetuneSettings(max_steps=7)
    assert set(plain.key()) == {"max_steps", "batch_size", "learning_rate", "warmup_ratio", "weight_decay",
                                "train_samples", "max_source_tokens", "max_target_tokens", "seed"}
    assert "curve_every" in FinetuneSettings(max_steps=7, curve_every=3).key()
    with pytest.raises(ValueError, match="curve_every"):
        FinetuneSettings(keep_best=True)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_point_that_writes_one_label_is_never_kept_as_the_best():
    """MRPC's first dense curve point wrote "equivalent" for every example and scored F1 82.4, above
    every later real point (67-70): keep-best must not keep a constant classifier, and patience must
    count from the best eligible point."""
    from pruning.training import LearningCurve

    model = torch.nn.Linear(2, 2)
    results = iter([{"value": 82.4, "distinct_outputs": 1, "eligible": False},
                    {"value": 67.5, "distinct_outputs": 2, "eligible": True},
                    {"value": 66.7, "distinct_outputs": 2, "eligible": True},
                    {"value": 69.7, "distinct_outputs": 2, "eligible": True}])
    curve = LearningCurve(model, lambda: next(results), every=60, keep_best=True, patience=2)
    for step, weight in ((60, 0.0), (120, 1.0), (180, 2.0), (240, 3.0)):
        torch.nn.init.constant_(model.weight, weight)
        curve.observe(step)
    assert curve.points[curve._best_index()][0] == 240
    summary = curve.finish(240)
    assert summary["kept_step"] == 240 and torch.all(model.weight == 3.0)
    only_constant = LearningCurve(model, lambda: {"value": 80.0, "eligible": False}, every=1, keep_best=True)
    only_constant.observe(1), only_constant.observe(2)
    assert only_constant._best_index() == 1  # nothing eligible: the latest point


def test_curve_measure_marks_a_constant_classifier_ineligible(monkeypatch):
    from explorer.training import finetune as finetune_module
    from explorer.data.tasks import Example

    examples = [Example("mrpc sentence1: a sentence2: b", "equivalent", 1),
                Example("mrpc sentence1: c sentence2: d", "not_equivalent", 0)]
    outputs = {"texts": ["equivalent", "equivalent"]}
    monkeypatch.setattr("explorer.evaluation.generation.generate_texts", lambda *a, **k: outputs["texts"])
    measure = finetune_module.curve_measure(loaded=type("L", (), {"model": None, "tokenizer": None})(),
                                            task="mrpc", examples=examples)
    assert measure()["eligible"] is False
    outputs["texts"] = ["equivalent", "not_equivalent"]
    assert measure() == {"value": 100.0, "distinct_outputs": 2, "eligible": True}


def test_a_constant_equivalent_scores_f1_82_on_mrpcs_held_out_pairs():
    """The README's figure: why F1 alone let a constant classifier win MRPC's curve (140 of the 200
    held-out pairs are equivalent: F1 = 2 * 140 / (140 + 200))."""
    from explorer.evaluation.scoring import compute_metrics

    _, held = training_examples("mrpc", FinetuneSettings(curve_every=60, curve_samples=200), str(SHARED / "data"))
    assert compute_metrics("mrpc", ["equivalent"] * 200, held)["f1"] == pytest.approx(82.35, abs=0.01)


@pytest.mark.slow
def test_keep_best_and_patience_stop_at_the_best_point(tiny_t5_dir):
    loaded = load_model(str(tiny_t5_dir))
    examples = load_split("samsum", "train", SAMSUM, limit=16)
    values, snapshots = iter([1.0, 5.0, 2.0, 0.0, 9.0, 9.0]), []

    def curve():
        snapshots.append(_weights(loaded.model))
        return {"value": next(values), "distinct_outputs": len(snapshots)}

    settings = FinetuneSettings(max_steps=12, batch_size=2, curve_every=2, keep_best=True, patience=2)
    summary = finetune(loaded, examples, settings, task="samsum", curve=curve)
    # best at step 4; two points without a new best (6, 8) stop training at step 8
    assert summary["steps"] == 8 and summary["stopped_early"] and summary["kept_step"] == 4
    assert summary["machine"].startswith("cpu (")  # where it can be made again bit for bit
    assert [p[0] for p in summary["curve"]] == [2, 4, 6, 8]
    assert summary["curve_details"][1] == {"step": 4, "distinct_outputs": 2}
    for name, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, snapshots[1][name], msg=name)


@pytest.mark.slow
def test_a_killed_fine_tune_resumes_to_the_same_curve_and_weights(tiny_t5_dir, tmp_path):
    """The points measured before the last checkpoint come back with it; the rest are measured
    again; the kept (best) weights equal an uninterrupted run's."""
    examples = load_split("samsum", "train", SAMSUM, limit=16)
    settings = FinetuneSettings(max_steps=8, batch_size=2, curve_every=2, keep_best=True)

    def measure(loaded):  # a deterministic function of the weights, so both runs see the same values
        head = loaded.model.lm_head.weight
        return lambda: float(torch.sin(head.detach().sum() * 1e3))

    whole = load_model(str(tiny_t5_dir))
    expected = finetune(whole, examples, settings, task="samsum", curve=measure(whole))

    class Killed(Exception):
        pass

    def kill(fraction, message):
        if message.startswith("fine-tune: step 7/"):
            raise Killed(message)

    first = load_model(str(tiny_t5_dir))
    with pytest.raises(Killed):
        finetune(first, examples, settings, task="samsum", curve=measure(first), progress=kill,
                 checkpoint_dir=tmp_path / "ckpt", save_steps=4)
    saved = json.loads((tmp_path / "ckpt" / "checkpoint-4" / "curve.json").read_text())
    assert [p[0] for p in saved["points"]] == [2, 4]
    again = load_model(str(tiny_t5_dir))
    resumed = finetune(again, examples, settings, task="samsum", curve=measure(again),
                       checkpoint_dir=tmp_path / "ckpt", save_steps=4)
    assert resumed["resumed_from"] == "checkpoint-4"
    assert [p[0] for p in resumed["curve"]] == [2, 4, 6, 8] and resumed["kept_step"] == expected["kept_step"]
    for a, b in zip(resumed["curve"], expected["curve"]):
        assert a[1] == pytest.approx(b[1], abs=1e-4)
    for (name, x), (_, y) in zip(whole.model.state_dict().items(), again.model.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, msg=name, atol=1e-6, rtol=0)


@pytest.mark.slow
def test_the_cached_dense_fine_tune_records_its_curve_on_validation(tiny_t5_dir):
    settings = FinetuneSettings(max_steps=4, batch_size=2, train_samples=8, curve_every=2, curve_samples=3,
                                keep_best=True)
    _, summary = cached_dense_finetune(str(tiny_t5_dir), "samsum", settings, data_dir=str(SAMSUM))
    assert [p[0] for p in summary["curve"]] == [2, 4] and summary["kept_step"] in (2, 4)
    assert all(1 <= d["distinct_outputs"] <= 3 for d in summary["curve_details"])
    _, again = cached_dense_finetune(str(tiny_t5_dir), "samsum", settings, data_dir=str(SAMSUM))
    assert again["cached"] and again["curve"] == summary["curve"]
