"""scripts/nash_tables.py: the method tables NASH's comparison is read from (no training; metrics.json
inputs below are test inputs, not results)."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "nash_tables.py"
spec = importlib.util.spec_from_file_location("nash_tables", SCRIPT)
nash_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(nash_tables)


def metrics(task: str, main: str, value: float, dense: float, sparsity: float, gates: dict | None = None) -> dict:
    quality = {"metrics": {main: dense}, "main_metric": main, "num_examples": 4, "split": "test"}
    return {"quality": {"dense": quality, "pruned": {**quality, "metrics": {main: value}}},
            "dense_finetune": {"steps": 100, "kept_step": 80, "curve": [[40, 10.0], [80, 20.0]]},
            "settings": {"encoder_sparsity": sparsity}, "encoder_sparsity_achieved": sparsity + 0.08,
            "decoder_layers_kept": [0, 3, 5], "speedup_end_to_end": 1.4,
            "speedup_task_lengths": 1.1, "gate_training": gates or {}, "recovery_finetune": {"steps": 200},
            "measurements": {"pruned": {"macs": {"gmacs": 1.0}, "params": {"params_m": 50.0}}}}


def test_summarization_tables_count_distinct_outputs_of_the_first_200_test_dialogues():
    collapsed = ["Tom and Ann will meet."] * 250  # a summarizer that writes one sentence for everything
    varied = [f"summary {i}" for i in range(250)]
    assert nash_tables.distinct_outputs(collapsed) == 1 and nash_tables.distinct_outputs(varied) == 200
    runs = {"learned-k3-s0.3": {"metrics": metrics("samsum", "rougeL", 30.0, 40.0, 0.3, {"steps": 400}),
                                "predictions": {"dense": varied, "pruned": collapsed}, "dir": Path(".")}}
    lines = nash_tables.task_table("samsum", runs, {"learned-k3-s0.3": "k3-s0.3"})
    assert "dense writes 200 distinct summaries of the first 200 test dialogues" in lines[0]
    assert lines[2].endswith("distinct of first 200 |") and lines[3].count("---") == lines[2].count("|") - 1
    row = lines[4].split("|")
    assert row[-2].strip() == "1" and row[4].strip() == "75.0"  # 30 of 40 ROUGE-L: 75% of dense
    header = [cell.strip() for cell in lines[2].split("|")]
    assert row[header.index("encoder sparsity")].strip() == "0.38"  # achieved (gates overshot 0.3), not the target
    glue = nash_tables.task_table("rte", {"learned-k3-s0.3": {**runs["learned-k3-s0.3"], "metrics": metrics(
        "rte", "accuracy", 60.0, 66.0, 0.3)}}, {"learned-k3-s0.3": "k3-s0.3"})
    assert "distinct" not in "".join(glue)  # classification tables have no such column


def test_only_the_matched_cofi_run_counts_for_the_average_and_gates_reached_means_after_warm_up():
    gates = {"steps": 400, "target": 0.3, "target_reached_step": 50, "target_enforced": False,
             "sparsity_trace": [[50, 0.33], [150, 0.2], [260, 0.299], [400, 0.3]]}
    def run(value: float, sparsity: float, gates: dict | None = None) -> dict:
        return {"metrics": metrics("rte", "accuracy", value, 66.0, sparsity, gates), "predictions": None,
                "dir": Path(".")}

    runs = {"cofi-s0.35": run(60.0, 0.35), "cofi-s0.47": run(63.0, 0.47), "learned-k3-s0.3": run(62.0, 0.3, gates)}
    runs["learned-k3-s0.3"]["metrics"]["retimed"] = {"ratios": {"long": [1.3, 1.5, 1.4, 1.45, 1.35]}}
    budgets = {name: "k3-s0.3" for name in runs}
    notes = {"cofi-s0.35": "1.23x vs learned-k3 1.34x timed together", "cofi-s0.47": "1.44x vs 1.41x, matched"}
    lines = nash_tables.task_table("rte", runs, budgets, notes)
    assert nash_tables.chosen_runs(runs, budgets, notes) == {  # CoFi: the matched run, not the first try
        ("cofi", "k3-s0.3"): "cofi-s0.47", ("learned", "k3-s0.3"): "learned-k3-s0.3"}
    learned = next(line for line in lines if "NASH learned" in line)
    assert "| 1.40x [1.3" in learned and "| 1.10x |" in learned  # re-timed: with its interval; task lengths: not
    assert learned.rstrip(" |").endswith("yes (step 260)")  # step 50 was before the warm-up (half of 400 steps)


def test_the_gates_column_says_what_fell_short_when_the_completion_step_ran():
    """Expected sparsity below the target: the gates fell back. At or above it (SAMSum's learned NASH
    without distillation ended at 0.3001 of 0.300): the 0/1 gates of one family removed too little."""
    def row(expected: float, dropped: dict | None = None) -> str:
        gates = {"steps": 400, "target": 0.3, "target_reached_step": 260, "target_enforced": True,
                 "expected_sparsity": expected, "sparsity_trace": [[260, 0.3], [400, expected]],
                 **({"completion_dropped": dropped} if dropped else {})}
        runs = {"learned-k3-s0.3": {"metrics": metrics("rte", "accuracy", 62.0, 66.0, 0.3, gates),
                                    "predictions": None, "dir": Path(".")}}
        lines = nash_tables.task_table("rte", runs, {"learned-k3-s0.3": "k3-s0.3"})
        return next(line for line in lines if "NASH learned" in line).rstrip(" |").rsplit("|", 1)[-1].strip()

    assert row(0.2999) == ("no: 0.2999 of 0.300 at the end (reached at step 260, then fell back); "
                           "completed by dropping units")
    assert row(0.3001) == ("no: expected sparsity 0.3001 of 0.300 at the end, but the deterministic gates of "
                           "heads or of FFN neurons removed less; completed by dropping units")
    def ended(expected: float) -> str:  # the gates reached the target and stayed at or above it
        gates = {"steps": 400, "target": 0.3, "target_reached_step": 244, "target_enforced": False,
                 "expected_sparsity": expected, "sparsity_trace": [[240, 0.27], [260, 0.37], [400, expected]]}
        runs = {"learned-k3-s0.3": {"metrics": metrics("rte", "accuracy", 62.0, 66.0, 0.3, gates),
                                    "predictions": None, "dir": Path(".")}}
        lines = nash_tables.task_table("rte", runs, {"learned-k3-s0.3": "k3-s0.3"})
        return next(line for line in lines if "NASH learned" in line).rstrip(" |").rsplit("|", 1)[-1].strip()

    assert ended(0.305) == "yes (step 244)"
    assert ended(0.38) == "yes (step 244); ended above it, at 0.380"  # MRPC's learned NASH at 3 of 6
    # Runs since 2026-12-02 record how many units the step removed, per family.
    assert row(0.3001, {"heads": 0, "ffn_neurons": 12}).endswith("completed by dropping 12 FFN neurons")
    assert row(0.29, {"heads": 2, "ffn_neurons": 150}).endswith("completed by dropping 2 heads and 150 FFN neurons")


def test_cofi_runs_within_5_percent_of_nash_in_the_same_re_timing_are_compared_too():
    def run(speedup: float, date: str | None = "2026-12-01T18:00") -> dict:
        m = {"speedup_end_to_end": speedup, **({"retimed": {"date": date}} if date else {})}
        return {"metrics": m}

    runs = {"learned-k1-s0.5": run(1.80), "cofi-s0.85": run(1.70), "cofi-s0.87": run(1.75), "cofi-s0.9": run(1.86),
            "cofi-s0.95": run(1.80, date="2026-11-30T10:00"), "training-free-k1-s0.5": run(1.78)}
    # 0.85 is 5.6% slower; 0.95 was timed in another re-timing; training-free NASH is not CoFi
    assert nash_tables.same_speed_cofi("learned-k1-s0.5", runs) == [("cofi-s0.87", 1.75), ("cofi-s0.9", 1.86)]
    assert nash_tables.same_speed_cofi("learned-k1-s0.5", {**runs, "learned-k1-s0.5": run(1.80, None)}) == []


def test_stored_predictions_are_scored_again_with_the_current_scorer(tmp_path):
    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    wordpiece = ["5. 0", "4. 8", "5. 0", "2. 4"]  # how a BERT2BERT model decodes STS-B scores
    stale = {"pearson": 0.0, "spearman": 0.0}  # what the old parser made of them
    metrics = {"quality": {"dense": {"metrics": dict(stale)}, "pruned": {"metrics": dict(stale)}},
               "intervals": {"vs_dense": {"diff": 0.0, "low": 0.0, "high": 0.0}},
               "dense_finetune": {"curve": [[90, 0.0], [180, 0.0]]}}
    runs = {"training-free-k3-s0.3": {"metrics": metrics, "dir": tmp_path, "predictions": {
        "num_examples": 4, "dense": wordpiece, "pruned": list(reversed(wordpiece))}}}
    assert nash_tables.rescore("stsb", runs, str(data), write_back=True) == ["training-free-k3-s0.3"]
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics  # the run's own folder: scored once
    assert metrics["quality"]["dense"]["metrics"]["pearson"] > 90  # the first 4 dev pairs: 5.0, 4.75, 5.0, 2.4
    assert metrics["quality"]["pruned"]["metrics"]["pearson"] < 0 and metrics["rescored"]["previous"]["dense"] == stale
    assert metrics["intervals"]["vs_dense"]["diff"] < 0 and "cannot be scored again" in metrics["dense_finetune"][
        "curve_note"]
    assert nash_tables.rescore("stsb", runs, str(data)) == []  # scored once: nothing changes


def test_shipping_the_same_runs_again_keeps_their_provenance(tmp_path, monkeypatch):
    monkeypatch.setattr(nash_tables, "ROOT", tmp_path)
    run_dir = tmp_path / "out" / "learned-k3-s0.3"
    run_dir.mkdir(parents=True)
    (run_dir / "plan.json").write_text("{}")
    runs = {"learned-k3-s0.3": {"metrics": metrics("rte", "accuracy", 60.0, 66.0, 0.3), "dir": run_dir}}
    dest = nash_tables.ship("rte", run_dir.parent, runs)
    provenance = dest / "provenance.json"
    first = provenance.read_text().replace('"date"', '"first"')
    provenance.write_text(first)  # what a shipping on an earlier commit and date wrote
    nash_tables.ship("rte", run_dir.parent, runs)
    assert provenance.read_text() == first and not list(tmp_path.glob("assets/.*"))
    runs["learned-k3-s0.3"]["metrics"]["quality"]["pruned"]["metrics"]["accuracy"] = 61.0  # a changed result
    nash_tables.ship("rte", run_dir.parent, runs)
    assert provenance.read_text() != first and '"accuracy": 61.0' in (
        dest / "minilm2minilm__rte__learned-k3-s0.3" / "metrics.json").read_text()
    assert not (dest / "floor.json").exists()
    floor = {"metric": "accuracy", "diff": 8.0, "low": 2.0, "high": 14.0, "n": 4, "text": "entailment",
             "of": "majority label", "score": 52.0}
    nash_tables.ship("rte", run_dir.parent, runs, floor)  # the task's constant predictor, for the Pareto tab
    assert json.loads((dest / "floor.json").read_text()) == dict(floor, task="rte", dense=60.0)


def test_glue_average_row_per_method_on_every_task_with_a_stratified_interval(monkeypatch):
    from explorer.data.tasks import Example

    examples = {"rte": [Example(source=f"p {i}", target="", label=i % 2) for i in range(40)],
                "cola": [Example(source=f"s {i}", target="", label=i % 2) for i in range(60)]}
    monkeypatch.setattr(nash_tables, "eval_examples", lambda task, n, data_dir: examples[task][:n])
    words = {"rte": ["entailment", "not_entailment"], "cola": ["unacceptable", "acceptable"]}

    def run(task: str, wrong_every: int) -> dict:
        gold = [words[task][e.label] for e in examples[task]]
        pruned = [words[task][1 - e.label] if i % wrong_every == 0 else g
                  for i, (e, g) in enumerate(zip(examples[task], gold))]
        return {"predictions": {"num_examples": len(gold), "dense": gold, "pruned": pruned}}

    rte = {"learned-k3-s0.3": run("rte", 4), "training-free-k3-s0.3": run("rte", 5)}
    per_task = {"rte": (rte, {("learned", "k3-s0.3"): "learned-k3-s0.3",
                              ("training-free", "k3-s0.3"): "training-free-k3-s0.3"}),
                "cola": ({"learned-k3-s0.3": run("cola", 100)}, {("learned", "k3-s0.3"): "learned-k3-s0.3"})}
    lines = nash_tables.average_table(per_task, None)
    assert len(lines) == 5 and "training-free" not in lines[-1]  # a method without a run on every task: no row
    assert "(partial: 2 of 5 tasks; not yet mrpc, stsb, sst2)" in lines[0]
    row = lines[-1].split("|")
    # dense: 100 accuracy on RTE, 100 MCC on CoLA; learned: 75 on RTE (every 4th wrong) and, with one of 60 wrong
    # on CoLA (i = 0: TN 29, FP 1, TP 30), MCC 870 / sqrt(31 * 30 * 30 * 29) = 96.72: average (75 + 96.72) / 2
    assert row[3].strip() == "100.00" and row[4].strip() == "85.86"
    assert row[5].strip().startswith("-14.14 [-") and row[5].strip().endswith("**real**")  # RTE's loss is real
    assert row[6].strip().startswith("85.9 [") and float(row[6].split("[")[1].split(",")[1].rstrip("] ")) < 100


def test_a_control_run_of_dense_trained_as_long_gets_its_own_row_and_column(monkeypatch):
    from explorer.data.tasks import Example

    examples = [Example(source=f"r {i}", target="", label=i % 2) for i in range(50)]
    monkeypatch.setattr(nash_tables, "eval_examples", lambda task, n, data_dir: examples[:n])
    words = ["negative", "positive"]
    gold = [words[e.label] for e in examples]
    flip = [words[1 - e.label] if i % 5 == 0 else g for i, (e, g) in enumerate(zip(examples, gold))]  # 10 wrong

    def run(value: float, pruned: list[str], layers: int, sparsity: float) -> dict:
        m = metrics("rotten_tomatoes", "accuracy", value, 80.0, sparsity)
        m["decoder_layers_kept"] = list(range(layers))
        return {"metrics": m, "dir": Path("."), "predictions": {"num_examples": 50, "dense": flip, "pruned": pruned}}

    runs = {"dense-trained-k6-s0": run(100.0, gold, 6, 0.0), "learned-k3-s0.3": run(80.0, flip, 3, 0.3)}
    assert nash_tables.budget_of("dense-trained-k6-s0", runs["dense-trained-k6-s0"], {}) == "control"
    nash_tables.add_intervals("rotten_tomatoes", runs, {}, None)
    against = runs["learned-k3-s0.3"]["metrics"]["intervals"]["vs_dense_trained"]
    assert against["against"] == "dense-trained-k6-s0" and against["diff"] == -20.0 and against["high"] < 0
    assert "vs_dense_trained" not in (runs["dense-trained-k6-s0"]["metrics"].get("intervals") or {})
    lines = nash_tables.task_table("rotten_tomatoes", runs, {})
    assert "| vs dense + same training, 95% CI |" in lines[2] and lines[3].count("---") == lines[2].count("|") - 1
    control, learned = lines[4].split("|"), lines[5].split("|")
    assert control[1].strip() == "control" and control[2].strip() == "dense + the same training (control)"
    assert learned[7].strip().startswith("-20.00 [") and learned[7].strip().endswith("**real**")
    # % of dense (the same outputs: 100 with no spread) and % of the control (80 of 100), each with its interval
    assert learned[4].strip() == "100.0 [100.0, 100.0]" and control[8].strip() == "-"
    share = learned[8].strip()
    assert share.startswith("80.0 [") and float(share.split(", ")[1].rstrip("]")) < 100
    assert runs["learned-k3-s0.3"]["metrics"]["intervals"]["share_of_dense_trained"]["against"] == "dense-trained-k6-s0"
    # the distillation ablation: learned NASH with distillation against without, at the same budget
    runs["learned-nodistill-k3-s0.3"] = run(100.0, gold, 3, 0.3)
    nash_tables.add_intervals("rotten_tomatoes", runs, {}, None)
    ablation = runs["learned-k3-s0.3"]["metrics"]["intervals"]["vs_no_distill"]
    assert ablation["against"] == "learned-nodistill-k3-s0.3" and ablation["diff"] == -20.0 and ablation["high"] < 0
    assert "vs_no_distill" not in runs["learned-nodistill-k3-s0.3"]["metrics"]["intervals"]


def test_the_constant_predictor_writes_the_training_majority_or_mean_and_dense_is_measured_against_it(monkeypatch):
    from explorer.data.tasks import Example

    train = {"mrpc": [Example(source="", target="", label=label) for label in (1, 1, 0)],
             "rte": [Example(source="", target="", label=label) for label in (1, 0)],  # a tie: the lower id
             "stsb": [Example(source="", target="", label=score) for score in (1.0, 4.0, 4.5)]}
    monkeypatch.setattr(nash_tables, "load_split", lambda spec, split, data_dir: train[spec.name])
    nash_tables.constant_prediction.cache_clear()
    assert nash_tables.constant_prediction("mrpc", "x") == "equivalent"
    assert nash_tables.constant_prediction("rte", "x") == "entailment"
    assert nash_tables.constant_prediction("stsb", "x") == "3.2"
    assert nash_tables.constant_prediction("samsum", "x") is None
    gold = [Example(source="", target="", label=i % 2) for i in range(200)]
    monkeypatch.setattr(nash_tables, "eval_examples", lambda task, n, data_dir: gold[:n])
    right = ["not_equivalent", "equivalent"]
    floor = nash_tables.above_constant("mrpc", [right[e.label] for e in gold], "x")
    # the constant "equivalent" finds every positive: F1 2 * 0.5 / 1.5 = 66.67; dense 100
    assert round(floor["score"], 2) == 66.67 and floor["of"] == "majority label" and floor["low"] > 0
    guess = nash_tables.above_constant("mrpc", ["equivalent"] * 200, "x")
    assert guess["diff"] == 0 and guess["low"] <= 0 <= guess["high"]
    nash_tables.constant_prediction.cache_clear()


def test_the_glue_average_is_given_again_without_a_task_whose_dense_model_does_not_beat_a_constant(monkeypatch):
    monkeypatch.setattr(nash_tables, "average_table",
                        lambda per_task, data_dir, why_not="": [" ".join(per_task), why_not])
    per_task = {"rte": ({}, {}), "mrpc": ({}, {})}
    above = {"diff": 4.5, "low": 1.6, "high": 7.4, "text": "equivalent"}
    guess = {"diff": 1.0, "low": -3.0, "high": 5.0, "text": "entailment"}
    assert nash_tables.glue_averages(per_task, {"rte": above, "mrpc": above}, None) == [["rte mrpc", ""]]
    tables = nash_tables.glue_averages(per_task, {"rte": guess, "mrpc": above}, None)
    assert tables[0] == ["rte mrpc", ""] and tables[1][0] == "mrpc"
    assert tables[1][1].startswith("without rte: rte's dense model is not shown above a constant \"entailment\"")
    # every task at chance: nothing is left to average
    assert len(nash_tables.glue_averages(per_task, {"rte": guess, "mrpc": guess}, None)) == 1


def test_the_readme_tables_are_the_scripts_output_between_their_markers():
    text = ("intro\n<!-- nash_tables: mrpc -->\nold table\n<!-- /nash_tables -->\nprose\n"
            "<!-- nash_tables: rte -->\nkept\n<!-- /nash_tables -->\n")
    new, filled = nash_tables.fill_readme(text, {"mrpc": "| new | table |", "sst2": "unused"})
    assert filled == ["mrpc"] and new == text.replace("old table", "| new | table |")
    assert nash_tables.fill_readme(new, {"mrpc": "| new | table |"})[0] == new  # the same output: unchanged
    with pytest.raises(ValueError, match="do not pair up"):
        nash_tables.fill_readme(text.replace("<!-- /nash_tables -->\nprose", "prose"), {"mrpc": "x"})


def test_a_new_machine_restores_the_shipped_results_and_shipping_never_deletes_one(tmp_path, monkeypatch):
    monkeypatch.setattr(nash_tables, "ROOT", tmp_path)
    old = tmp_path / "old" / "rte"
    for name in ("learned-k3-s0.3", "training-free-k3-s0.3"):
        (old / name).mkdir(parents=True)
        (old / name / "plan.json").write_text('{"plan": "' + name + '"}')
    (old / "cofi-match-learned-k3-s0.3.json").write_text('{"tries": []}')
    runs = {name: {"metrics": metrics("rte", "accuracy", value, 66.0, 0.3), "dir": old / name}
            for name, value in (("learned-k3-s0.3", 60.0), ("training-free-k3-s0.3", 58.0))}
    shipped = nash_tables.ship("rte", old, runs)
    before = {p: p.read_bytes() for p in shipped.rglob("*") if p.is_file()}

    new = tmp_path / "out" / "nash"  # a new machine: one run made again, the rest only shipped
    (new / "rte" / "learned-k3-s0.3").mkdir(parents=True)
    (new / "rte" / "learned-k3-s0.3" / "metrics.json").write_text(json.dumps(runs["learned-k3-s0.3"]["metrics"]))
    shutil.copy(old / "learned-k3-s0.3" / "plan.json", new / "rte" / "learned-k3-s0.3" / "plan.json")
    fresh = {"learned-k3-s0.3": {"metrics": runs["learned-k3-s0.3"]["metrics"], "dir": new / "rte" / "learned-k3-s0.3"}}
    with pytest.raises(ValueError, match="--restore"):  # shipping now would delete training-free and the record
        nash_tables.ship("rte", new / "rte", fresh)
    assert {p: p.read_bytes() for p in shipped.rglob("*") if p.is_file()} == before  # nothing lost

    restored = nash_tables.restore(new, tmp_path / "assets")
    assert sorted(Path(p).name for p in restored) == ["cofi-match-learned-k3-s0.3.json", "training-free-k3-s0.3"]
    back = new / "rte" / "training-free-k3-s0.3"
    assert json.loads((back / "metrics.json").read_text()) == runs["training-free-k3-s0.3"]["metrics"]
    assert (back / "plan.json").read_text() == '{"plan": "training-free-k3-s0.3"}' and (back / "restored.json").is_file()
    assert json.loads((new / "rte" / "learned-k3-s0.3" / "metrics.json").read_text()) == runs["learned-k3-s0.3"][
        "metrics"]  # a run already there is never overwritten
    assert nash_tables.restore(new, tmp_path / "assets") == []  # a second restore has nothing to do

    again = nash_tables.load_task(new / "rte")
    for run in again.values():  # the same results in another key order: the shipped bytes are kept
        run["metrics"] = dict(reversed(list(run["metrics"].items())))
    nash_tables.ship("rte", new / "rte", again)
    assert {p: p.read_bytes() for p in shipped.rglob("*") if p.is_file()} == before


def test_a_score_that_differs_only_in_its_last_bit_is_not_scored_again():
    assert nash_tables.same_scores({"pearson": 86.5225850329775}, {"pearson": 86.52258503297749})
    assert not nash_tables.same_scores({"pearson": 86.52}, {"pearson": 86.53})
    assert not nash_tables.same_scores({"pearson": 86.52}, {"spearman": 86.52})


def test_runs_pruned_from_a_dense_fine_tune_made_again_are_kept_apart_and_the_two_dense_models_compared():
    data = str(Path(__file__).resolve().parents[2] / "shared" / "data")
    first = ["equivalent", "not_equivalent", "equivalent", "equivalent"]
    again = ["equivalent", "equivalent", "equivalent", "equivalent"]  # the same recipe on a new machine

    def run(dense, pruned, value, dense_value):
        m = metrics("mrpc", "f1", value, dense_value, 0.5)
        m["intervals"] = {"vs_dense": {"diff": value - dense_value, "low": -9.0, "high": 1.0}}
        return {"metrics": m, "predictions": {"num_examples": 4, "dense": dense, "pruned": pruned}, "dir": None}

    runs = {"learned-k1-s0.5": run(first, first, 80.0, 80.0), "training-free-k1-s0.5": run(first, again, 78.0, 80.0),
            "cofi-s0.9": run(again, first, 75.0, 79.0), "decoder-only-k1-s0": {**run(first, first, 1, 1), "predictions": None}}
    main, others = nash_tables.split_by_dense(runs)
    assert set(others) == {"cofi-s0.9"} and set(main) == set(runs) - {"cofi-s0.9"}
    assert nash_tables.split_by_dense(main) == (main, {})
    lines = nash_tables.other_dense_lines("mrpc", main, others, data)
    assert any(line.startswith("- cofi-s0.9: f1 75.00 against its own dense 79.00") for line in lines)
    assert any("The two dense fine-tunes" in line and "4 examples" in line for line in lines)


def test_a_restored_task_knows_whether_its_dense_fine_tune_is_on_this_machine(tmp_path):
    task = tmp_path / "mrpc"
    assert nash_tables.restored_dense_status(task if task.mkdir() is None else task) == "none"
    record = {"path": str(tmp_path / "cache" / "minilm2minilm__mrpc__abc"), "curve": [[60, 83.5]], "train_loss": 0.35,
              "kept_step": 60, "steps": 542}
    (task / "learned-k1-s0.5").mkdir()
    (task / "learned-k1-s0.5" / "metrics.json").write_text(json.dumps({"dense_finetune": record}))
    assert nash_tables.restored_dense_status(task) == "none"  # made here, not restored
    (task / "learned-k1-s0.5" / nash_tables.RESTORED).write_text("{}")
    assert nash_tables.restored_dense_status(task) == "absent"
    Path(record["path"]).mkdir(parents=True)
    (Path(record["path"]) / "finetune.json").write_text(json.dumps(dict(record, curve=[[60, 83.7]])))
    assert nash_tables.restored_dense_status(task) == "different"  # the same recipe made again elsewhere
    (Path(record["path"]) / "finetune.json").write_text(json.dumps(record))
    assert nash_tables.restored_dense_status(task) == "here"


def test_a_task_still_in_training_stays_out_of_the_glue_average():
    every = {(k, b): f"{k}-{b}" for k in nash_tables.REQUIRED for b in ("k3-s0.3", "k1-s0.5")}
    started = {("training-free", "k3-s0.3"): "training-free-k3-s0.3", ("dense-trained", "control"): "dense-trained"}
    no_cofi_match = {**every, ("dense-trained", "control"): "dense-trained"}
    assert nash_tables.complete_tasks({"mrpc": no_cofi_match, "stsb": every, "rte": started}) == ["mrpc", "stsb"]


def test_the_cost_table_counts_each_dense_fine_tune_once_and_each_run_without_it():
    def run(kind_stages, dense_wall, dense_predictions, resumed=False):
        m = metrics("cola", "mcc", 10.0, 12.0, 0.3)
        m.update(stage_wall_s=kind_stages, device="cpu (1 threads, AMD EPYC)", resumed=["t"] if resumed else [])
        m["dense_finetune"]["wall_s"] = dense_wall
        return {"metrics": m, "predictions": {"num_examples": 2, "dense": dense_predictions, "pruned": ["a", "b"]}}

    first, again = ["a", "b"], ["b", "b"]
    runs = {"dense-trained-k6-s0": run({"dense": 1800, "recovery": 900}, 1800, first),  # it fine-tuned dense
            "learned-k3-s0.3": run({"dense": 1, "gate_training": 420, "recovery": 120}, 1800, first, resumed=True),
            "cofi-s0.5": run({"dense": 0, "gate_training": 900, "recovery": 300}, 1800, first),
            "decoder-only-k3-s0": run({"dense": 1500, "recovery": 240}, 1500, again)}
    rows = nash_tables.cost_rows("cola", runs)
    assert rows[0] == "| cola | 30 | 2: 12 (9-15) | 1: 20 (20-20) | 1.2 | 1 | cpu (1 threads, AMD EPYC) |"
    assert rows[1] == "| cola | 25 | 1: 4 (4-4) | 0 | 0.5 | 0 | cpu (1 threads, AMD EPYC) |"
    assert len(rows) == 2 and len(nash_tables.COST_HEADER[0].split("|")) == len(rows[0].split("|"))


def test_a_cofi_run_judged_by_both_searches_belongs_to_the_one_it_matched_or_came_nearest():
    # RTE, 2026-12-03: the 1-of-6 search judged the runs made for 3 of 6 first (scripts/cofi_match.py)
    def attempt(s, speedup, nash):
        return {"sparsity": s, "run": f"out/nash/rte/cofi-s{s}", "speedup": speedup, "nash_speedup": nash}
    records = {
        "learned-k3-s0.3": {"tries": [attempt(0.47, 1.30, 1.37), attempt(0.54, 1.43, 1.38)],
                            "matched": "out/nash/rte/cofi-s0.54"},
        "learned-k1-s0.5": {"tries": [attempt(0.47, 1.35, 1.83), attempt(0.54, 1.37, 1.88), attempt(0.95, 1.70, 1.85)],
                            "matched": None},
    }
    records["learned-k3-s0.3"]["tries"].append(attempt(0.95, 1.70, 1.40))  # judged by both; nearer at 1 of 6
    owners = nash_tables.cofi_owners(records)
    assert {n: o[0] for n, o in owners.items()} == {
        "cofi-s0.47": "learned-k3-s0.3",  # 5% from NASH there, 26% at 1 of 6
        "cofi-s0.54": "learned-k3-s0.3",  # matched there
        "cofi-s0.95": "learned-k1-s0.5"}  # 8% from NASH there, 21% at 3 of 6
    assert nash_tables.match_notes(owners)["cofi-s0.54"] == "1.43x vs learned-k3-s0.3 1.38x timed together, matched"
    assert owners["cofi-s0.54"][2] and not owners["cofi-s0.47"][2] and owners["cofi-s0.47"][1]["nash_speedup"] == 1.37
    # the order the records are read in does not matter
    assert nash_tables.cofi_owners(dict(reversed(list(records.items())))) == owners


def test_a_whole_table_made_again_from_a_new_dense_model_replaces_the_shipped_one_only_when_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(nash_tables, "ROOT", tmp_path)

    def table(folder: Path, dense: list[str], names: list[str]) -> dict[str, dict]:
        runs = {}
        for name in names:
            (folder / name).mkdir(parents=True)
            (folder / name / "predictions.json").write_text(json.dumps({"dense": dense, "pruned": dense}))
            runs[name] = {"metrics": metrics("samsum", "rougeL", 20.0, 21.0, 0.3), "dir": folder / name,
                          "predictions": {"dense": dense, "pruned": dense}}
        return runs

    first = table(tmp_path / "old", ["a", "b"], ["dense-trained-k6-s0", "learned-k3-s0.3", "cofi-s0.59"])
    dest = nash_tables.ship("samsum", tmp_path / "old", first)
    again = table(tmp_path / "new", ["a", "c"], ["dense-trained-k6-s0", "learned-k1-s0.5"])
    with pytest.raises(ValueError, match="--restore"):  # without --replace, never
        nash_tables.ship("samsum", tmp_path / "new", again)
    with pytest.raises(ValueError, match="lacks learned-k3-s0.3"):  # not whole yet
        nash_tables.ship("samsum", tmp_path / "new", again, replace=True)
    again |= table(tmp_path / "new", ["a", "c"], ["learned-k3-s0.3", "cofi-s0.62"])
    same = table(tmp_path / "same", ["a", "b"], ["dense-trained-k6-s0", "learned-k3-s0.3"])
    with pytest.raises(ValueError, match="shipped runs' own"):
        nash_tables.ship("samsum", tmp_path / "same", same, replace=True)
    mixed = dict(again, **{"learned-k1-s0.5": same["learned-k3-s0.3"]})
    with pytest.raises(ValueError, match="from 2 dense"):
        nash_tables.ship("samsum", tmp_path / "new", mixed, replace=True)
    assert sorted(p.name.split("__")[-1] for p in dest.iterdir() if p.is_dir()) == [
        "cofi-s0.59", "dense-trained-k6-s0", "learned-k3-s0.3"]  # every refusal left the shipped table as it was
    nash_tables.ship("samsum", tmp_path / "new", again, replace=True)
    assert sorted(p.name.split("__")[-1] for p in dest.iterdir() if p.is_dir()) == [
        "cofi-s0.62", "dense-trained-k6-s0", "learned-k1-s0.5", "learned-k3-s0.3"]  # the old CoFi sparsity went


def test_a_table_being_made_again_stages_its_finished_runs_apart_and_a_new_machine_goes_on_from_them(tmp_path,
                                                                                                  monkeypatch):
    monkeypatch.setattr(nash_tables, "ROOT", tmp_path)

    def run(folder: Path, name: str, dense: list[str]) -> dict:
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "predictions.json").write_text(json.dumps({"dense": dense, "pruned": dense}))
        (folder / name / "metrics.json").write_text(json.dumps(metrics("samsum", "rougeL", 20.0, 21.0, 0.5)))
        return {"metrics": metrics("samsum", "rougeL", 20.0, 21.0, 0.5), "dir": folder / name,
                "predictions": {"dense": dense, "pruned": dense}}

    shipped = nash_tables.ship("samsum", tmp_path / "old", {
        n: run(tmp_path / "old", n, ["a", "b"]) for n in ("dense-trained-k6-s0", "learned-k3-s0.3")})
    before = {p: p.read_bytes() for p in shipped.rglob("*") if p.is_file()}
    first = tmp_path / "redo" / "samsum"  # the redo's first machine: two runs finished, then lost
    staged = nash_tables.ship("samsum", first, {n: run(first, n, ["a", "c"]) for n in (
        "dense-trained-k6-s0", "learned-k1-s0.5")}, redo=True)
    assert staged == tmp_path / "assets" / "redo" / "reference_runs_nash_samsum"
    assert {p: p.read_bytes() for p in shipped.rglob("*") if p.is_file()} == before  # the shipped table untouched

    second = tmp_path / "redo2"  # a new machine: nothing yet, so staging now would delete the staged runs
    with pytest.raises(ValueError, match="--restore --redo"):
        nash_tables.ship("samsum", second / "samsum", {"training-free-k1-s0.5": run(second / "samsum",
                                                        "training-free-k1-s0.5", ["a", "c"])}, redo=True)
    assert sorted(Path(p).name for p in nash_tables.restore(second, tmp_path / "assets" / "redo")) == [
        "dense-trained-k6-s0", "learned-k1-s0.5"]  # the staged runs, not the shipped ones
    runs = nash_tables.load_task(second / "samsum")  # the two restored, and training-free, finished meanwhile
    with pytest.raises(ValueError, match="2 dense fine-tunes"):  # its dense made again is another model
        nash_tables.ship("samsum", second / "samsum", dict(runs, other=run(second / "samsum", "other", ["x", "y"])),
                         redo=True)
    runs |= {"decoder-only-k1-s0": run(second / "samsum", "decoder-only-k1-s0", ["a", "c"])}  # bit-identical
    nash_tables.ship("samsum", second / "samsum", runs, redo=True)
    assert sorted(p.name.split("__")[-1] for p in staged.iterdir() if p.is_dir()) == [
        "decoder-only-k1-s0", "dense-trained-k6-s0", "learned-k1-s0.5", "training-free-k1-s0.5"]

    run(first, "learned-k3-s0.3", ["a", "c"])  # whole against the shipped table, but not against the staged one
    with pytest.raises(ValueError, match="staged in"):  # replacing with less than what is staged would lose results
        nash_tables.ship("samsum", first, nash_tables.load_task(first), replace=True)
    assert {p: p.read_bytes() for p in shipped.rglob("*") if p.is_file()} == before
    runs |= {"learned-k3-s0.3": run(second / "samsum", "learned-k3-s0.3", ["a", "c"])}
    nash_tables.ship("samsum", second / "samsum", runs, replace=True)
    assert not staged.exists() and sorted(p.name.split("__")[-1] for p in shipped.iterdir() if p.is_dir()) == [
        "decoder-only-k1-s0", "dense-trained-k6-s0", "learned-k1-s0.5", "learned-k3-s0.3", "training-free-k1-s0.5"]


def test_a_second_table_of_a_task_ships_and_restores_under_its_own_key(tmp_path, monkeypatch):
    """SAMSum has runs from two dense fine-tunes, each complete at one budget: the second set is its own
    table (``samsum__dense2``), shipped beside the first without touching it, and restored into its own
    folder on a new machine; its runs, examples and floor are SAMSum's."""
    monkeypatch.setattr(nash_tables, "ROOT", tmp_path)
    assert nash_tables.table_task("samsum__dense2") == "samsum"
    assert nash_tables.table_task("rotten_tomatoes") == "rotten_tomatoes"

    def runs(folder: Path, dense: list[str]) -> dict:
        made = {}
        for name in ("dense-trained-k6-s0", "learned-k3-s0.3"):
            (folder / name).mkdir(parents=True)
            (folder / name / "metrics.json").write_text(json.dumps(metrics("samsum", "rougeL", 20.0, 21.0, 0.5)))
            made[name] = {"metrics": metrics("samsum", "rougeL", 20.0, 21.0, 0.5), "dir": folder / name,
                          "predictions": {"dense": dense, "pruned": dense}}
        return made

    first = nash_tables.ship("samsum", tmp_path / "out" / "samsum", runs(tmp_path / "out" / "samsum", ["a", "b"]))
    before = {p: p.read_bytes() for p in first.rglob("*") if p.is_file()}
    second = nash_tables.ship("samsum__dense2", tmp_path / "out" / "samsum__dense2",
                              runs(tmp_path / "out" / "samsum__dense2", ["a", "c"]))
    assert second == tmp_path / "assets" / "reference_runs_nash_samsum__dense2"
    assert sorted(p.name for p in second.iterdir() if p.is_dir()) == [
        "minilm2minilm__samsum__dense-trained-k6-s0", "minilm2minilm__samsum__learned-k3-s0.3"]
    assert "TASKS=samsum " in json.loads((second / "provenance.json").read_text())["command"]
    assert {p: p.read_bytes() for p in first.rglob("*") if p.is_file()} == before  # the first table untouched
    restored = nash_tables.restore(tmp_path / "new", tmp_path / "assets")
    assert sorted(str(Path(p).relative_to(tmp_path / "new")) for p in restored) == [
        "samsum/dense-trained-k6-s0", "samsum/learned-k3-s0.3",
        "samsum__dense2/dense-trained-k6-s0", "samsum__dense2/learned-k3-s0.3"]
