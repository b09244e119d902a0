"""Pareto fronts of quality against cost, as a table and as a plotly figure.

Pure functions: runs -> ``pandas.DataFrame`` -> ``plotly`` figure. The direction of
quality comes from the metric's ``higher_is_better`` (recorded in every run), never
from a hard-coded list; every cost axis (latency, MACs, parameters) is lower-is-better.
"""

from __future__ import annotations

import pandas as pd

COST_AXES = {
    "latency_ms": "end-to-end latency (ms)",
    "decode_ms_per_token": "decoder ms per generated token",
    "gmacs": "GMACs",
    "params_m": "parameters (M)",
}
COLUMNS = ["run_id", "kind", "method", "model", "task", "metric", "quality", "higher_is_better", "latency_ms",
           "decode_ms_per_token", "gmacs", "params_m", "encoder_sparsity", "decoder_layers", "plan", "device",
           "eval_examples", "weights", "source"]


def _point(run_id: str, metrics: dict, which: str) -> dict:
    quality = metrics["quality"][which]
    measured = metrics["measurements"][which]
    main = quality["main_metric"]
    dense = which == "dense"
    return {
        "run_id": run_id, "kind": "dense" if dense else "measured",
        "method": "dense" if dense else metrics.get("method", "?"),
        "model": metrics["model"], "task": metrics["task"], "metric": main,
        "quality": quality["metrics"][main], "higher_is_better": bool(quality["higher_is_better"][main]),
        "latency_ms": measured["latency"]["latency_ms"],
        "decode_ms_per_token": measured["latency"]["decode_ms_per_token"],
        "gmacs": measured["macs"]["gmacs"], "params_m": measured["params"]["params_m"],
        "encoder_sparsity": 0.0 if dense else metrics.get("encoder_sparsity_achieved"),
        "decoder_layers": None if dense else str(metrics.get("decoder_layers_kept")),
        "plan": "dense model" if dense else metrics.get("plan_summary", ""),
        "device": metrics.get("device", ""), "eval_examples": quality["num_examples"],
        "weights": metrics.get("weights", "pretrained"), "source": metrics.get("source", "measured here"),
    }


def runs_table(runs_metrics: list[tuple[str, dict]]) -> pd.DataFrame:
    """One row per pruned model and one per dense reference, from ``(run_id, metrics)`` pairs.

    The dense model of each (model, task, device) appears once, from its newest run.
    """
    rows, dense = [], {}
    for run_id, metrics in runs_metrics:
        rows.append(_point(run_id, metrics, "pruned"))
        point = _point(run_id, metrics, "dense")
        dense[(point["model"], point["task"], point["device"])] = point
    return pd.DataFrame(rows + list(dense.values()), columns=COLUMNS)


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
                       color: str = "kind"):
    """Quality against a cost axis with the non-dominated front as a line.

    Args:
        table: Rows of :func:`runs_table` for *one* task and metric.
        x: A key of ``COST_AXES``.
        reported: Published reference points (same columns, ``kind == "reported"``),
            drawn as hollow markers and never part of the front.
        color: Column that colours the measured points (``kind`` or ``method``).

    Returns:
        A ``plotly.graph_objects.Figure``.

    Raises:
        ValueError: For an unknown axis or a table mixing several metrics.
    """
    import plotly.graph_objects as go

    if x not in COST_AXES:
        raise ValueError(f"Unknown axis {x!r}; choose one of {', '.join(COST_AXES)}.")
    if table["metric"].nunique() > 1:
        raise ValueError("The table mixes several metrics; pick one task first.")
    fig = go.Figure()
    hover = ("%{customdata[0]}<br>%{customdata[1]}<br>%{customdata[2]}<br>device: %{customdata[3]}"
             "<br>evaluated on %{customdata[4]} examples<extra></extra>")

    def add(frame: pd.DataFrame, name: str, marker: dict) -> None:
        custom = frame[["model", "plan", "run_id", "device", "eval_examples"]].astype(str).values
        fig.add_trace(go.Scatter(x=frame[x], y=frame["quality"], mode="markers", name=name, marker=marker,
                                 customdata=custom, hovertemplate=hover))

    for value, group in table.groupby(color, sort=True):
        symbol = "star" if value == "dense" else "circle"
        add(group, str(value), {"size": 13 if value == "dense" else 10, "symbol": symbol})
    if len(table):
        higher = bool(table["higher_is_better"].iloc[0])
        front = table[pareto_mask(table[x], table["quality"], higher)].sort_values(x)
        fig.add_trace(go.Scatter(x=front[x], y=front["quality"], mode="lines", name="Pareto front",
                                 line={"dash": "dot"}, hoverinfo="skip"))
    if reported is not None and len(reported):
        add(reported, "reported (papers)", {"size": 10, "symbol": "diamond-open"})
    metric = table["metric"].iloc[0] if len(table) else "quality"
    fig.update_layout(xaxis_title=COST_AXES[x], yaxis_title=metric, legend_title=color,
                      margin={"l": 50, "r": 20, "t": 30, "b": 50})
    return fig
