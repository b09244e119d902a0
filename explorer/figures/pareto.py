"""The Pareto figure: quality against a cost axis from the table of ``explorer.runs.points``,
the front of each kind drawn as a line, the dense models as stars, the papers' reported points
(relative scale), a marker per weight precision, and each difference's interval in the hover.
"""

from __future__ import annotations

import pandas as pd

from explorer.runs.points import COST_AXES, SCALES, pareto_mask, with_relative

PRECISION_SYMBOLS = {"fp32": "circle", "int8": "square"}  # marker of a pruned model by its weights' precision


def make_pareto_figure(table: pd.DataFrame, x: str = "latency_ms", reported: pd.DataFrame | None = None,
                       color: str = "kind", scale: str = "absolute", floor: dict | None = None):
    """Quality against a cost axis with the non-dominated front as a line.

    Args:
        table: Rows of :func:`runs_table` for *one* task and metric (reference and own runs).
        x: A key of ``COST_AXES``.
        reported: Published points (``REPORTED_COLUMNS``), drawn as hollow diamonds and never
            part of the front; only in the relative scale (papers report speed-ups and % of
            dense quality) and only those with a value for ``x``.
        color: Column that colours the measured points (``kind`` or ``method``).
        scale: ``absolute`` or ``relative`` (see the module docstring).
        floor: The task's constant predictor (``explorer.runs.references.reference_floor``: ``score``,
            ``text``, ``of``, ``metric``), drawn as a grey dashed line in the absolute scale when its metric
            is the table's: the score a model gets by writing one answer for every example. When it lies
            further below the lowest run than the runs span, a note at the bottom says so instead.

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
    if floor and not relative and floor.get("metric") == metric:
        label = f"constant \"{floor['text']}\" (training {floor['of']}): {floor['score']:.1f}"
        low, high = (float(table[yc].min()), float(table[yc].max())) if len(table) else (floor["score"],) * 2
        if floor["score"] >= low - max(high - low, 1.0):  # a line within the runs' own scale
            fig.add_hline(y=floor["score"], line={"dash": "dash", "color": "grey", "width": 1}, annotation_text=label,
                          annotation_position="bottom right", annotation_font_color="grey")
        else:  # far below (STS-B's constant has Pearson 0): a line would squash every run into a thin band
            fig.add_annotation(text=f"{label}, far below this range", xref="paper", yref="paper", x=1, y=0,
                               xanchor="right", yanchor="bottom", showarrow=False, font={"color": "grey"})
    fig.update_layout(
        xaxis_title=f"{COST_AXES[x]}, fraction of dense" if relative else COST_AXES[x],
        yaxis_title=f"{metric}, % of dense" if relative else metric, legend_title=color,
        margin={"l": 50, "r": 20, "t": 30, "b": 50})
    return fig
