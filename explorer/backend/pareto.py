"""What the Pareto tab calls: the front of a task from the user's runs, the reference runs and the
papers' reported points; a run's plan.
"""

from __future__ import annotations

import threading

import pandas as pd

from explorer.backend.common import find_run, list_runs_for_ui
from explorer.data.tasks import get_task
from explorer.runs.points import COST_AXES, SCALES, runs_table
from explorer.figures.pareto import make_pareto_figure
from explorer.paths import cache_root
from explorer.runs.references import reference_floor, reference_table, reported_points
from explorer.runs.store import Run, list_runs, runs_root, runs_signature
from pruning.atomic import atomic_write_text
from pruning.plan import PruningPlan

__all__ = ["COST_AXES", "LM_METRICS", "LM_TASKS", "display_table", "export_csv", "pareto_view", "plan_runs",
           "plan_view"]

TABLE_COLUMNS = ["run_id", "kind", "method", "model", "metric", "quality", "latency_ms", "decode_ms_per_token",
                 "gmacs", "params_m", "encoder_sparsity", "decoder_layers", "device", "eval_examples", "weights"]
# Decimals shown in the tab's table (the CSV download keeps every digit): ms to 0.1, quality to 0.01.
ROUNDING = {"quality": 2, "latency_ms": 1, "decode_ms_per_token": 1, "gmacs": 3, "params_m": 1, "encoder_sparsity": 3}


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The columns the Pareto tab shows, rounded (``ROUNDING``); an empty table stays empty."""
    if table.empty:
        return table
    shown = table[[c for c in TABLE_COLUMNS if c in table.columns]].copy()
    for column, digits in ROUNDING.items():
        if column in shown:
            shown[column] = pd.to_numeric(shown[column], errors="coerce").round(digits)
    return shown


def plan_runs(task: str, root: str | None = None, runs: list[Run] | None = None) -> list[str]:
    """Run ids on ``task`` whose plan can be drawn: the user's (newest first), then reference runs.
    ``runs``: the user's runs as :func:`list_runs_for_ui` gives them, when the caller already has them
    (None: read from ``root``)."""
    own = [r.run_id for r in (list_runs_for_ui(root) if runs is None else runs) if r.metrics.get("task") == task]
    return own + reference_table(task)["run_id"].tolist()


def plan_view(run_id: str, root: str | None = None):
    """(figure, caption) of what run ``run_id`` removed: encoder heads x layers (with gate values
    for learned runs), FFN neurons kept per layer, decoder layers kept.

    Raises:
        ValueError: For an unknown run or a broken ``plan.json``.
    """
    from explorer.figures.plan import plan_figure

    run = find_run(run_id, root)
    try:
        plan = PruningPlan.load(run.path)
    except (OSError, ValueError) as err:
        raise ValueError(f"{run_id}: plan.json cannot be read ({err}).") from None
    gates = (run.metrics.get("gate_training") or {}).get("gates")
    caption = (f"{_explain(run)}. Method: {run.metrics.get('method', 'nash-training-free')}"
               + ("; cells show each kept head's learned gate value, folded into its weights." if gates else "."))
    return plan_figure(plan, run.metrics, title=run_id), caption


def pareto_view(task: str, axis: str = "latency_ms", color: str = "kind", root: str | None = None,
                scale: str = "absolute", references: bool = True, reported: bool = True, metric: str | None = None):
    """(figure or None, table, note) for ``task``: the user's runs, plus the shipped reference
    runs and (relative scale only) the papers' reported points when asked. ``task`` is a registered task or a
    decoder-only LM's corpus (:data:`LM_TASKS`); ``metric`` another quality metric than each run's main one
    (an LM's ``zero_shot_accuracy`` or ``rougeL`` instead of perplexity; None or ``main``: the main one).

    Raises:
        ValueError: For an unknown task, axis or scale.

    The answer is remembered for the same arguments while the runs folder is unchanged
    (``runs.store.runs_signature``); the shipped reference runs only change with the code.
    The figure and table returned are shared between calls and must not be modified.
    """
    metric = None if metric in (None, "", "main") else metric
    key = (task, axis, color, str(runs_root(root).resolve()), scale, references, reported, metric,
           runs_signature(root))
    if key in _VIEWS:  # the same settings on an unchanged runs folder: the same answer, at no cost
        return _VIEWS[key]
    with _DRAWING:  # sessions asking at once wait for one drawing instead of each drawing it (one interpreter)
        if key not in _VIEWS:
            view = _pareto_view(task, axis, color, root, scale, references, reported, metric)
            if len(_VIEWS) >= 64:
                _VIEWS.pop(next(iter(_VIEWS)))
            _VIEWS[key] = view
        return _VIEWS[key]


_VIEWS: dict[tuple, tuple] = {}  # pareto_view's last answers (the tab is redrawn on nearly every click)
_DRAWING = threading.Lock()


LM_TASKS = ("lm-samsum",)  # decoder-only LM runs (prune-lm): perplexity on SAMSum and task scores
LM_METRICS = ("perplexity", "zero_shot_accuracy", "rougeL")


def _pareto_view(task, axis, color, root, scale, references, reported, metric):
    if task not in LM_TASKS:
        get_task(task)
    if axis not in COST_AXES:
        raise ValueError(f"Unknown axis {axis!r}; choose one of {', '.join(COST_AXES)}.")
    if scale not in SCALES:
        raise ValueError(f"Unknown scale {scale!r}; choose absolute or relative.")
    own = runs_table([(r.run_id, r.metrics) for r in list_runs(root)], metric=metric)
    frames = [own[own["task"] == task]] + ([reference_table(task, metric)] if references else [])
    frames = [f for f in frames if not f.empty]
    table = pd.concat(frames, ignore_index=True) if frames else own.iloc[0:0]
    notes = []
    papers = reported_points() if reported and task not in LM_TASKS else None  # the papers report no LM points
    if papers is not None and scale == "absolute":
        notes.append("The papers' reported points are speed-ups and % of dense quality: choose the relative "
                     "scale to see them.")
    elif papers is not None and papers[f"{axis}_rel"].isna().all():
        shown = [COST_AXES[a] for a in COST_AXES if papers[f"{a}_rel"].notna().any()]
        notes.append(f"The papers report no {COST_AXES[axis]}; their points appear on: {'; '.join(shown)}.")
    if table.empty:
        return None, table, " ".join(notes + [f"No runs on {task}" + (f" with {metric}" if metric else "")
                                              + " yet: prune a model in the Prune tab."])
    dense_scores = sorted(table.loc[table["kind"].str.startswith("dense"), "quality"].round(2).unique())
    if scale == "absolute" and len(dense_scores) > 1:
        notes.append(f"These runs were measured against {len(dense_scores)} different dense models (scoring "
                     f"{', '.join(f'{v:g}' for v in dense_scores)}; e.g. an earlier, shorter fine-tune): read each "
                     "run against its own dense point (the hover names its source), or choose the relative scale, "
                     "where each run is a % of its own dense model.")
    if (table["weights"] != "pretrained").any():
        notes.append("Runs with random weights have meaningless quality; only their cost is real.")
    floor = reference_floor(task) if references and task not in LM_TASKS else None
    if floor and scale == "absolute" and (metric or floor["metric"]) == floor["metric"]:
        notes.append(f"Grey line or note: a constant predictor that writes \"{floor['text']}\" (the training "
                     f"set's {floor['of']}) for every one of the reference runs' {floor['n']} evaluation examples "
                     f"scores {floor['score']:.2f}; their dense model is {floor['diff']:+.2f} [{floor['low']:+.2f}, "
                     f"{floor['high']:+.2f}] above it. Differences between methods mean most where the dense model is "
                     "far above this line.")
    return make_pareto_figure(table, axis, papers, color=color, scale=scale, floor=floor), table, " ".join(notes)


def _explain(run: Run) -> str:
    m = run.metrics
    if m.get("kind") == "lm":
        return f"{m['model']}: {m['plan_summary']}"
    return (f"{m['model']} on {m['task']}: {m['plan_summary']} "
            f"({m['encoder_sparsity_achieved'] * 100:.0f}% of encoder head and FFN parameters removed)")


def export_csv(table: pd.DataFrame, name: str = "runs") -> str:
    """Write a runs table as CSV into ``<cache>/downloads/``; returns the path."""
    from explorer.paths import slug

    path = cache_root() / "downloads" / f"{slug(name)}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = table.to_csv(index=False)
    try:
        if path.read_text(encoding="utf-8") == text:  # already there (the tab asks again on every redraw)
            return str(path)
    except OSError:
        pass
    atomic_write_text(path, text)
    return str(path)
