"""The Pareto table: one row per model of a run (its dense model and its pruned model, or a
reference run's), with quality, every cost axis, the plan and the interval of its difference from
dense. Pure functions: runs -> ``pandas.DataFrame``; ``explorer.figures.pareto`` draws it.

The direction of quality comes from the metric's ``higher_is_better`` (recorded in every run),
never from a hard-coded list; every cost axis (latency, MACs, parameters) is lower-is-better.

Two scales:
    absolute   quality in the metric's unit against ms, GMACs or millions of parameters;
    relative   quality as % of the run's own dense model against cost as a fraction of
               the dense model's, so runs from different machines and the papers'
               reported trade-offs (which are speed-ups and % of quality) share one plot.
"""
from __future__ import annotations

import math

import pandas as pd

COST_AXES = {
    "latency_ms": "end-to-end latency (ms)",
    "task_latency_ms": "end-to-end latency at the task's median lengths (ms)",
    "decode_ms_per_token": "decoder ms per generated token",
    "gmacs": "GMACs",
    "params_m": "parameters (M)",
}
SCALES = ("absolute", "relative")
COLUMNS = ["run_id", "kind", "method", "model", "task", "metric", "quality", "higher_is_better", "latency_ms",
           "task_latency_ms", "decode_ms_per_token", "gmacs", "params_m", "encoder_sparsity", "decoder_layers", "plan",
           "device", "eval_examples", "weights", "source", "interval", "precision", "dense_quality",
           *(f"dense_{a}" for a in COST_AXES)]
REPORTED_COLUMNS = ["method", "model", "task", "claim", "source", "quality_rel", *(f"{a}_rel" for a in COST_AXES)]


def _point(run_id: str, metrics: dict, which: str, reference: str | None, metric: str | None = None) -> dict:
    quality = metrics["quality"][which]
    measured = metrics["measurements"][which]
    main = metric or quality["main_metric"]
    dense = which == "dense"
    kind = ("dense" if dense else "measured") if reference is None else ("dense (reference)" if dense else "reference")

    def costs(side: dict) -> dict:
        return {"latency_ms": side["latency"]["latency_ms"],
                "task_latency_ms": (side.get("latency_task") or {}).get("latency_ms", float("nan")),
                "decode_ms_per_token": side["latency"]["decode_ms_per_token"],
                "gmacs": (side.get("macs") or {}).get("gmacs", float("nan")), "params_m": side["params"]["params_m"]}

    dense_side = metrics["measurements"]["dense"]
    lm = metrics.get("kind") == "lm"  # a decoder-only LM run (prune-lm): perplexity and task differences
    if lm:
        found = (metrics["difference_vs_dense"] if main == "perplexity"
                 else metrics.get("task_differences", {}).get(main))
        intervals = {"vs_dense": {**found, "metric": main}} if found else {}
    else:
        intervals = metrics.get("intervals") or {}
    interval = "" if dense else "<br>".join([
        f"{label}: {iv['diff']:+.2f} [{iv['low']:+.2f}, {iv['high']:+.2f}] {iv.get('metric', main)}"
        f" ({'real' if iv['low'] > 0 or iv['high'] < 0 else 'within noise'}, 95% paired bootstrap)"
        for key, label in (("vs_dense", "vs dense"), ("vs_dense_trained", "vs dense + the same training"),
                           ("vs_training_free", "vs training-free NASH"),
                           ("vs_cofi_matched", "vs CoFi at the same latency"))
        if (iv := intervals.get(key))] + [
        f"{label}: {iv['share']:.1f}% [{iv['low']:.1f}, {iv['high']:.1f}]"
        for key, label in (("share_of_dense", "% of dense"),
                           ("share_of_dense_trained", "% of dense + the same training"))
        if (iv := intervals.get(key))]) or "no interval recorded"
    method = "dense" if dense else metrics.get("method", "?")
    if method == "decoder-only" and measured["params"]["params_m"] == dense_side["params"]["params_m"]:
        method = "dense + training (control)"  # nothing removed: the dense model given the methods' training
    return {
        "run_id": run_id, "kind": kind, "method": method,
        "model": metrics["model"], "task": metrics["task"], "metric": main,
        "quality": quality["metrics"][main], "higher_is_better": bool(quality["higher_is_better"][main]),
        **costs(measured),
        "encoder_sparsity": 0.0 if dense else metrics.get("encoder_sparsity_achieved"),
        "decoder_layers": None if dense else str(len(metrics["kept_layers"]) if lm
                                                 else metrics.get("decoder_layers_kept")),
        "plan": "dense model" if dense else metrics.get("plan_summary", ""),
        "device": metrics.get("device") or measured["latency"].get("device", ""),
        "eval_examples": quality["num_examples"],
        "weights": metrics.get("weights", "pretrained"), "source": reference or "measured here", "interval": interval,
        "precision": "fp32" if dense else {"none": "fp32"}.get(metrics.get("settings", {}).get("quantize", "none"),
                                                             metrics.get("settings", {}).get("quantize")),
        "dense_quality": metrics["quality"]["dense"]["metrics"][main],
        **{f"dense_{k}": v for k, v in costs(dense_side).items()},
    }


def runs_table(runs_metrics: list[tuple[str, dict]], reference: str | None = None,
               metric: str | None = None) -> pd.DataFrame:
    """One row per pruned model and one per dense model, from ``(run_id, metrics)`` pairs.

    Args:
        runs_metrics: ``(run_id, metrics.json contents)`` pairs.
        reference: Provenance of shipped reference runs (then kinds are ``reference`` and
            ``dense (reference)``); None for the user's own runs (``measured``, ``dense``).
        metric: The quality metric shown (e.g. a decoder-only LM run's ``zero_shot_accuracy`` instead of its main
            metric, perplexity); runs that did not measure it are left out. None: each run's main metric.

    The dense model of each (model, task, device) appears once, from its newest run.
    """
    rows, dense = [], {}
    for run_id, metrics in runs_metrics:
        if metric and not all(metric in metrics["quality"][k]["metrics"] for k in ("dense", "pruned")):
            continue
        rows.append(_point(run_id, metrics, "pruned", reference, metric))
        point = _point(run_id, metrics, "dense", reference, metric)
        key = (point["model"], point["task"], point["device"])
        for name, value in dense.get(key, {}).items():  # an axis the newest run lacks, from an earlier one
            if isinstance(point[name], float) and math.isnan(point[name]):
                point[name] = value
        dense[key] = point
    return pd.DataFrame(rows + list(dense.values()), columns=COLUMNS)


def with_relative(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``quality_rel`` (% of the row's dense quality) and ``<axis>_rel`` (fraction of the
    dense cost) columns; dense rows get 100 and 1.0."""
    out = table.copy()
    out["quality_rel"] = out["quality"] / out["dense_quality"] * 100.0
    for axis in COST_AXES:
        out[f"{axis}_rel"] = out[axis] / out[f"dense_{axis}"]
    return out


def pareto_mask(cost: pd.Series, quality: pd.Series, higher_is_better: bool = True) -> pd.Series:
    """True for the points no other point dominates (lower or equal cost and better or
    equal quality, strictly better in one). O(n log n): sort by cost, sweep quality."""
    sign = 1.0 if higher_is_better else -1.0
    order = sorted(range(len(cost)), key=lambda i: (cost.iloc[i], -sign * quality.iloc[i]))
    mask = [False] * len(cost)
    best = float("-inf")
    for i in order:
        if sign * quality.iloc[i] > best:
            mask[i] = True
            best = sign * quality.iloc[i]
    return pd.Series(mask, index=cost.index)
