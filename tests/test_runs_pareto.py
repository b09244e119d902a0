"""Runs store and Pareto fronts (backend of the explorer's Pareto tab)."""

import json
import zipfile

import pandas as pd
import pytest
from tiny import tiny_t5

from explorer.figures.pareto import make_pareto_figure
from explorer.runs.points import pareto_mask, runs_table
from explorer.runs.store import get_run, list_runs, new_run_dir, zip_run
from pruning import keep_all_plan, load_pruned, save_pruned


def fake_metrics(quality: float, latency: float, dense_quality: float = 40.0, dense_latency: float = 100.0,
                 higher: bool = True) -> dict:
    """A metrics.json as run_prune writes it (numbers are test inputs, not results)."""
    def side(q, ms):
        return {"quality": {"metrics": {"rougeL": q}, "main_metric": "rougeL", "higher_is_better": {"rougeL": higher},
                            "num_examples": 8},
                "measurements": {"latency": {"latency_ms": ms, "decode_ms_per_token": ms / 10},
                                 "macs": {"gmacs": ms / 50}, "params": {"params_m": ms / 2}}}
    dense, pruned = side(dense_quality, dense_latency), side(quality, latency)
    return {"method": "nash-training-free", "model": "m", "task": "samsum", "device": "cpu",
            "plan_summary": "decoder 6 -> 2 layers", "encoder_sparsity_achieved": 0.3, "decoder_layers_kept": [0, 5],
            "quality": {"dense": dense["quality"], "pruned": pruned["quality"]},
            "measurements": {"dense": dense["measurements"], "pruned": pruned["measurements"]}}


def write_run(root, name, metrics):
    model = tiny_t5()
    save_pruned(model, keep_all_plan(model), root / name, extra_files={"metrics.json": metrics})


def test_runs_are_listed_after_restart_and_broken_or_temporary_folders_are_skipped(tmp_path):
    write_run(tmp_path, "b-run", fake_metrics(35, 50))
    write_run(tmp_path, "a-run", fake_metrics(30, 40))
    (tmp_path / ".c-run.tmp123").mkdir()  # an interrupted run's temporary folder
    (tmp_path / ".c-run.tmp123" / "metrics.json").write_text("{}")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.json").write_text("{not json")
    runs = list_runs(tmp_path)
    assert [r.run_id for r in runs] == ["a-run", "b-run"]
    assert get_run("b-run", tmp_path).metrics["quality"]["pruned"]["metrics"]["rougeL"] == 35
    with pytest.raises(ValueError, match="No run named"):
        get_run("broken", tmp_path)


def test_the_remembered_run_list_and_front_follow_every_change_of_the_runs_folder(tmp_path):
    from explorer.backend.pareto import pareto_view
    from pruning.atomic import atomic_write_text

    write_run(tmp_path, "a-run", fake_metrics(30, 40))
    first = pareto_view("samsum", root=str(tmp_path), references=False, reported=False)
    assert pareto_view("samsum", root=str(tmp_path), references=False, reported=False) is first  # unchanged
    write_run(tmp_path, "b-run", fake_metrics(35, 50))  # a new run
    second = pareto_view("samsum", root=str(tmp_path), references=False, reported=False)
    assert second is not first and set(second[1]["run_id"]) == {"a-run", "b-run"}
    assert [r.run_id for r in list_runs(tmp_path)] == ["a-run", "b-run"]
    changed = fake_metrics(31, 40)  # a run's metrics rewritten (atomically, as the store writes)
    atomic_write_text(tmp_path / "a-run" / "metrics.json", json.dumps(changed))
    assert get_run("a-run", tmp_path).metrics["quality"]["pruned"]["metrics"]["rougeL"] == 31
    third = pareto_view("samsum", root=str(tmp_path), references=False, reported=False)
    pruned = third[1][third[1]["kind"] != "dense"]
    assert set(pruned["quality"]) == {31, 35}
    (tmp_path / "b-run" / "plan.json").unlink()  # no longer a complete run
    assert [r.run_id for r in list_runs(tmp_path)] == ["a-run"]
    assert set(pareto_view("samsum", root=str(tmp_path), references=False, reported=False)[1]["run_id"]) == {"a-run"}


def test_new_run_dir_never_reuses_a_name(tmp_path):
    first = new_run_dir(tmp_path, "/some/folder/minilm", "samsum", "s0.3-k2")
    first.mkdir()
    second = new_run_dir(tmp_path, "/some/folder/minilm", "samsum", "s0.3-k2")
    assert first != second and not second.exists() and "minilm__samsum" in first.name


def test_zipped_run_loads_with_the_documented_loader(tmp_path):
    write_run(tmp_path / "runs", "r1", fake_metrics(30, 40))
    archive = zip_run(get_run("r1", tmp_path / "runs"), tmp_path / "r1.zip")
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "unzipped")
    model = load_pruned(tmp_path / "unzipped" / "r1")
    assert json.loads((tmp_path / "unzipped" / "r1" / "metrics.json").read_text())["task"] == "samsum"
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in tiny_t5().parameters())


def test_pareto_mask_follows_the_metric_direction():
    cost = pd.Series([10.0, 20.0, 30.0, 25.0])
    quality = pd.Series([1.0, 3.0, 2.0, 3.0])
    assert pareto_mask(cost, quality, True).tolist() == [True, True, False, False]
    assert pareto_mask(cost, quality, False).tolist() == [True, False, False, False]


def test_runs_table_and_figure():
    runs = [("r1", fake_metrics(35, 50)), ("r2", fake_metrics(30, 60)), ("r3", fake_metrics(38, 70))]
    table = runs_table(runs)
    assert (table["kind"] == "dense").sum() == 1 and (table["kind"] == "measured").sum() == 3
    fig = make_pareto_figure(table, "latency_ms")
    front = [t for t in fig.data if t.name == "Pareto front"][0]
    assert list(front.x) == [50, 70, 100]  # r2 is dominated by r1
    assert "decoder 6 -> 2 layers" in str([t.customdata for t in fig.data])
    with pytest.raises(ValueError, match="Unknown axis"):
        make_pareto_figure(table, "seconds")


def test_hover_shows_each_difference_with_its_interval_and_task_latency_axis_skips_older_runs():
    with_ci = fake_metrics(35, 50)
    with_ci["intervals"] = {"vs_dense": {"metric": "rougeL", "diff": -5.0, "low": -7.5, "high": -2.5, "n": 8},
                            "vs_training_free": {"metric": "rougeL", "diff": 0.4, "low": -1.0, "high": 1.9, "n": 8},
                            "vs_cofi_matched": {"metric": "rougeL", "diff": -1.2, "low": -2.6, "high": 0.1, "n": 8,
                                                "against": "cofi-s0.47"}}
    for side, ms in (("dense", 40.0), ("pruned", 20.0)):
        with_ci["measurements"][side]["latency_task"] = {"latency_ms": ms}
    with_ci["intervals"]["vs_dense_trained"] = {"metric": "rougeL", "diff": -9.0, "low": -11.0, "high": -7.0, "n": 8}
    with_ci["intervals"]["share_of_dense_trained"] = {"share": 82.5, "low": 78.1, "high": 86.0, "against": "control"}
    control = fake_metrics(44, 100)  # decoder-only keeping every layer: the dense model, trained as long
    control["method"] = "decoder-only"
    table = runs_table([("r1", with_ci), ("r2", fake_metrics(30, 60)), ("r3", control)])
    assert table[(table["run_id"] == "r3") & (table["kind"] == "measured")]["method"].item() == (
        "dense + training (control)")
    hover = str([t.customdata for t in make_pareto_figure(table, "latency_ms").data])
    assert "vs dense + the same training: -9.00 [-11.00, -7.00] rougeL (real" in hover
    assert "vs dense: -5.00 [-7.50, -2.50] rougeL (real" in hover
    assert "vs training-free NASH: +0.40 [-1.00, +1.90] rougeL (within noise" in hover
    assert "vs CoFi at the same latency: -1.20 [-2.60, +0.10] rougeL (within noise" in hover
    assert "% of dense + the same training: 82.5% [78.1, 86.0]" in hover
    assert "no interval recorded" in hover  # r2 has none
    fig = make_pareto_figure(table, "task_latency_ms")
    assert sorted(x for t in fig.data if t.name != "Pareto front" for x in t.x) == [20.0, 40.0]  # r2, r3: none


def test_the_constant_predictors_floor_is_a_line_in_the_absolute_scale_of_its_metric_only():
    table = runs_table([("r1", fake_metrics(35, 50))])
    floor = {"metric": "rougeL", "score": 32.5, "text": "tom", "of": "majority label"}  # runs at 35 and 40
    fig = make_pareto_figure(table, "latency_ms", floor=floor)
    assert [shape.y0 for shape in fig.layout.shapes] == [32.5]
    assert 'constant "tom" (training majority label): 32.5' in fig.layout.annotations[0].text
    assert not make_pareto_figure(table, "latency_ms", floor=floor, scale="relative").layout.shapes
    assert not make_pareto_figure(table, "latency_ms", floor=dict(floor, metric="f1")).layout.shapes
    far = make_pareto_figure(table, "latency_ms", floor=dict(floor, score=0.0))  # runs at 35-40: no squashed axis
    assert not far.layout.shapes and "0.0, far below this range" in far.layout.annotations[0].text


def test_a_shipped_floor_is_read_for_its_task_and_a_broken_one_is_ignored(tmp_path, monkeypatch):
    from explorer.runs import references

    monkeypatch.setattr(references, "ASSETS", tmp_path)
    folder = tmp_path / "reference_runs_nash_mrpc"
    folder.mkdir()
    assert references.reference_floor("mrpc") is None
    (folder / "floor.json").write_text(json.dumps({"task": "mrpc", "metric": "f1", "score": 81.2}))
    assert references.reference_floor("mrpc")["score"] == 81.2
    (folder / "floor.json").write_text("{not json")
    assert references.reference_floor("mrpc") is None
