"""Pareto fronts of quality against cost, as a table and as a plotly figure.

Pure functions: runs -> ``pandas.DataFrame`` -> ``plotly`` figure. The direction of
quality comes from the metric's ``higher_is_better`` (recorded in every run), never
from a hard-coded list; every cost axis (latency, MACs, parameters) is lower-is-better.

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
PRECISION_SYMBOLS = {"fp32": "circle", "int8": "square"}  # marker of a pruned model by its weights' precision
COLUMNS = ["run_id", "kind", "method", "model", "task", "metric", "quality", "higher_is_better", "latency_ms",
           "task_latency_ms", "decode_ms_per_token", "gmacs", "params_m", "encoder_sparsity", "decoder_layers", "plan", "device",
           "eval_examples", "weights", "source", "interval", "precision", "dense_quality", *(f"dense_{a}" for a in COST_AXES)]
REPORTED_COLUMNS = ["method", "model", "task", "claim", "source", "quality_rel", *(f"{a}_rel" for a in COST_AXES)]


def _point(run_id: str, metrics: dict, which: str, reference: str | None) -> dict:
    quality = metrics["quality"][which]
    measured = metrics["measurements"][which]
    main = quality["main_metric"]
    dense = which == "dense"
    kind = ("dense" if dense else "measured") if reference is None else ("dense (reference)" if dense else "reference")

    def costs(side: dict) -> dict:
        return {"latency_ms": side["latency"]["latency_ms"],
                "task_latency_ms": (side.get("latency_task") or {}).get("latency_ms", float("nan")),
                "decode_ms_per_token": side["latency"]["decode_ms_per_token"],
                "gmacs": side["macs"]["gmacs"], "params_m": side["params"]["params_m"]}

    dense_side = metrics["measurements"]["dense"]
    intervals = metrics.get("intervals") or {}
    interval = "" if dense else "<br>".join(
        f"{label}: {iv['diff']:+.2f} [{iv['low']:+.2f}, {iv['high']:+.2f}] {iv.get('metric', main)}"
        f" ({'real' if iv['low'] > 0 or iv['high'] < 0 else 'within noise'}, 95% paired bootstrap)"
        for key, label in (("vs_dense", "vs dense"), ("vs_training_free", "vs training-free NASH"))
        if (iv := intervals.get(key))) or "no interval recorded"
    return {
        "run_id": run_id, "kind": kind,
        "method": "dense" if dense else metrics.get("method", "?"),
        "model": metrics["model"], "task": metrics["task"], "metric": main,
        "quality": quality["metrics"][main], "higher_is_better": bool(quality["higher_is_better"][main]),
        **costs(measured),
        "encoder_sparsity": 0.0 if dense else metrics.get("encoder_sparsity_achieved"),
        "decoder_layers": None if dense else str(metrics.get("decoder_layers_kept")),
        "plan": "dense model" if dense else metrics.get("plan_summary", ""),
        "device": metrics.get("device", ""), "eval_examples": quality["num_examples"],
        "weights": metrics.get("weights", "pretrained"), "source": reference or "measured here", "interval": interval,
        "precision": "fp32" if dense else {"none": "fp32"}.get(metrics.get("settings", {}).get("quantize", "none"),
                                                             metrics.get("settings", {}).get("quantize")),
        "dense_quality": metrics["quality"]["dense"]["metrics"][main],
        **{f"dense_{k}": v for k, v in costs(dense_side).items()},
    }


def runs_table(runs_metrics: list[tuple[str, dict]], reference: str | None = None) -> pd.DataFrame:
    """One row per pruned model and one per dense model, from ``(run_id, metrics)`` pairs.

    Args:
        runs_metrics: ``(run_id, metrics.json contents)`` pairs.
        reference: Provenance of shipped reference runs (then kinds are ``reference`` and
            ``dense (reference)``); None for the user's own runs (``measured``, ``dense``).

    The dense model of each (model, task, device) appears once, from its newest run.
    """
    rows, dense = [], {}
    for run_id, metrics in runs_metrics:
        rows.append(_point(run_id, metrics, "pruned", reference))
        point = _point(run_id, metrics, "dense", reference)
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


def make_pareto_figure(table: pd.DataFrame, x: str = "latency_ms", reported: pd.DataFrame | None = None,
                       color: str = "kind", scale: str = "absolute"):
    """Quality against a cost axis with the non-dominated front as a line.

    Args:
        table: Rows of :func:`runs_table` for *one* task and metric (reference and own runs).
        x: A key of ``COST_AXES``.
        reported: Published points (``REPORTED_COLUMNS``), drawn as hollow diamonds and never
            part of the front; only in the relative scale (papers report speed-ups and % of
            dense quality) and only those with a value for ``x``.
        color: Column that colours the measured points (``kind`` or ``method``).
        scale: ``absolute`` or ``relative`` (see the module docstring).

    Returns:
        A ``plotly.graph_objects.Figure``.

    Raises:
        ValueError: For an unknown axis or scale, or a table mixing several metrics.
    """
    import plotly.graph_objects as go

    if x not in COST_AXES:
        raise ValueError(f"Unknown axis {x!r}; choose one of {', '.join(COST_AXES)}.")
    if scale not in SCALES:
        raise ValueError(f"Unknown scale {scale!r}; choose absolute or relative.")
    if table["metric"].nunique() > 1:
        raise ValueError("The table mixes several metrics; pick one task first.")
    relative = scale == "relative"
    if relative:
        table = with_relative(table)
    xc, yc = (f"{x}_rel", "quality_rel") if relative else (x, "quality")
    table = table.dropna(subset=[xc])  # runs measured before an axis existed (task-length latency) have no value
    fig = go.Figure()
    hover = ("%{customdata[0]}<br>%{customdata[1]}<br>%{customdata[2]}<br>device: %{customdata[3]}"
             "<br>evaluated on %{customdata[4]} examples<br>%{customdata[6]}<br>%{customdata[5]}<extra></extra>")

    for value, group in table.groupby(color, sort=True):
        dense = str(value).startswith("dense")
        custom = group[["model", "plan", "run_id", "device", "eval_examples", "source", "interval"]].astype(str).values
        symbols = ["star" if dense else PRECISION_SYMBOLS.get(p, "circle") for p in group["precision"]]
        fig.add_trace(go.Scatter(x=group[xc], y=group[yc], mode="markers", name=str(value), customdata=custom,
                                 hovertemplate=hover, marker={"size": 13 if dense else 10, "symbol": symbols}))
    if len(table):
        higher = bool(table["higher_is_better"].iloc[0])
        front = table[pareto_mask(table[xc], table[yc], higher)].sort_values(xc)
        fig.add_trace(go.Scatter(x=front[xc], y=front[yc], mode="lines", name="Pareto front",
                                 line={"dash": "dot"}, hoverinfo="skip"))
    if relative and reported is not None and len(reported):
        shown = reported.dropna(subset=[xc])
        if len(shown):
            custom = shown[["method", "model", "task", "claim", "source"]].astype(str).values
            fig.add_trace(go.Scatter(
                x=shown[xc], y=shown["quality_rel"], mode="markers", name="reported (papers)", customdata=custom,
                marker={"size": 11, "symbol": "diamond-open"},
                hovertemplate=("REPORTED, not measured here<br>%{customdata[0]}: %{customdata[1]}, %{customdata[2]}"
                               "<br>%{customdata[3]}<br>source: %{customdata[4]}<extra></extra>")))
    metric = table["metric"].iloc[0] if len(table) else "quality"
    fig.update_layout(
        xaxis_title=f"{COST_AXES[x]}, fraction of dense" if relative else COST_AXES[x],
        yaxis_title=f"{metric}, % of dense" if relative else metric, legend_title=color,
        margin={"l": 50, "r": 20, "t": 30, "b": 50})
    return fig
