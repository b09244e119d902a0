"""NASH's method tables from finished runs (scripts/nash_tables.sh): per task, every method at each
budget with its metric, its % of dense (and of the control) with a 95% interval, the paired bootstrap
interval of its difference from dense, from the control (the dense model given the same training, when
the task has one) and from training-free NASH at the same budget, speed-ups at 256/64 and at the task's
lengths, GMACs, parameters, training steps, and whether the gates reached the target alone, under a
title with the task's floor (a constant predictor's score and dense's interval above it); then the
dense learning curves and the GLUE average with stratified bootstrap intervals
(``scoring.average_interval``), again without any task whose dense model is not shown above its floor.

    .venv/bin/python scripts/nash_tables.py out/nash                 # print the tables
    .venv/bin/python scripts/nash_tables.py out/nash --ship          # and ship them to assets/
    .venv/bin/python scripts/nash_tables.py assets --shipped         # the shipped reference runs
    .venv/bin/python scripts/nash_tables.py assets --shipped --readme README.md   # and the README's tables

``--ship`` writes the intervals against training-free NASH into each run's metrics.json (the
Pareto tab's hover shows them) and copies metrics.json, plan.json and predictions.json (no weights)
of every finished run to ``assets/reference_runs_nash_<task>/minilm2minilm__<task>__<run>/``, with
the CoFi matching records, the dense learning curve, the floor (``floor.json``) and a provenance.json.
It refuses to ship a task whose run folder lacks a run or matching record already shipped (that would
delete a result): on a new machine, ``--restore`` first brings the shipped results back. The one exception,
``--ship --replace``: a task's whole table made again from one new dense fine-tune (``nash_tables.sh`` with
``RESTORE=0 SHIP=0``) replaces the shipped one, when it holds every non-CoFi run the shipped table holds
(CoFi's searched sparsities may differ) and none of its runs shares the shipped runs' dense model.

A table being made again keeps what it has finished in the repository meanwhile, apart from the shipped
tables (no tab or table reads it): ``--ship --redo`` copies its finished runs to
``assets/redo/reference_runs_nash_<task>/`` (all from one dense fine-tune, never deleting one staged earlier),
``--restore --redo`` brings them back on a new machine, and ``--ship --replace`` removes the task's staged
folder once the whole table is shipped. A new machine goes on from the staged runs only where the dense fine-tune
made again there is bit-identical (seeded, the same thread count and CPU; ``nash_tables.sh`` with
``NEW_DENSE_<TASK>=1``); otherwise its new runs come from another dense model, and shipping refuses to mix them.

    .venv/bin/python scripts/nash_tables.py out/nash --restore       # shipped results -> out/nash (new machine)

A task whose runs come from two dense fine-tunes that cannot be joined (SAMSum: the second could not be made
again on a new machine) has a second table with its own key, ``<task>__<label>`` (:func:`table_task`): its
own run folder (``out/nash/samsum__dense2``), shipped folder and README marker, compared only within itself.

``--restore`` copies each shipped run's metrics.json, plan.json and predictions.json (and the CoFi
matching records) into ``out/nash/<task>/<run>/`` where that run has no metrics.json, with a
``restored.json`` marker: ``scripts/nash_tables.sh`` then counts the run as finished, and the re-timing
(``scripts/nash_retime.py``) and CoFi matching (``scripts/cofi_match.py``) rebuild its architecture from
plan.json (``explorer.evaluation.timing_models.timing_model``), since its weights stayed on the old machine.
"""

import argparse
import functools
import hashlib
import json
import math
import re
import shutil
import statistics
import subprocess
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.data.tasks import get_task
from explorer.data.splits import load_split
from explorer.evaluation.latency import speedup_interval
from explorer.evaluation.scoring import average_interval, compute_metrics, paired_interval
from pruning.atomic import atomic_write_text

GLUE = ("rte", "mrpc", "stsb", "cola", "sst2")
ORDER = ("dense-trained", "training-free", "learned", "learned-nodistill", "decoder-only", "cofi")
LABEL = {"dense-trained": "dense + the same training (control)",
         "training-free": "NASH training-free", "learned": "NASH learned + distillation",
         "learned-nodistill": "NASH learned, no distillation", "decoder-only": "decoder-only shortening",
         "cofi": "CoFi (all 6 decoder layers)"}
DISTINCT_OF = 200  # summarization tables count distinct outputs among the first 200 test dialogues


def table_task(key: str) -> str:
    """The task of a table, from its key (a task folder's name): ``samsum`` -> ``samsum``. A second table
    of a task, whose runs come from another dense fine-tune, has its own key, ``<task>__<label>`` (e.g.
    ``samsum__dense2``): its own run folder, shipped folder (``assets/reference_runs_nash_samsum__dense2``)
    and README marker, while its examples, metric and floor are the task's."""
    return key.split("__", 1)[0]


def _kind(name: str) -> str:
    """The method of a run folder name (``learned-k3-s0.3`` -> ``learned``)."""
    return name.split("__")[-1].rsplit("-k", 1)[0] if "-k" in name else name.split("__")[-1].split("-s")[0]


def load_task(folder: Path) -> dict[str, dict]:
    """Every finished run of one task folder: name -> {"metrics", "predictions", "dir"}."""
    runs = {}
    for run in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (run / "metrics.json").is_file():
            continue
        predictions = run / "predictions.json"
        runs[run.name.split("__")[-1]] = {"metrics": json.loads((run / "metrics.json").read_text()), "dir": run,
                                          "predictions": json.loads(predictions.read_text())
                                          if predictions.is_file() else None}
    return runs


def dense_key(run: dict) -> str | None:
    """Which dense fine-tune a run was pruned from: a digest of that dense model's predictions on the
    evaluation split (``predictions.json``), or None without predictions. Every dense fine-tune shipped
    before 2026-12-03 started from an unseeded cross-attention (``explorer.models.loading``), so one made
    again with the same settings is another model, with other predictions and another key; since then the
    same settings, thread count and CPU give a bit-identical one (and the same key), while another thread
    count differs in the last bits from the first step, which training amplifies."""
    predictions = run.get("predictions")
    if not predictions or "dense" not in predictions:
        return None
    return hashlib.sha1(json.dumps(predictions["dense"]).encode()).hexdigest()[:12]


def split_by_dense(runs: dict[str, dict]) -> tuple[dict[str, dict], dict[str, dict]]:
    """``(main, others)``: the runs pruned from the task's dense fine-tune (the one most runs share; a run
    without predictions counts with them), and the runs pruned from another one, e.g. made on a new
    machine after ``--restore`` (:func:`dense_key`). Only ``main`` runs are compared with each other."""
    keys = Counter(k for k in map(dense_key, runs.values()) if k is not None)
    if len(keys) < 2:
        return runs, {}
    first = keys.most_common(1)[0][0]
    main = {n: r for n, r in runs.items() if dense_key(r) in (first, None)}
    return main, {n: r for n, r in runs.items() if n not in main}


def other_dense_lines(task: str, main: dict[str, dict], others: dict[str, dict], data_dir: str | None) -> list[str]:
    """Lines on the runs pruned from another dense fine-tune of the same recipe: each against its own
    dense model, and how far the two dense models are apart on the same examples (paired bootstrap):
    the spread of the dense recipe itself, which no method difference in the table can be read below."""
    spec = get_task(task)
    reference = next((r for r in main.values() if r["predictions"]), None)
    lines = ["", "Pruned from another dense fine-tune of the same recipe (made again on a new machine: not "
             "bit-identical), so not compared with the runs above:"]
    for name, run in sorted(others.items()):
        m, quality = run["metrics"], run["metrics"]["quality"]
        dense, pruned = (quality[side]["metrics"][spec.main_metric] for side in ("dense", "pruned"))
        iv = (m.get("intervals") or {}).get("vs_dense")
        lines.append(f"- {name}: {spec.main_metric} {pruned:.2f} against its own dense {dense:.2f}, {_ci(iv)}; "
                     f"{_speed(m.get('speedup_end_to_end'), (m.get('retimed') or {}).get('ratios', {}).get('long'))}"
                     f" at 256/64, encoder sparsity {_sparsity(m.get('encoder_sparsity_achieved'))}")
    seen = set()
    for run in others.values():
        if reference is None or not run["predictions"] or dense_key(run) in seen:
            continue
        seen.add(dense_key(run))
        n = len(run["predictions"]["dense"])
        if n != len(reference["predictions"]["dense"]):
            continue
        iv = paired_interval(spec, eval_examples(task, n, data_dir), reference["predictions"]["dense"],
                             run["predictions"]["dense"])
        shown = "a difference" if not iv["low"] <= 0 <= iv["high"] else "no difference shown"
        lines.append(f"- The two dense fine-tunes, same seed and settings, on the same {n} examples: the second minus "
                     f"the first {_ci(iv)} ({spec.main_metric}; {shown}): how far training the dense model again "
                     "moves it.")
    return lines


def matches(folder: Path) -> dict[str, dict]:
    """CoFi matching records (scripts/cofi_match.py) by the NASH run they match."""
    return {Path(r["nash_run"]).name: r for r in (json.loads(p.read_text()) for p in folder.glob("cofi-match-*.json"))}


def cofi_owners(records: dict[str, dict]) -> dict[str, tuple[str, dict, bool]]:
    """CoFi run name -> ``(NASH run name, judgement, matched)``: the search a CoFi run belongs to. A search
    judges the CoFi runs already in its folder before training new ones (scripts/cofi_match.py), so one run
    may be judged by the searches of both budgets; it belongs to the search that matched it, else to the one
    whose NASH speed-up its own came nearest (relative gap, both timed together), so that e.g. a run made
    for 3 of 6 layers (1.4x) is not listed under 1 of 6 (1.8x) for having been judged there last.
    ``records``: :func:`matches`."""
    def gap(attempt: dict) -> float:
        if not attempt.get("speedup") or not attempt.get("nash_speedup"):
            return float("inf")
        return abs(attempt["speedup"] - attempt["nash_speedup"]) / attempt["nash_speedup"]

    owners: dict[str, tuple[str, dict, bool]] = {}
    for nash_name, record in sorted(records.items()):
        for attempt in record.get("tries", []):
            name, matched = Path(attempt["run"]).name, record.get("matched") == attempt["run"]
            held = owners.get(name)
            if held is None or (matched and not held[2]) or (not held[2] and gap(attempt) < gap(held[1])):
                owners[name] = (nash_name, attempt, matched)
    return owners


def match_notes(owners: dict[str, tuple[str, dict, bool]]) -> dict[str, str]:
    """CoFi run name -> e.g. ``"1.41x vs learned-k3-s0.3 1.38x timed together, matched"``, from the paired
    judgement of the search each run belongs to (``owners``: :func:`cofi_owners`); runs without one are left out."""
    return {name: (f"{attempt['speedup']:.2f}x vs {nash_name} {attempt['nash_speedup']:.2f}x timed together"
                   + (", matched" if matched else ""))
            for name, (nash_name, attempt, matched) in owners.items() if "nash_speedup" in attempt}


def budget_of(name: str, run: dict, budgets: dict[str, str]) -> str:
    """The budget a run belongs to, e.g. ``k3-s0.3``: decoder-only runs (encoder whole) that of the
    NASH runs with the same k; CoFi runs that of the NASH run they were matched to (``budgets``: run name
    or ``k<k>`` -> budget)."""
    if _kind(name) == "cofi":
        return budgets.get(name, f"unmatched, {name}")
    if _kind(name) == "dense-trained":  # the control: nothing removed, every method's training
        return "control"
    m = run["metrics"]
    k = len(m["decoder_layers_kept"])
    if _kind(name) == "decoder-only":
        return budgets.get(f"k{k}", f"k{k}-s0")
    return f"k{k}-s{m['settings']['encoder_sparsity']}"


@functools.lru_cache(maxsize=4)
def eval_examples(task: str, n: int, data_dir: str | None) -> list:
    """The first ``n`` examples of the task's evaluation split, read once per table (rescoring and
    every interval score the same examples)."""
    spec = get_task(task)
    return load_split(spec, spec.eval_split, data_dir if task != "rotten_tomatoes" else None, limit=n)


@functools.lru_cache(maxsize=8)
def constant_prediction(task: str, data_dir: str | None) -> str | None:
    """The text a constant predictor writes for every example, the floor a dense model must clear before
    its task says anything about pruning: the training split's most frequent label word (classification;
    a tie goes to the lower label id) or its mean score to one decimal (regression, where a constant
    correlates 0 with the gold scores). None for summarization.

    Raises:
        ValueError: the training split cannot be read (``splits.load_split``).
    """
    spec = get_task(task)
    if spec.kind == "summarization":
        return None
    labels = [e.label for e in load_split(spec, "train", data_dir if task != "rotten_tomatoes" else None)
              if e.label is not None]
    if spec.kind == "regression":
        return f"{sum(labels) / len(labels):.1f}"
    counts = Counter(labels)
    return spec.label_words[max(sorted(counts), key=counts.__getitem__)]


def above_constant(task: str, dense: list[str] | None, data_dir: str | None) -> dict | None:
    """The dense model's main metric minus the constant predictor's (:func:`constant_prediction`) on the
    same evaluation examples (``dense``: its (N,) generated texts), with a 95% paired bootstrap interval:
    ``{"diff", "low", "high", ..., "text", "of", "score"}`` (``text``: the constant, ``of``: what of
    the training set it is, ``score``: its metric), or None for
    summarization or without predictions. A task whose dense model is not shown above the constant
    (interval includes 0) cannot tell one pruning method from another; the GLUE average is then also
    given without it."""
    text = constant_prediction(task, data_dir) if dense else None
    if text is None:
        return None
    spec, examples = get_task(task), eval_examples(task, len(dense), data_dir)
    constant = [text] * len(examples)
    return dict(paired_interval(spec, examples, constant, dense), text=text,
                of="mean score" if spec.kind == "regression" else "majority label",
                score=compute_metrics(spec, constant, examples)[spec.main_metric])


def same_scores(old: dict[str, float], new: dict[str, float]) -> bool:
    """Whether two score dicts agree up to float rounding (a Pearson correlation computed by another
    numpy build differs in its last bit; that is not a new score)."""
    return old.keys() == new.keys() and all(math.isclose(old[k], new[k], rel_tol=1e-9, abs_tol=1e-9) for k in old)


def rescore(task: str, runs: dict[str, dict], data_dir: str | None, write_back: bool = False) -> list[str]:
    """Score every run's stored predictions (dense and pruned) again with the current scorer
    (``scoring.compute_metrics``) and write the result into its metrics; a changed score keeps the
    old one under ``rescored.previous``. A run's numbers then never depend on the scorer of the day it
    ran: STS-B runs made before the regression parser accepted WordPiece's "3. 8" scored Pearson 0.
    ``write_back``: also write a changed run's metrics.json in its own folder (atomically), so that it is
    scored again once, not on every shipping (each would date the change anew).
    Returns the names of the runs whose scores changed."""
    spec, changed = get_task(task), []
    for name, run in runs.items():
        predictions = run["predictions"]
        if not predictions:
            continue
        examples = eval_examples(task, predictions["num_examples"], data_dir)
        quality = run["metrics"]["quality"]
        fresh = {side: compute_metrics(spec, predictions[side], examples) for side in ("dense", "pruned")}
        if any(not same_scores(quality[side]["metrics"], fresh[side]) for side in fresh):
            run["metrics"]["rescored"] = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                                          "previous": {side: quality[side]["metrics"] for side in fresh}}
            for side in fresh:
                quality[side]["metrics"] = fresh[side]
            run["metrics"].setdefault("intervals", {})["vs_dense"] = paired_interval(
                spec, examples, predictions["dense"], predictions["pruned"])
            dense = run["metrics"].get("dense_finetune") or {}
            if dense.get("curve") and not any(v for _, v in dense["curve"]) and fresh["dense"][spec.main_metric]:
                dense["curve_note"] = ("the curve was scored with the parser that failed on WordPiece's \"3. 8\" "
                                       "(every point 0); its checkpoints are gone, so it cannot be scored again")
            if write_back:
                atomic_write_text(run["dir"] / "metrics.json", json.dumps(run["metrics"], indent=1))
            changed.append(name)
    return changed


def add_intervals(task: str, runs: dict[str, dict], budgets: dict[str, str], data_dir: str | None,
                  matched: dict[str, str] | None = None) -> None:
    """``intervals.vs_training_free``: each run against training-free NASH at its budget;
    ``intervals.vs_dense_trained``: against the control (the dense model given the same training as every
    method, ``dense-trained-*``) when the task has one; and for learned NASH with distillation
    ``intervals.vs_cofi_matched``: against the CoFi run matched to its latency (``matched``: budget -> CoFi
    run name) and ``intervals.vs_no_distill``: against learned NASH without distillation at its budget
    (NASH's ablation), on the same evaluation examples (paired bootstrap of the main metric), written into the
    runs' metrics."""
    spec = get_task(task)

    def interval(reference: dict | None, run: dict) -> dict | None:
        if reference is None or not run["predictions"] or not reference["predictions"]:
            return None
        n = run["predictions"]["num_examples"]
        if reference["predictions"]["num_examples"] != n:
            return None
        return paired_interval(spec, eval_examples(task, n, data_dir), reference["predictions"]["pruned"],
                               run["predictions"]["pruned"])

    control = next((name for name in runs if _kind(name) == "dense-trained"), None)
    for name, run in runs.items():
        budget = budget_of(name, run, budgets)
        comparisons = {"vs_training_free": None if name == f"training-free-{budget}" else f"training-free-{budget}",
                       "vs_dense_trained": None if name == control else control}
        if name == f"learned-{budget}":
            comparisons["vs_cofi_matched"] = (matched or {}).get(budget)
            comparisons["vs_no_distill"] = f"learned-nodistill-{budget}"  # the paper's distillation ablation
        for key, reference in comparisons.items():
            if reference and (found := interval(runs.get(reference), run)):
                run["metrics"].setdefault("intervals", {})[key] = dict(found, against=reference)
        if name == f"learned-{budget}":
            (run["metrics"].get("intervals") or {}).pop("vs_cofi_same_speed", None)  # from an older re-timing
            same = [dict(found, against=cofi, cofi_speedup=speed, nash_speedup=run["metrics"]["speedup_end_to_end"])
                    for cofi, speed in same_speed_cofi(name, runs) if (found := interval(runs[cofi], run))]
            if same:
                run["metrics"].setdefault("intervals", {})["vs_cofi_same_speed"] = same
        shares = {"share_of_dense": ("dense", run["predictions"]["dense"] if run["predictions"] else None)}
        if control and name != control and runs[control]["predictions"]:
            shares["share_of_dense_trained"] = (control, runs[control]["predictions"]["pruned"])
        for key, (reference, texts) in shares.items():
            if found := share_interval(task, texts, run, data_dir):
                run["metrics"].setdefault("intervals", {})[key] = dict(found, against=reference)


def share_interval(task: str, reference: list[str] | None, run: dict, data_dir: str | None) -> dict | None:
    """The run's main metric as a % of a reference model's on the same examples (``reference``: its
    generated texts), with a 95% paired bootstrap interval: ``scoring.average_interval`` over this one
    task, where each resample scores both models on the same drawn examples. ``{"share", "low", "high"}``
    in %, or None without predictions of both on the same examples or when the reference scores 0 or less."""
    if not reference or not run["predictions"] or len(reference) != run["predictions"]["num_examples"]:
        return None
    n = run["predictions"]["num_examples"]
    try:
        found = average_interval([(task, eval_examples(task, n, data_dir), reference, run["predictions"]["pruned"])])
    except ValueError:
        return None
    return {"share": found["share"], "low": found["share_low"], "high": found["share_high"]}


def same_speed_cofi(nash: str, runs: dict[str, dict], tolerance: float = 0.05) -> list[tuple[str, float]]:
    """CoFi runs within ``tolerance`` of the NASH run's speed-up at 256 / 64 in the task's re-timing
    (``scripts/nash_retime.py``: every run timed together, each between two dense timings), as
    ``(name, speed-up)``. The CoFi search judges its tries in separate timings; when the re-timing puts
    other CoFi runs as close to NASH, the comparison at equal latency is made with each of them too."""
    stamp = (runs[nash]["metrics"].get("retimed") or {}).get("date")
    if not stamp:
        return []
    target = runs[nash]["metrics"]["speedup_end_to_end"]
    return [(name, run["metrics"]["speedup_end_to_end"]) for name, run in sorted(runs.items())
            if _kind(name) == "cofi" and (run["metrics"].get("retimed") or {}).get("date") == stamp
            and abs(run["metrics"]["speedup_end_to_end"] / target - 1.0) <= tolerance]


def _ci(iv: dict | None) -> str:
    if not iv:
        return "-"
    real = "" if iv["low"] <= 0 <= iv["high"] else " **real**"
    return f"{iv['diff']:+.2f} [{iv['low']:+.2f}, {iv['high']:+.2f}]{real}"


def _share(value: float | None, iv: dict | None) -> str:
    """A % cell: ``99.6 [97.8, 101.5]`` with the interval of :func:`share_interval` when there is one."""
    if iv:
        return f"{iv['share']:.1f} [{iv['low']:.1f}, {iv['high']:.1f}]"
    return "-" if value is None else f"{value:.1f}"


def _speed(value: float | None, ratios: list[float] | None) -> str:
    """A speed-up cell: ``1.73x [1.65, 1.85]`` with the 95% interval of the median over the re-timing's
    rounds (``latency.speedup_interval``) when the run was re-timed, else the run's own ``1.73x``."""
    if not value:
        return "-"
    if not ratios or len(ratios) < 2:
        return f"{value:.2f}x"
    low, high = speedup_interval(ratios)
    return f"{value:.2f}x [{low:.2f}, {high:.2f}]"


def distinct_outputs(predictions: list[str], first: int | None = None) -> int:
    """How many different texts are among the first ``first`` (default ``DISTINCT_OF``) predictions: a
    summarizer that collapsed to one generic sentence writes 1 (the issue's check on 200 test dialogues)."""
    return len(set(predictions[:first or DISTINCT_OF]))


OVERSHOOT = 0.01  # expected sparsity this far above the target at the end is reported (twice the gates' tolerance)


def reached_after_warmup(gates: dict) -> int | None:
    """The gates' ``target_reached_step``, counted only once the target's warm-up (half the gate steps) is
    over, as ``explorer.training.gates`` now records it. Runs recorded before that counted a step-1 "reach"
    when the gates started above a small target (CoFi's do); for them the step is read from the sparsity
    trace (20 points, so it may be late by up to a twentieth of the steps)."""
    first, steps = gates.get("target_reached_step"), gates.get("steps", 0)
    if first is None or first > steps // 2:
        return first
    target = gates.get("target", 0.0)
    return next((step for step, value in gates.get("sparsity_trace") or [] if step > steps // 2
                 and value >= target - 0.005), None)


def chosen_runs(runs: dict[str, dict], budgets: dict[str, str],
                cofi_notes: dict[str, str] | None = None) -> dict[tuple[str, str], str]:
    """``{(method, budget): run name}`` of the runs that enter the GLUE average: every run of a method
    and budget, but of CoFi only the run its search matched to NASH's latency (``cofi_notes`` as in
    :func:`task_table`)."""
    return {(_kind(name), budget_of(name, run, budgets)): name for name, run in runs.items()
            if _kind(name) != "cofi" or (cofi_notes or {}).get(name, "").endswith("matched")}


def average_table(per_task: dict[str, tuple[dict[str, dict], dict]], data_dir: str | None,
                  why_not: str = "") -> list[str]:
    """Markdown rows of the GLUE average (``per_task``: task -> (runs, :func:`chosen_runs`)) for every
    method and budget that has a run on every task: the average of the tasks' main metrics for dense and
    the method, their difference and the method's average % of dense, each with a stratified paired
    bootstrap 95% interval (``scoring.average_interval``: each task's evaluation examples resampled
    within the task). ``why_not``: why GLUE tasks that have runs are left out of this average (the
    title then says "without ...").
    """
    tasks = list(per_task)
    keys = sorted(set.intersection(*(set(chosen) for _, chosen in per_task.values())),
                  key=lambda k: (k[1], ORDER.index(k[0]) if k[0] in ORDER else 9))
    missing = [t for t in GLUE if t not in tasks]
    partial = f" (partial: {len(tasks)} of {len(GLUE)} tasks; not yet {', '.join(missing)})" if missing else ""
    if why_not:
        partial = f" ({why_not})"
    lines = [f"**GLUE average** over {', '.join(tasks)}{partial} (unweighted mean of each task's main metric on its "
             "whole dev split; intervals: stratified paired bootstrap, 95%):", "",
             "| budget | method | dense average | method average | vs dense, 95% CI | average % of dense, 95% CI |",
             "|---|---|---|---|---|---|"]
    for kind, budget in keys:
        parts = []
        for task in tasks:
            runs, chosen = per_task[task]
            predictions = runs[chosen[(kind, budget)]]["predictions"]
            if not predictions:
                break
            parts.append((task, eval_examples(task, predictions["num_examples"], data_dir), predictions["dense"],
                          predictions["pruned"]))
        else:
            avg = average_interval(parts)
            lines.append(f"| {budget} | {LABEL.get(kind, kind)} | {avg['a']:.2f} | {avg['b']:.2f} | {_ci(avg)} | "
                         f"{avg['share']:.1f} [{avg['share_low']:.1f}, {avg['share_high']:.1f}] |")
            continue
        lines.append(f"| {budget} | {LABEL.get(kind, kind)} | - | - | no stored predictions | - |")
    return lines


REQUIRED = ("training-free", "learned", "learned-nodistill", "decoder-only")  # CoFi may find no match


def complete_tasks(chosen: dict[str, dict[tuple[str, str], str]]) -> list[str]:
    """The tasks (``chosen``: task -> :func:`chosen_runs`) that have a run of every method in ``REQUIRED``
    at every budget any of them has, so that a task still in training does not shrink the GLUE average
    to the few methods it has finished."""
    budgets = {b for runs in chosen.values() for k, b in runs if k in REQUIRED}
    return [t for t, runs in chosen.items() if all((k, b) in runs for k in REQUIRED for b in budgets)]


def glue_averages(per_task: dict[str, tuple[dict[str, dict], dict]], floors: dict[str, dict | None],
                  data_dir: str | None) -> list[list[str]]:
    """The GLUE average tables (:func:`average_table`): over every task with runs, as NASH reports it, and,
    when some task's dense model is not shown above a constant predictor (``floors``: task ->
    :func:`above_constant`, its interval includes 0), again without those tasks, since there every
    method's difference is a difference between guesses."""
    tables = [average_table(per_task, data_dir)]
    below = [t for t in per_task if floors.get(t) and floors[t]["low"] <= 0]
    if below and len(below) < len(per_task):
        why = "; ".join(f"{t}'s dense model is not shown above a constant \"{floors[t]['text']}\": {_ci(floors[t])}"
                        for t in below)
        tables.append(average_table({t: v for t, v in per_task.items() if t not in below}, data_dir,
                                    f"without {', '.join(below)}: {why}"))
    return tables


def _sparsity(value: float | None) -> str:
    """A run's achieved encoder sparsity (the fraction of the encoder's head and FFN parameters removed:
    ``metrics.json``'s ``encoder_sparsity_achieved``), which learned gates may leave above the target."""
    return "-" if value is None else f"{value:.2f}"


def completion_count(dropped: dict | None) -> str:
    """What the completion step removed, from a gate summary's ``completion_dropped``: "3 heads and
    120 FFN neurons" (NASH's gates, per family), "40 units" (CoFi's), or "units" for runs made before
    it was recorded (2026-12-02)."""
    if not dropped:
        return "units"
    names = {"heads": "heads", "ffn_neurons": "FFN neurons", "units": "units"}
    parts = [f"{n} {names.get(k, k)}" for k, n in dropped.items() if n]
    return " and ".join(parts) if parts else "units"


def task_table(task: str, runs: dict[str, dict], budgets: dict[str, str],
               cofi_notes: dict[str, str] | None = None, floor: dict | None = None, title: str | None = None) -> list[str]:
    """Markdown rows of one task (``cofi_notes``: CoFi run name -> how its speed-up compared with NASH's
    when timed together, from :func:`match_notes`). With a control run (``dense-trained-*``: the dense model
    trained as long as the methods) the table has a column of each run's interval against it; ``floor``
    (:func:`above_constant`) puts the constant predictor's score and dense's margin over it in the title;
    ``title`` names the table (default the task; a second table of the task: its key, :func:`table_task`)."""
    any_run = next(iter(runs.values()))["metrics"]
    q = any_run["quality"]["dense"]
    main = q["main_metric"]
    dense_value = q["metrics"][main]
    curve = any_run["dense_finetune"].get("curve") or []
    curve_note = any_run["dense_finetune"].get("curve_note")
    generative = get_task(task).kind == "summarization"
    controlled = any(_kind(name) == "dense-trained" for name in runs)
    any_predictions = next((r["predictions"] for r in runs.values() if r["predictions"]), None)
    dense_distinct = (f"; dense writes {distinct_outputs(any_predictions['dense'])} distinct summaries of the first "
                      f"{DISTINCT_OF} test dialogues" if generative and any_predictions else "")
    lines = [f"**{title or task}** ({q['num_examples']} {q['split']} examples; dense {main} {dense_value:.2f}, fine-tuned "
             f"{any_run['dense_finetune'].get('steps')} steps, "
             f"kept step {any_run['dense_finetune'].get('kept_step', '-')}"
             f"{', curve ' + ' '.join(f'{v:.1f}' for _, v in curve) if curve and not curve_note else ''}"
             f"{', no valid curve: ' + curve_note if curve_note else ''}{dense_distinct}"
             + (f"; a constant \"{floor['text']}\" (the training set's {floor['of']})"
                f" scores {floor['score']:.2f}, dense {_ci(floor)} above it" if floor else "") + ")", "",
             f"| budget | method | {main} | % of dense, 95% CI | vs dense, 95% CI | vs training-free, 95% CI "
             + ("| vs dense + same training, 95% CI | % of dense + same training, 95% CI " if controlled else "")
             + "| speed-up 256/64, 95% CI | speed-up at task lengths, 95% CI | encoder sparsity | GMACs | params (M) "
             "| training steps | gates reached target (step) |"
             + (f" distinct of first {DISTINCT_OF} |" if generative else ""),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if controlled else "")
             + ("---|" if generative else "")]
    keyed = sorted(runs.items(), key=lambda kv: (budget_of(kv[0], kv[1], budgets), ORDER.index(_kind(kv[0]))
                                                 if _kind(kv[0]) in ORDER else 99))
    for name, run in keyed:
        m = run["metrics"]
        value = m["quality"]["pruned"]["metrics"][main]
        share = 100 * value / dense_value if dense_value else float("nan")
        budget = budget_of(name, run, budgets)
        gates = m.get("gate_training") or {}
        steps = gates.get("steps", 0) + (m.get("recovery_finetune") or {}).get("steps", 0)
        if gates:
            first = reached_after_warmup(gates)
            if gates.get("target_enforced"):  # the completion step dropped units to meet the target
                expected, target = gates.get("expected_sparsity", float("nan")), gates.get("target", 0)
                if expected >= target:  # met in expectation; the 0/1 gates of heads or of neurons fell short
                    reached = (f"no: expected sparsity {expected:.4f} of {target:.3f} at the end, but the "
                               "deterministic gates of heads or of FFN neurons removed less")
                else:
                    reached = (f"no: {expected:.4f} of {target:.3f} at the end"
                               + (f" (reached at step {first}, then fell back)" if first else ""))
                reached += "; completed by dropping " + completion_count(gates.get("completion_dropped"))
            else:
                reached = "yes" + (f" (step {first})" if first else "")
                expected, target = gates.get("expected_sparsity"), gates.get("target", 0)
                if expected is not None and expected > target + OVERSHOOT:  # the Lagrangian had not pulled it back
                    reached += f"; ended above it, at {expected:.3f}"
        else:
            reached = "-"
        label = LABEL.get(_kind(name), name)
        if _kind(name) == "cofi":
            label += f", sparsity {m['settings']['encoder_sparsity']}"
            if (cofi_notes or {}).get(name):
                label += f" ({cofi_notes[name]})"
        ratios = (m.get("retimed") or {}).get("ratios") or {}
        task_speed = _speed(m.get("speedup_task_lengths"), ratios.get("task"))
        intervals = m.get("intervals") or {}
        lines.append(f"| {budget} | {label} | {value:.2f} | {_share(share, intervals.get('share_of_dense'))}"
                     f" | {_ci(intervals.get('vs_dense'))} | {_ci(intervals.get('vs_training_free'))}"
                     + (f" | {_ci(intervals.get('vs_dense_trained'))}"
                        f" | {_share(None, intervals.get('share_of_dense_trained'))}" if controlled else "")
                     + f" | {_speed(m['speedup_end_to_end'], ratios.get('long'))}"
                     f" | {task_speed} | {_sparsity(m.get('encoder_sparsity_achieved'))}"
                     f" | {m['measurements']['pruned']['macs']['gmacs']:.2f} | "
                     f"{m['measurements']['pruned']['params']['params_m']:.1f} | {steps} | {reached} |"
                     + (f" {distinct_outputs(run['predictions']['pruned']) if run['predictions'] else '-'} |"
                        if generative else ""))
    return lines


def curve_lines(task: str, dense: dict) -> list[str]:
    """The dense fine-tune's learning curve as a markdown table (step, metric on the held-out examples,
    distinct outputs)."""
    curve, details = dense.get("curve") or [], {d["step"]: d for d in dense.get("curve_details") or []}
    if not curve or dense.get("curve_note"):
        return []
    lines = [f"Dense learning curve of {task} (held-out examples; kept step {dense.get('kept_step')}"
             f"{', stopped early' if dense.get('stopped_early') else ''}):", "",
             "| step | " + " | ".join(str(int(step)) for step, _ in curve) + " |",
             "|---|" + "---|" * len(curve),
             "| metric | " + " | ".join(f"{v:.2f}" for _, v in curve) + " |"]
    if details:
        lines.append("| distinct outputs | " + " | ".join(str(details.get(step, {}).get("distinct_outputs", "-"))
                                                        for step, _ in curve) + " |")
    return lines


def plot_curve(task: str, dense: dict, path: Path) -> None:
    """The dense learning curve as a PNG (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = dense.get("curve") or []
    if not curve or dense.get("curve_note"):
        return
    main = get_task(task).main_metric
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([p[0] for p in curve], [p[1] for p in curve], marker="o")
    ax.axvline(dense.get("kept_step", curve[-1][0]), linestyle=":", color="grey", label="kept")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"{main} on held-out examples")
    ax.set_title(f"MiniLM2MiniLM dense fine-tune, {task}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _contents(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` but its provenance (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "provenance.json"}


REDO = "redo"  # assets/redo/: the staged results of a table being made again (--ship --redo)
RESTORED = "restored.json"  # marker of a run folder brought back from assets/ (results only, no weights)


def restore(root: Path, assets: Path = ROOT / "assets") -> list[str]:
    """Copy the shipped results (``assets/reference_runs_nash_<task>``) into the run tree ``root``
    (``out/nash``) wherever a run has no metrics.json there, and the CoFi matching records wherever
    they are missing, so that a new machine goes on from what was shipped instead of training every
    run again. Each restored run folder gets a ``restored.json`` marker (its weights are absent).
    Folders that already hold a run are never touched. Returns the restored paths."""
    restored = []
    for shipped in sorted(assets.glob("reference_runs_nash_*")):
        task = shipped.name[len("reference_runs_nash_"):]
        for run in sorted(p for p in shipped.iterdir() if p.is_dir() and (p / "metrics.json").is_file()):
            dest = root / task / run.name.split("__")[-1]
            if (dest / "metrics.json").is_file():
                continue
            dest.mkdir(parents=True, exist_ok=True)
            for name in ("plan.json", "predictions.json"):
                if (run / name).is_file():
                    shutil.copy(run / name, dest / name)
            (dest / RESTORED).write_text(json.dumps({"from": str(run.relative_to(ROOT)), "date": datetime.now(
                timezone.utc).isoformat(timespec="seconds"), "weights": None}, indent=1))
            shutil.copy(run / "metrics.json", dest / "metrics.json")  # last: a run counts as finished only now
            restored.append(str(dest))
        for record in sorted(shipped.glob("cofi-match-*.json")):
            if not (root / task / record.name).is_file():
                (root / task).mkdir(parents=True, exist_ok=True)
                shutil.copy(record, root / task / record.name)
                restored.append(str(root / task / record.name))
    return restored


def restored_dense_status(folder: Path) -> str:
    """Whether a task folder's restored runs (``--restore``) can be joined by new runs on this machine:
    "none" (no restored run), "here" (the dense fine-tune they were pruned from is in this machine's cache:
    its record has the same learning curve and loss), "absent" (not made here yet: one made again is
    bit-identical only when seeded, since 2026-12-03, at the same thread count on the same CPU), or
    "different" (made again here, and it differs)."""
    restored = [json.loads((p.parent / "metrics.json").read_text()).get("dense_finetune") or {}
                for p in sorted(folder.glob(f"*/{RESTORED}"))]
    restored = [d for d in restored if d.get("path")]
    if not restored:
        return "none"
    record = Path(restored[0]["path"]) / "finetune.json"
    if not record.is_file():
        return "absent"
    here = json.loads(record.read_text())
    same = all(here.get(k) == restored[0].get(k) for k in ("curve", "train_loss", "kept_step", "steps"))
    return "here" if same else "different"


def shipped_folder(task: str, redo: bool = False) -> Path:
    """Where ``task``'s runs ship: ``assets/reference_runs_nash_<task>`` (the tables and the Pareto tab read
    it), or with ``redo`` the staging folder of a table being made again, ``assets/redo/...`` (nothing reads
    it but ``--restore --redo``)."""
    return ROOT / "assets" / (REDO if redo else "") / f"reference_runs_nash_{task}"


def unshipped_losses(task: str, folder: Path, runs: dict[str, dict], redo: bool = False) -> list[str]:
    """The runs and matching records already shipped (``redo``: staged) for ``task`` that ``folder`` lacks
    (shipping it would delete them)."""
    dest = shipped_folder(task, redo)
    if not dest.is_dir():
        return []
    lost = [p.name.split("__")[-1] for p in dest.iterdir() if p.is_dir() and p.name.split("__")[-1] not in runs]
    lost += [p.name for p in dest.glob("cofi-match-*.json") if not (folder / p.name).is_file()]
    return sorted(lost)


def replacement_problem(task: str, runs: dict[str, dict]) -> str | None:
    """Why ``runs`` (a task's run folder, :func:`load_task`) may not replace the task's shipped table, or None
    when it may: it must be one whole table made again from one dense fine-tune that is not the shipped
    runs' (:func:`dense_key`), holding every non-CoFi run the shipped table holds."""
    dest = shipped_folder(task)
    shipped = load_task(dest) if dest.is_dir() else {}
    keys = {dense_key(r) for r in runs.values()}
    if len(keys) != 1 or None in keys:
        return f"its runs come from {len(keys - {None})} dense fine-tune(s){' (some without predictions)' * (None in keys)}, not one"
    if keys & {dense_key(r) for r in shipped.values()}:
        return "its dense fine-tune is the shipped runs' own: ship without --replace (after --restore)"
    if missing := sorted(n for n in shipped if _kind(n) != "cofi" and n not in runs):
        return f"it lacks {', '.join(missing)}, which the shipped table holds: finish the table first"
    return None


def ship(task: str, folder: Path, runs: dict[str, dict], floor: dict | None = None, replace: bool = False,
         redo: bool = False) -> Path:
    """Copy the runs of ``task`` (a table key, :func:`table_task`; results, no weights) to
    ``assets/reference_runs_nash_<task>``, with the
    task's constant-predictor floor (``floor``: :func:`above_constant`) as ``floor.json`` for the Pareto
    tab. When the shipped folder already holds exactly these files, it is left as it is, with its
    provenance (the commit and date of the shipping that brought them).

    ``replace``: ``folder`` is the task's whole table made again from a new dense fine-tune, and the shipped
    runs it lacks (CoFi runs and records of other sparsities) go (:func:`replacement_problem`), and so does
    the task's staged folder (``assets/redo/``), which must hold nothing ``folder`` lacks.

    ``redo``: stage the finished runs of a table being made again in ``assets/redo/`` instead (all from one
    dense fine-tune), so that a lost machine loses weights, not results (``--restore --redo``).

    Raises:
        ValueError: ``folder`` lacks a run or matching record that is already shipped, or staged
            (``--restore`` or ``--restore --redo`` first); with ``replace``, it is not a whole table from
            one new dense fine-tune; with ``redo``, its runs come from more than one dense fine-tune.
    """
    staged = shipped_folder(task, redo=True)
    if redo:
        if len(keys := {dense_key(r) for r in runs.values()} - {None}) > 1:
            raise ValueError(f"{folder} holds runs from {len(keys)} dense fine-tunes: the dense model made again on "
                             f"this machine is not the staged runs' own, so its runs cannot join them; nothing was "
                             f"staged for {task}.")
        if lost := unshipped_losses(task, folder, runs, redo=True):
            raise ValueError(f"{folder} lacks {len(lost)} staged result(s) ({', '.join(lost[:4])}): run "
                             f"'scripts/nash_tables.py {folder.parent} --restore --redo' first; nothing was staged.")
    elif replace:
        if problem := replacement_problem(task, runs):
            raise ValueError(f"{folder} cannot replace the shipped {task} table: {problem}; nothing was shipped.")
        if staged.is_dir() and (lost := unshipped_losses(task, folder, runs, redo=True)):
            raise ValueError(f"{folder} lacks {len(lost)} result(s) staged in {staged} ({', '.join(lost[:4])}): "
                             f"'--restore --redo' first; nothing was shipped.")
    elif lost := unshipped_losses(task, folder, runs):
        raise ValueError(f"{folder} lacks {len(lost)} shipped result(s) ({', '.join(lost[:4])}"
                         f"{', ...' if len(lost) > 4 else ''}): shipping it would delete them from assets/. Run "
                         f"'scripts/nash_tables.py {folder.parent} --restore' first; nothing was shipped for {task}.")
    dest = shipped_folder(task, redo)
    stage = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for name, run in runs.items():
        target = stage / f"minilm2minilm__{table_task(task)}__{name}"
        target.mkdir()
        shipped = dest / target.name / "metrics.json"
        if shipped.is_file() and json.loads(shipped.read_text()) == json.loads(json.dumps(run["metrics"])):
            shutil.copy(shipped, target / "metrics.json")  # the same results in another key order: no churn
        else:
            (target / "metrics.json").write_text(json.dumps(run["metrics"], indent=1))
        for extra in ("plan.json", "predictions.json"):
            if (run["dir"] / extra).is_file():
                shutil.copy(run["dir"] / extra, target / extra)
    for record in folder.glob("cofi-match-*.json"):
        shutil.copy(record, stage / record.name)
    if floor:
        (stage / "floor.json").write_text(json.dumps(
            dict(floor, task=table_task(task), dense=floor["score"] + floor["diff"]), indent=1))
    plot_curve(table_task(task), next(iter(runs.values()))["metrics"].get("dense_finetune") or {},
               stage / "dense_learning_curve.png")
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    any_run = next(iter(runs.values()))["metrics"]
    (stage / "provenance.json").write_text(json.dumps({
        "command": f"TASKS={table_task(task)} bash scripts/nash_tables.sh; python scripts/nash_tables.py out/nash --ship"
                   + (" --redo" if redo else " --replace" if replace else ""),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "commit": commit or "unknown",
        "machine": any_run.get("device", ""), "dense_finetune": any_run.get("dense_finetune"),
        "note": "measured by this project on CPU; each run's metrics.json records its settings and wall times"},
        indent=1))
    if dest.exists() and _contents(dest) == _contents(stage):  # nothing new: keep the provenance of what it is
        shutil.rmtree(stage)
        return dest
    old = dest.with_name(f".{dest.name}.old")
    if dest.exists():
        dest.rename(old)
    stage.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    if replace:
        shutil.rmtree(staged, ignore_errors=True)  # the whole table is shipped: nothing of it is staged any more
    return dest


MARK = re.compile(r"<!-- nash_tables: ([\w-]+) -->\n(.*?)<!-- /nash_tables -->", re.S)


def cost_rows(task: str, runs: dict[str, dict]) -> list[str]:
    """One markdown table row per dense fine-tune of a task's runs (``split_by_dense``; usually one): the
    wall minutes each stage recorded (metrics.json ``stage_wall_s``, ``dense_finetune.wall_s``), where the
    README's per-task cost estimates come from. A run's own minutes exclude its "dense" stage (loading, or
    fine-tuning, the dense model it shares with the task's other runs, counted once). A run resumed after an
    interruption records the stages of its last attempt only, so its minutes are a lower bound."""
    main, others = split_by_dense(runs)
    groups: dict[str | None, dict[str, dict]] = {"main": main}
    for name, run in others.items():
        groups.setdefault(dense_key(run), {})[name] = run
    rows = []
    for group in groups.values():
        own = {n: sum(v for k, v in r["metrics"]["stage_wall_s"].items() if k != "dense") / 60
               for n, r in group.items() if r["metrics"].get("stage_wall_s")}
        dense_min = max(((r["metrics"].get("dense_finetune") or {}).get("wall_s") or 0) / 60 for r in group.values())
        devices = sorted({str(r["metrics"].get("device")) for r in group.values()})
        cofi = sorted(m for n, m in own.items() if _kind(n) == "cofi")
        rest = sorted(m for n, m in own.items() if _kind(n) != "cofi")
        resumed = sum(bool(r["metrics"].get("resumed")) for r in group.values())
        rows.append(f"| {task} | {dense_min:.0f} | {_spread(rest)} | {_spread(cofi)} | "
                    f"{(dense_min + sum(own.values())) / 60:.1f} | {resumed} | {', '.join(devices)} |")
    return rows


def _spread(minutes: list[float]) -> str:
    """``"count: median (first-last)"`` of sorted minutes, or ``"0"``."""
    return f"{len(minutes)}: {statistics.median(minutes):.0f} ({minutes[0]:.0f}-{minutes[-1]:.0f})" if minutes else "0"


COST_HEADER = ["| task | dense fine-tune (min) | runs: median min (range) | CoFi runs: median min (range) | "
               "total (h) | resumed runs | device |", "|---|---|---|---|---|---|---|"]


def fill_readme(text: str, blocks: dict[str, str]) -> tuple[str, list[str]]:
    """``text`` with the content between each ``<!-- nash_tables: KEY -->`` line and the next
    ``<!-- /nash_tables -->`` replaced by ``blocks[KEY]`` (a task's title, table and differences, or
    ``glue-average``), so that the README's tables are this script's output, never typed. A marker
    whose key has no block keeps its content. Returns the new text and the keys filled.

    Raises:
        ValueError: the markers do not pair up (an opening marker without its closing one or the reverse).
    """
    opening, closing = len(re.findall(r"<!-- nash_tables: [\w-]+ -->", text)), text.count("<!-- /nash_tables -->")
    if opening != closing or len(MARK.findall(text)) != opening:
        raise ValueError(f"{opening} opening and {closing} closing nash_tables markers that do not pair up: each "
                         "<!-- nash_tables: KEY --> line needs a <!-- /nash_tables --> line after it; fix the file.")
    filled = []

    def put(match):
        key = match.group(1)
        if key not in blocks:
            return match.group(0)
        filled.append(key)
        return f"<!-- nash_tables: {key} -->\n{blocks[key]}\n<!-- /nash_tables -->"

    return MARK.sub(put, text), filled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="out/nash (one folder per task), or assets with --shipped")
    parser.add_argument("--shipped", action="store_true", help="read assets/reference_runs_nash_<task>")
    parser.add_argument("--ship", action="store_true", help="write intervals and copy the runs to assets/")
    parser.add_argument("--replace", action="store_true", help="with --ship: the task's whole table, made again from "
                        "one new dense fine-tune, replaces the shipped one (runs it lacks, e.g. other CoFi sparsities, go)")
    parser.add_argument("--redo", action="store_true", help="with --ship: stage the finished runs of a table being "
                        "made again in assets/redo/ (kept in the repository, read by nothing else); with --restore: "
                        "bring the staged runs back instead of the shipped ones")
    parser.add_argument("--restore", action="store_true", help="copy the shipped results into ROOT (a new "
                        "machine's out/nash) where a run is missing, then stop")
    parser.add_argument("--dense-status", action="store_true", help="print whether ROOT (one task folder)'s "
                        "restored runs' dense fine-tune is on this machine: none, here, absent or different")
    parser.add_argument("--task", action="append", help="only this task (repeatable; default every task folder): "
                        "shipping one task's finished run need not score the others again")
    parser.add_argument("--costs", action="store_true", help="print the wall minutes each task's runs recorded "
                        "(per dense fine-tune), then stop")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--readme", type=Path, help="also write each table between its markers in this file "
                        "(<!-- nash_tables: TASK --> ... <!-- /nash_tables -->; TASK or glue-average)")
    args = parser.parse_args()
    root = Path(args.root)
    if args.dense_status:
        print(restored_dense_status(root))
        return
    if args.restore:
        restored = restore(root, ROOT / "assets" / REDO if args.redo else ROOT / "assets")
        print(f"restored {len(restored)} {'staged' if args.redo else 'shipped'} result(s) into {root}", file=sys.stderr)
        return
    if args.shipped:
        folders = {p.name[len("reference_runs_nash_"):]: p for p in sorted(root.glob("reference_runs_nash_*"))}
    else:
        folders = {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    if args.task:
        unknown = sorted(set(args.task) - set(folders))
        if unknown:
            raise SystemExit(f"No run folder for {', '.join(unknown)} under {root}; there are: {', '.join(folders)}.")
        folders = {t: f for t, f in folders.items() if t in args.task}
    if args.costs:
        print("\n".join(COST_HEADER + [row for task, folder in folders.items()
                                       for row in cost_rows(task, load_task(folder))]))
        return
    chosen_by_task, floors, blocks, failed = {}, {}, {}, []
    for key, folder in folders.items():
        task = table_task(key)
        every_run = load_task(folder)
        if not every_run:
            continue
        runs, others = split_by_dense(every_run)
        budgets = {}
        records = matches(folder)
        owners = cofi_owners(records)
        notes = match_notes(owners)
        for name, (nash_name, _, _) in owners.items():  # a CoFi run tried for several budgets
            budgets[name] = nash_name.split("-", 1)[1] if nash_name.startswith("learned-") else nash_name
        for n, r in runs.items():  # decoder-only runs belong to the NASH budget with their k
            if _kind(n) in ("training-free", "learned"):
                k = len(r["metrics"]["decoder_layers_kept"])
                budgets[f"k{k}"] = f"k{k}-s{r['metrics']['settings']['encoder_sparsity']}"
        matched = {budgets[Path(r["matched"]).name]: Path(r["matched"]).name for r in records.values()
                   if r.get("matched") and Path(r["matched"]).name in runs}
        rescored = rescore(task, every_run, args.data_dir, write_back=args.ship and not args.shipped)
        if rescored:
            print(f"{task}: scored again from the stored predictions: {', '.join(rescored)}", file=sys.stderr)
        add_intervals(task, runs, budgets, args.data_dir, matched)
        any_predictions = next((r["predictions"] for r in runs.values() if r["predictions"]), None)
        floors[key] = above_constant(task, any_predictions and any_predictions["dense"], args.data_dir)
        lines = task_table(task, runs, budgets, notes, floors[key], title=key)
        minus = []  # the differences NASH's claims are read from, one line each
        for name, run in sorted(runs.items()):
            if iv := (run["metrics"].get("intervals") or {}).get("vs_cofi_matched"):
                minus.append(f"- Learned NASH + distillation ({name}) minus CoFi at its latency ({iv['against']}): "
                             f"{_ci(iv)}")
        for name, run in sorted(runs.items()):
            for iv in (run["metrics"].get("intervals") or {}).get("vs_cofi_same_speed", []):
                minus.append(f"- Learned NASH + distillation ({name}, {iv['nash_speedup']:.2f}x re-timed) minus "
                             f"{iv['against']} ({iv['cofi_speedup']:.2f}x in the same re-timing, within 5%): {_ci(iv)}")
        for name, run in sorted(runs.items()):
            if iv := (run["metrics"].get("intervals") or {}).get("vs_no_distill"):
                minus.append(f"- Learned NASH with distillation ({name}) minus without ({iv['against']}): {_ci(iv)}")
        if others:
            minus += other_dense_lines(task, runs, others, args.data_dir)
        blocks[key] = "\n".join(lines + ([""] + minus if minus else []))
        print(blocks[key] + "\n")
        curve = curve_lines(task, next(iter(runs.values()))["metrics"].get("dense_finetune") or {})
        if curve:
            print("\n".join(curve) + "\n")
        chosen_by_task[key] = (runs, chosen_runs(runs, budgets, notes))
        if args.ship and not args.shipped:
            try:
                print(f"shipped to {ship(key, folder, every_run, floors[key], replace=args.replace, redo=args.redo)}\n",
                      file=sys.stderr)
            except ValueError as err:
                print(f"not shipped: {err}", file=sys.stderr)
                failed.append(key)
    glue = complete_tasks({t: chosen_by_task[t][1] for t in GLUE if t in chosen_by_task})
    if left := [t for t in GLUE if t in chosen_by_task and t not in glue]:
        print(f"GLUE average: {', '.join(left)} left out until every method has run at every budget", file=sys.stderr)
    if glue:
        blocks["glue-average"] = "\n\n".join("\n".join(table) for table in glue_averages(
            {t: chosen_by_task[t] for t in glue}, floors, args.data_dir))
        print(blocks["glue-average"])
    if args.readme:
        text, filled = fill_readme(args.readme.read_text(), blocks)
        atomic_write_text(args.readme, text)
        print(f"{args.readme}: filled {', '.join(filled) or 'nothing'}; no marker for "
              f"{', '.join(k for k in blocks if k not in filled) or 'none'}", file=sys.stderr)
    if failed:
        raise SystemExit(f"not shipped: {', '.join(failed)}")

if __name__ == "__main__":
    main()
