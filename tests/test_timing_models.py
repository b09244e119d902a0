"""explorer.evaluation.timing_models: a run restored without its weights (a new machine, from shipped
results) is timed as its architecture, rebuilt from plan.json on the dense model of its family."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from explorer.evaluation.timing_models import dense_for_timing, pretrained, recorded_params, timing_model
from explorer.models.loading import load_model
from pruning import save_pruned
from pruning.importance import keep_all_plan
from pruning.plan import PruningPlan
from pruning.surgery import apply_plan
from conftest import ROOT, T5_TOKENIZER
from tiny import save_tiny_t5


def shapes(model) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def test_a_run_without_its_weights_times_as_the_same_shapes_rebuilt_from_its_plan(tmp_path):
    dense_dir = save_tiny_t5(tmp_path / "dense", T5_TOKENIZER)
    dense = load_model(str(dense_dir)).model.eval()
    full = keep_all_plan(dense)
    plan = PruningPlan(**{**full.__dict__, "kept_decoder_layers": full.kept_decoder_layers[:1],
                          "kept_encoder_heads": [h[: max(1, len(h) // 2)] for h in full.kept_encoder_heads],
                          "kept_encoder_neurons": [n[1::3] for n in full.kept_encoder_neurons]})
    save_pruned(apply_plan(dense, plan), plan, tmp_path / "run")
    with_weights, how = timing_model(tmp_path / "run", pretrained(str(dense_dir)))
    assert how == "weights"

    (tmp_path / "restored").mkdir()
    shutil.copy(tmp_path / "run" / "plan.json", tmp_path / "restored" / "plan.json")  # what --restore brings back
    rebuilt, how = timing_model(tmp_path / "restored", pretrained(str(dense_dir)))
    assert how == "architecture" and shapes(rebuilt) == shapes(with_weights) != shapes(dense)
    assert len(rebuilt.decoder.block) == 1 and not rebuilt.training
    ids = torch.ones(1, 8, dtype=torch.long)
    out = rebuilt.generate(ids, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape[1] == 4  # it runs: decoder start token + 3


def test_the_dense_model_is_its_fine_tune_when_present_and_else_the_pretrained_one(tmp_path):
    dense_dir = save_tiny_t5(tmp_path / "dense", T5_TOKENIZER)
    run = {"dense_finetune": {"path": str(dense_dir)}, "settings": {"model": str(dense_dir)}}
    assert dense_for_timing(run)[1] == "fine-tuned"
    run["dense_finetune"]["path"] = str(tmp_path / "gone")  # the fine-tune stayed on the old machine
    model, how = dense_for_timing(run)
    assert how == "pretrained" and shapes(model) == shapes(load_model(str(dense_dir)).model)


def test_a_rebuilt_architecture_with_another_parameter_count_than_the_run_recorded_is_refused(tmp_path):
    dense_dir = save_tiny_t5(tmp_path / "dense", T5_TOKENIZER)
    dense = load_model(str(dense_dir)).model.eval()
    full = keep_all_plan(dense)
    plan = PruningPlan(**{**full.__dict__, "kept_decoder_layers": full.kept_decoder_layers[:1]})
    (tmp_path / "restored").mkdir()
    plan.save(tmp_path / "restored")
    pruned = sum(p.numel() for p in apply_plan(dense, plan).parameters())
    metrics = tmp_path / "restored" / "metrics.json"
    metrics.write_text(json.dumps({"measurements": {"pruned": {"params": {"params_m": pruned / 1e6}}}}))
    assert recorded_params(tmp_path / "restored") == pruned
    timing_model(tmp_path / "restored", pretrained(str(dense_dir)))  # the recorded count: timed
    metrics.write_text(json.dumps({"measurements": {"pruned": {"params": {"params_m": (pruned + 1) / 1e6}}}}))
    with pytest.raises(ValueError, match="parameters"):
        timing_model(tmp_path / "restored", pretrained(str(dense_dir)))


def test_shipped_nash_runs_rebuild_to_the_parameter_count_they_recorded(tmp_path):
    """Every task's shipped NASH runs (one of each method) rebuilt from plan.json on the pretrained
    MiniLM2MiniLM, as the re-timing and CoFi matching do on a new machine."""
    one_per_method: dict[tuple[str, str], Path] = {}
    for plan in sorted(ROOT.glob("assets/reference_runs_nash_*/*/plan.json")):
        task_folder, run = plan.parent.parent.name, plan.parent.name
        method = run.split("__")[-1].split("-k")[0].split("-s")[0]
        one_per_method.setdefault((task_folder, method), plan.parent)
    assert len({task for task, _ in one_per_method}) >= 5 and len(one_per_method) >= 20
    base = pretrained("minilm2minilm")
    for run_dir in one_per_method.values():
        restored = tmp_path / run_dir.parent.name / run_dir.name  # plan and metrics only, as --restore brings back
        restored.mkdir(parents=True)
        for name in ("plan.json", "metrics.json"):
            shutil.copy(run_dir / name, restored / name)
        model, how = timing_model(restored, base)
        assert how == "architecture"
        assert sum(p.numel() for p in model.parameters()) == recorded_params(run_dir) is not None
