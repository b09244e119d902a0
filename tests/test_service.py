"""Backend of the explorer's tabs, without the UI; and the app builds."""

import pytest
from conftest import SHARED
from test_runs_pareto import fake_metrics, write_run

from explorer.paths import ASSETS
from explorer.runs.references import reference_table
from explorer.pipelines.methods import method_named
from explorer.pipelines.nash_settings import Cancelled
from explorer.backend.prune import finetune_estimate, prune_settings, start_prune
from explorer.backend.compare import compare_sources, score_against_reference, stream_generation, task_example
from explorer.backend.common import data_dir_for, find_run, list_runs_for_ui, model_choices, run_zip
from explorer.backend.pareto import export_csv, pareto_view, plan_runs, plan_view
from explorer.models.loading import LoadedModel
from explorer.runs.store import get_run
from pruning.plan import PruningPlan

T5_DIR = SHARED / "models" / "t5-small"


def test_prune_settings_validate_before_any_work():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune_settings("minilm2minilm", "rotten_tomatoes", 1.2, 2, "uniform", 0, "cpu", 8)
    with pytest.raises(ValueError, match="Did you mean"):
        prune_settings("minilm2minilm", "rotten_tomatos", 0.3, 2, "uniform", 0, "cpu", 8)
    settings = prune_settings(" minilm2minilm ", "rotten_tomatoes", 0.3, 2.0, "low", 5, "cpu", 8)
    assert settings.model == "minilm2minilm" and settings.decoder_layers == 2 and settings.recovery_steps == 5


def test_model_choices_list_offline_models_first_and_marked():
    assert model_choices()[0] == ("minilm2minilm (offline)", "minilm2minilm")


def test_stream_generation_yields_growing_text_and_rejects_empty_text():
    if not T5_DIR.exists():
        pytest.skip("../shared/models is not beside the project")
    from transformers import AutoTokenizer
    from tiny import tiny_t5

    tokenizer = AutoTokenizer.from_pretrained(T5_DIR)
    model = tiny_t5()
    model.resize_token_embeddings(len(tokenizer))
    loaded = LoadedModel(model, tokenizer, "tiny", "t5", "test")
    with pytest.raises(ValueError, match="Enter some text"):
        list(stream_generation(loaded, "   "))
    steps = list(stream_generation(loaded, "summarize: hello there", max_new_tokens=5))
    # one step per generated token (at most 5), counted exactly, times growing
    assert 1 <= len(steps) <= 5 and [s[2] for s in steps] == list(range(1, len(steps) + 1))
    assert all(a[1] <= b[1] for a, b in zip(steps, steps[1:])) and steps[0][1] > 0


def test_compare_sources_put_the_dense_model_first(tmp_path):
    with pytest.raises(ValueError, match="at least one run"):
        compare_sources([], tmp_path)
    metrics = dict(fake_metrics(30, 40), dense_finetune={"path": "/cache/dense"})
    write_run(tmp_path, "r1", metrics)
    sources = compare_sources(["r1"], tmp_path)
    assert sources[0][1] == "/cache/dense" and sources[1][1] == str(tmp_path / "r1")
    assert "30% of encoder head and FFN parameters removed" in sources[1][0]


def test_pareto_view_filters_by_task(tmp_path):
    write_run(tmp_path, "r1", fake_metrics(30, 40))
    fig, table, _ = pareto_view("samsum", "gmacs", root=tmp_path)
    assert fig is not None and set(table["task"]) == {"samsum"}
    # the user's only run is SAMSum's: SST-2's view has none of it (without the shipped reference runs, nothing)
    fig, table, _ = pareto_view("sst2", root=tmp_path, references=False)
    assert fig is None and table.empty
    fig, table, _ = pareto_view("sst2", root=tmp_path)
    assert set(table["task"]) <= {"sst2"}


def test_app_builds():
    from explorer.ui import build_app

    assert build_app(runs=None) is not None


def test_local_data_is_used_only_where_the_shared_folder_has_the_task():
    data = SHARED / "data"
    if not data.exists():
        pytest.skip("../shared/data is not beside the project")
    assert data_dir_for("samsum", str(data)) == str(data)
    assert data_dir_for("rotten_tomatoes", str(data)) is None
    assert data_dir_for("samsum", None) is None


# --- Prune tab: cancel, fine-tune estimate --------------------------------------------------

SAMSUM = SHARED / "data" / "SAMSum"
needs_shared = pytest.mark.skipif(not SAMSUM.exists() or not T5_DIR.exists(),
                                  reason="../shared/data and ../shared/models are not beside the project")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    if not T5_DIR.exists():
        pytest.skip("../shared/models is not beside the project")
    from tiny import save_tiny_t5

    return str(save_tiny_t5(tmp_path_factory.mktemp("tiny-t5"), T5_DIR))


def fast_settings(model: str, **overrides):
    args = dict(model=model, task="samsum", sparsity=0.5, layers=2, selection="uniform", recovery_steps=3,
                device="cpu", eval_samples=2, data_dir=str(SHARED / "data"), finetune_steps=1, input_tokens=16,
                new_tokens=4, repeats=1)
    args.update(overrides)
    return prune_settings(**args)


@needs_shared
@pytest.mark.slow
def test_a_cancelled_run_stops_and_leaves_earlier_runs_and_no_folder(tiny_dir, tmp_path, cache):
    import threading

    runs = tmp_path / "runs"
    write_run(runs, "earlier", fake_metrics(30, 40))
    cancel, seen = threading.Event(), []

    def progress(fraction, message):
        seen.append(message)
        if message.startswith("recovery fine-tune: step 1/"):
            cancel.set()  # the user presses Cancel during recovery fine-tuning

    with pytest.raises(Cancelled, match="nothing was saved"):
        start_prune(fast_settings(tiny_dir), runs, progress=progress, cancel=cancel)
    assert not any(m.startswith("recovery fine-tune: step 2/") for m in seen)  # stopped within one step
    assert [p.name for p in runs.iterdir()] == ["earlier"]  # no half-written or temporary folder
    assert get_run("earlier", runs).metrics["quality"]["pruned"]["metrics"]["rougeL"] == 30


@needs_shared
@pytest.mark.slow
def test_a_run_reports_every_stage_and_is_listed(tiny_dir, tmp_path, cache):
    seen = []
    run = start_prune(fast_settings(tiny_dir), tmp_path / "runs", progress=lambda f, m: seen.append((f, m)))
    stages = [m.split(":")[0].split(" (")[0] for _, m in seen]
    for stage in ("dense model", "dense fine-tune", "importance", "surgery", "recovery fine-tune", "evaluation",
                  "timing the dense model", "timing the pruned model", "done"):
        assert stage in stages, stage
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [r.run_id for r in list_runs_for_ui(tmp_path / "runs")] == [run.run_id]


@needs_shared
@pytest.mark.slow
def test_finetune_estimate_is_measured_here_and_close_to_the_actual_fine_tune(tiny_dir, cache):
    from explorer.training.finetune import cached_dense_finetune, dense_cache_dir

    from dataclasses import replace

    settings = fast_settings(tiny_dir, finetune_steps=60)
    # 64 training examples: the estimate leaves out tokenizing the training set (14,732 SAMSum dialogues),
    # seconds on a real run's scale, but most of a 60-step run of a tiny model.
    settings = replace(settings, finetune=replace(settings.finetune, train_samples=64))
    first = finetune_estimate(settings)
    assert not first["cached"] and first["seconds"] > 0 and "60 steps" in first["text"]
    assert "measured here at the task's padded batch shape" in first["basis"]
    # The actual fine-tune of a tiny model (its Trainer set-up weighs more than on a real one): the
    # estimate must be of the same size (the estimate from the task's maximum lengths was 15x too long).
    _, summary = cached_dense_finetune(settings.model, settings.task, settings.finetune, data_dir=settings.data_dir)
    assert 0.25 <= first["seconds"] / summary["wall_s"] <= 4.0, (first["seconds"], summary["wall_s"])
    assert dense_cache_dir(settings.model, settings.task, settings.data_dir, settings.finetune).is_dir()
    assert finetune_estimate(settings)["cached"]
    # Training after the dense model: gate steps (a third more with the teacher's forward) and recovery steps.
    learned = finetune_estimate(replace(settings, method="nash-learned", gate_steps=30, recovery_steps=10))
    per_step = first["seconds"] / 60
    assert learned["cached"] and learned["seconds"] == 0.0 and learned["training_steps"] == 40
    assert learned["training_seconds"] == pytest.approx(per_step * (30 * 4 / 3 + 10))
    assert "30 gate-training steps with distillation and 10 recovery steps" in learned["text"]
    plain = finetune_estimate(replace(settings, method="nash-training-free", gate_steps=30, recovery_steps=0))
    assert plain["training_steps"] == 0 and "Then" not in plain["text"]


def test_prune_settings_reject_empty_model_and_missing_numbers():
    with pytest.raises(ValueError, match="Choose a model"):
        prune_settings("  ", "samsum", 0.3, 2, "uniform", 0, "cpu", 8)
    with pytest.raises(ValueError, match="Fill in every number"):
        prune_settings("minilm2minilm", "samsum", 0.3, None, "uniform", 0, "cpu", 8)
    with pytest.raises(ValueError, match="at least 1 input token"):
        prune_settings("minilm2minilm", "samsum", 0.3, 2, "uniform", 0, "cpu", 8, new_tokens=0)


# --- Pareto tab: reference runs and reported points ----------------------------------------

def test_shipped_reference_runs_are_real_measurements_with_provenance():
    import json

    table = reference_table("rotten_tomatoes")
    assert (table["weights"] == "pretrained").all() and (table["eval_examples"] >= 200).all()
    # Each shipped set (scripts/reference_runs.sh; the NASH tables' scripts/nash_tables.sh) brings its own dense
    # model: one star per set, drawn beside its own runs.
    for source, rows in table.groupby("source"):
        assert (rows["kind"] == "dense (reference)").sum() == 1 and (rows["kind"] == "reference").sum() >= 1, source
    first = table[table["source"].str.contains("scripts/reference_runs.sh")]
    assert (first["kind"] == "reference").sum() >= 5
    assert table["source"].str.contains("scripts/reference_runs.sh|scripts/nash_tables.sh").all()
    provenance = json.loads((ASSETS / "reference_runs" / "provenance.json").read_text())
    assert (ASSETS.parent / provenance["command"].split()[-1]).exists()
    assert provenance["date"] and provenance["commit"]


def test_samsum_method_comparison_ships_as_reference_runs_of_every_method(tmp_path):
    table = reference_table("samsum")
    measured = table[table["kind"] == "reference"]
    assert {"nash-learned", "nash-training-free", "decoder-only"} <= set(measured["method"])
    # Each run names the script that made it: the first comparison or the NASH tables (issue 14).
    scripts = table["source"].str.extract(r"(scripts/\w+\.sh)")[0]
    assert set(scripts) <= {"scripts/samsum_comparison.sh", "scripts/nash_tables.sh"} and scripts.notna().all()
    assert "scripts/samsum_comparison.sh" in set(scripts) and (table["weights"] == "pretrained").all()
    fig, _, note = pareto_view("samsum", root=tmp_path, color="method")
    assert {"nash-learned", "nash-training-free", "decoder-only"} <= {t.name for t in fig.data}
    # The first comparison's dense model (a quarter epoch) and the NASH tables' two (two epochs each: SAMSum's
    # first and second table) differ: said so.
    assert "measured against 3 different dense models" in note
    assert "different dense models" not in pareto_view("samsum", root=tmp_path, scale="relative")[2]


def test_plan_view_draws_what_a_run_removed_with_gate_values_for_learned_runs(tmp_path):
    import json
    from dataclasses import replace
    import shutil

    run_id = reference_table("rotten_tomatoes")["run_id"].iloc[0]
    assert run_id in plan_runs("rotten_tomatoes", tmp_path)
    fig, caption = plan_view(run_id, tmp_path)
    plan = PruningPlan.load(find_run(run_id).path)
    heads, neurons, decoder = fig.data
    assert [sum(row) for row in heads.z] == [len(kept) for kept in plan.kept_encoder_heads]  # 1 = kept, 0 = removed
    assert list(neurons.x) == [len(kept) for kept in plan.kept_encoder_neurons]
    assert [i for i, v in enumerate(decoder.z[0]) if v] == list(plan.kept_decoder_layers)
    assert "gate value" not in caption
    # A learned run of one's own: cells carry the gate values stored in metrics.json.
    own = tmp_path / "learned-run"
    shutil.copytree(find_run(run_id).path, own)
    metrics = json.loads((own / "metrics.json").read_text())
    values = [[0.5] * plan.num_heads for _ in plan.kept_encoder_heads]
    metrics["gate_training"] = {"gates": {"heads": values}}
    (own / "metrics.json").write_text(json.dumps(metrics))
    fig, caption = plan_view("learned-run", tmp_path)
    assert "gate value" in caption
    assert [sum(row) for row in fig.data[0].z] == [0.5 * len(kept) for kept in plan.kept_encoder_heads]
    assert plan_runs("rotten_tomatoes", tmp_path)[0] == "learned-run"
    # A CoFi run: decoder widths per kept layer and the hidden dimensions kept are drawn too.
    cofi = tmp_path / "cofi-run"
    shutil.copytree(own, cofi)
    n_dec, heads, ffn = plan.num_decoder_layers, plan.num_heads, plan.ffn_dim
    replace(plan, kept_decoder_layers=tuple(range(n_dec)), decoder_num_heads=heads, decoder_ffn_dim=ffn,
            kept_decoder_heads=[list(range(1 + i % heads)) for i in range(n_dec)],
            kept_cross_heads=[list(range(heads)) for _ in range(n_dec)],
            kept_decoder_neurons=[list(range(ffn // 2)) for _ in range(n_dec)], hidden_size=384,
            kept_hidden_dims=list(range(300))).save(cofi)
    fig, _ = plan_view("cofi-run", tmp_path)
    decoder, hidden = fig.data[2], fig.data[3]
    assert list(decoder.y) == ["layer kept", f"self-attn heads (of {heads})", f"cross-attn heads (of {heads})",
                               f"FFN neurons (of {ffn})"]
    assert list(decoder.z[1]) == [(1 + i % heads) / heads for i in range(n_dec)] and list(decoder.z[3]) == [0.5] * n_dec
    assert list(hidden.x) == [300] and "of 384" in fig.layout.annotations[3].text
    with pytest.raises(ValueError, match="No run named"):
        plan_view("nope", tmp_path)


def test_first_look_is_not_empty_and_reported_points_only_on_the_relative_scale(tmp_path):
    fig, table, note = pareto_view("rotten_tomatoes", root=tmp_path)  # no runs of one's own
    assert fig is not None and "reference" in set(table["kind"])
    assert "reported (papers)" not in [t.name for t in fig.data] and "relative" in note
    fig, _, _ = pareto_view("rotten_tomatoes", "latency_ms", root=tmp_path, scale="relative")
    reported = [t for t in fig.data if t.name == "reported (papers)"]
    assert len(reported) == 1 and sorted(reported[0].x) == pytest.approx([1 / 4.2, 1 / 2.5], abs=1e-3)
    assert all("REPORTED" in t.hovertemplate for t in reported)
    front = [t for t in fig.data if t.name == "Pareto front"][0]
    assert min(front.x) > 0.3  # the reported points are never part of the front
    fig, _, _ = pareto_view("rotten_tomatoes", "gmacs", root=tmp_path, scale="relative")
    assert [len(t.x) for t in fig.data if t.name == "reported (papers)"] == [1]  # EFTNAS reports MACs
    fig, _, note = pareto_view("rotten_tomatoes", "params_m", root=tmp_path, scale="relative")
    assert "reported (papers)" not in [t.name for t in fig.data] and "report no parameters" in note
    fig, table, note = pareto_view("rotten_tomatoes", root=tmp_path, references=False)
    assert fig is None and table.empty and "No runs on rotten_tomatoes" in note


@pytest.mark.parametrize("task", ["mrpc", "stsb"])
def test_a_glue_tasks_shipped_floor_is_drawn_under_its_reference_runs(tmp_path, task):
    from explorer.runs.references import reference_floor

    floor = reference_floor(task)  # written by scripts/nash_tables.py --ship from the task's training split
    assert floor and floor["low"] > 0  # the dense model is above the constant predictor
    fig, _, note = pareto_view(task, root=tmp_path)
    assert "Grey line or note: a constant predictor" in note
    lines, notes = [shape.y0 for shape in fig.layout.shapes], [a.text for a in fig.layout.annotations]
    if task == "stsb":  # Pearson 0, far below the runs (80-87): a note, not a line
        assert not lines and any("far below this range" in text for text in notes)
    else:
        assert lines == [floor["score"]]
    assert not pareto_view(task, root=tmp_path, scale="relative")[0].layout.shapes


def test_relative_scale_divides_by_each_runs_own_dense_model(tmp_path):
    write_run(tmp_path, "r1", fake_metrics(30, 40, dense_quality=40, dense_latency=100))
    fig, table, _ = pareto_view("samsum", "latency_ms", root=tmp_path, scale="relative", reported=False)
    measured = [t for t in fig.data if t.name == "measured"][0]
    assert list(measured.x) == pytest.approx([0.4]) and list(measured.y) == pytest.approx([75.0])
    with pytest.raises(ValueError, match="Unknown scale"):
        pareto_view("samsum", root=tmp_path, scale="log")


def test_export_csv_and_run_zip(tmp_path, cache):
    import pandas as pd

    write_run(tmp_path / "runs", "r1", fake_metrics(30, 40))
    _, table, _ = pareto_view("samsum", root=tmp_path / "runs", references=False)
    path = export_csv(table, name="runs-samsum")
    assert path.startswith(str(cache))
    assert pd.read_csv(path)["run_id"].tolist() == table["run_id"].tolist()
    assert run_zip("r1", tmp_path / "runs").endswith("r1.zip")
    with pytest.raises(ValueError, match="No run named"):
        run_zip("nope", tmp_path / "runs")


# --- Compare tab: examples and scores --------------------------------------------------------

@needs_shared
def test_test_examples_and_their_scores():
    example = task_example("samsum", str(SHARED / "data"), index=3)
    assert example.source and example.target
    assert "rougeL 100.0" in score_against_reference("samsum", example.target, example)
    assert task_example("samsum", str(SHARED / "data"), seed=1) == \
        task_example("samsum", str(SHARED / "data"), seed=1)


def test_classification_examples_are_scored_right_or_wrong():
    from explorer.data.tasks import Example

    example = Example(source="sst2 sentence: great", target="positive", label=1)
    assert score_against_reference("sst2", "positive", example).endswith("correct")
    assert score_against_reference("sst2", "negative", example).endswith("wrong")
    with pytest.raises(ValueError, match="no gold label"):
        score_against_reference("sst2", "positive", Example(source="x", target=""))
    # WordPiece's decoding is read as the scorer reads it, and the line says so
    mrpc = Example(source="mrpc ...", target="not_equivalent", label=0)
    assert score_against_reference("mrpc", "not _ equivalent", mrpc) == \
        "read as 'not_equivalent', reference 'not_equivalent': correct"
    assert score_against_reference("mrpc", "maybe", mrpc).startswith("read as no label, ")
    stsb = Example(source="stsb ...", target="3.6", label=3.6)
    assert score_against_reference("stsb", "3. 8", stsb) == "read as 3.8, vs reference 3.60: absolute error 0.20"
    assert "no score read" in score_against_reference("stsb", "high", stsb)


@needs_shared
@pytest.mark.slow
def test_a_second_budget_reuses_the_importance_scores_and_the_dense_quality(tiny_dir, tmp_path, cache):
    first = start_prune(fast_settings(tiny_dir, sparsity=0.5, recovery_steps=0), tmp_path / "runs")
    second = start_prune(fast_settings(tiny_dir, sparsity=0.25, layers=1, recovery_steps=0), tmp_path / "runs")
    assert first.metrics["cache_hits"] == {"dense_finetune": False, "importance": False, "dense_quality": False}
    assert second.metrics["cache_hits"] == {"dense_finetune": True, "importance": True, "dense_quality": True}
    assert second.metrics["quality"]["dense"]["metrics"] == first.metrics["quality"]["dense"]["metrics"]
    # the same scores: pruning the first budget again from the cache gives the same plan
    third = start_prune(fast_settings(tiny_dir, sparsity=0.5, recovery_steps=0), tmp_path / "runs")
    assert third.metrics["plan_summary"] == first.metrics["plan_summary"]
    assert (third.path / "plan.json").read_text() == (first.path / "plan.json").read_text()


@needs_shared
@pytest.mark.parametrize("method", ["NASH (learned gates)", "Decoder only (baseline)"])
@pytest.mark.slow
def test_every_method_of_the_prune_tab_makes_a_run(method, tiny_dir, tmp_path, cache):
    sparsity = 0.0 if method.startswith("Decoder") else 0.5
    settings = fast_settings(tiny_dir, method=method, gate_steps=3, sparsity=sparsity, recovery_steps=1)
    run = start_prune(settings, tmp_path / "runs")
    m = run.metrics
    assert m["method"] == method_named(method).name and m["decoder_layers_kept"] == [0, 3]
    if method.startswith("Decoder"):
        assert m["encoder_sparsity_achieved"] == 0.0 and m["gate_training"] is None
    else:
        assert m["gate_training"]["steps"] == 3 and "expected_sparsity" in m["gate_training"]
        assert "gate_training" in m["stage_wall_s"]
    from pruning import PruningPlan, load_pruned

    assert PruningPlan.load(run.path).notes["method"] == method_named(method).name
    assert load_pruned(run.path).config.num_decoder_layers == 2


def test_decoder_only_refuses_encoder_sparsity():
    with pytest.raises(ValueError, match="decoder-only"):
        prune_settings("minilm2minilm", "samsum", 0.3, 2, "uniform", 0, "cpu", 8,
                               method="Decoder only (baseline)")


@needs_shared
@pytest.mark.slow
def test_start_here_runs_the_prune_tabs_default_once_then_reuses_it(tiny_dir, tmp_path, cache, monkeypatch):
    """The first look runs exactly the Prune tab's defaults (a tiny model standing in for the offline
    default here) and hands over a test example; a second click, on another device, reuses that run."""
    from explorer.backend import first_look, prune

    tiny = dict(prune.DEFAULTS, model=tiny_dir, task="samsum", recovery=2, eval_samples=2, finetune_steps=1,
                input_tokens=16, new_tokens=4, repeats=1)
    monkeypatch.setattr(prune, "DEFAULTS", tiny)
    runs, shared = tmp_path / "runs", str(SHARED / "data")
    write_run(runs, "other", fake_metrics(30, 40))  # a run of other settings is never taken for the default
    run, example, reused = first_look.start_here(runs, shared)
    assert not reused and run.metrics["settings"]["model"] == tiny_dir and run.metrics["task"] == "samsum"
    assert run.metrics["settings"]["recovery_steps"] == 2 and example.source and example.target
    again, _, reused = first_look.start_here(runs, shared, progress=lambda f, m: pytest.fail("it ran again"))
    assert reused and again.run_id == run.run_id
    assert first_look.find_run(first_look.default_settings(shared, device="auto"), runs).run_id == run.run_id
    monkeypatch.setattr(prune, "DEFAULTS", dict(tiny, sparsity=0.5))  # other settings: not the same run
    assert first_look.find_run(first_look.default_settings(shared), runs) is None


def test_generations_take_turns_and_a_waiting_session_sees_its_place():
    """compare.Turns: one generation at a time; a second caller is told at once how many are ahead,
    gets its turn when the first is done, and one that stops waiting leaves the line."""
    from explorer.backend.compare import Turns

    turns = Turns()
    assert list(turns.wait()) == []  # a free turn: no waiting at all
    second = turns.wait()
    assert next(second) >= 1  # told at once, while the first holds the turn
    leaver = turns.wait()
    assert next(leaver) >= 1
    leaver.close()  # the session went away
    turns.done()
    assert list(second) in ([], [1])  # its turn comes
    assert turns._waiting == 0
    turns.done()
    assert list(turns.wait()) == [] and turns._waiting == 0
    turns.done()
