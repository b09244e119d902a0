"""Figures of an EFTNAS run: its Pareto front, its search space and its movement importance."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from nas.records import FrontPoint, RunSummary
from nas.search_space import SearchSpace


def front_figure(summary: RunSummary, chosen: FrontPoint | None = None):
    """Plotly: the Pareto front (GMACs at sequence length 128 against the evaluation metric), the
    dense model as a star, the chosen subnetwork circled."""
    import plotly.graph_objects as go

    metric, front = summary.metric, summary.front
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[p.gmacs for p in front], y=[p.eval[metric] for p in front], mode="lines+markers", name="subnetworks",
        line={"dash": "dot"}, customdata=[[str(p.head_widths), str(p.ffn_widths), p.latency_ms] for p in front],
        hovertemplate="%{x:.3f} GMACs, " + metric + " %{y:.2f}<br>heads %{customdata[0]}<br>FFN %{customdata[1]}"
                      "<br>%{customdata[2]:.2f} ms<extra></extra>"))
    dense = summary.dense
    fig.add_trace(go.Scatter(x=[dense["gmacs"]], y=[dense["eval"][metric]], mode="markers", name="dense",
                             marker={"symbol": "star", "size": 14}))
    if chosen is not None:
        fig.add_trace(go.Scatter(x=[chosen.gmacs], y=[chosen.eval[metric]], mode="markers", name="chosen",
                                 marker={"size": 18, "symbol": "circle-open", "line": {"width": 3}}))
    fig.update_layout(title=f"EFTNAS Pareto front: {summary.model} on {summary.task} "
                            f"({summary.eval_split}, n={summary.eval_examples}; {summary.weights} weights)",
                      xaxis_title="encoder GMACs (sequence length 128)", yaxis_title=metric, template="plotly_white",
                      height=420)
    return fig


def importance_figure(directory: str | os.PathLike):
    """Plotly heatmap of movement importance: heads (rows) x encoder layers (columns)."""
    import plotly.graph_objects as go

    data = json.loads((Path(directory) / "importance.json").read_text())
    heads = torch.tensor(data["heads"])  # (L, H)
    fig = go.Figure(go.Heatmap(z=heads.T.tolist(), x=list(range(heads.shape[0])), y=list(range(heads.shape[1])),
                               colorscale="Viridis", colorbar={"title": "importance"},
                               hovertemplate="layer %{x}, head %{y}: %{z:.4f}<extra></extra>"))
    fig.update_layout(title="Movement importance per head (Q, K, V summed)", xaxis_title="encoder layer",
                      yaxis_title="head", template="plotly_white", height=380)
    return fig


def search_space_figure(space: SearchSpace):
    """A plotly figure of the choices: per encoder layer, the head counts (left) and FFN widths
    (right) a subnetwork may pick, as fractions of full width (0 = skippable)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"Heads per layer (of {space.num_heads})",
                                                        f"FFN neurons per layer (of {space.ffn_dim})"))
    for col, choices, full in ((1, space.head_choices, space.num_heads), (2, space.ffn_choices, space.ffn_dim)):
        xs = [layer for layer, c in enumerate(choices) for _ in c]
        ys = [v for c in choices for v in c]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", marker=dict(size=9, symbol="line-ew-open", line_width=3),
                                 showlegend=False, hovertemplate="layer %{x}: %{y}<extra></extra>"), row=1, col=col)
        fig.update_yaxes(range=[-0.03 * full, 1.05 * full], row=1, col=col)
        fig.update_xaxes(title_text="encoder layer", dtick=1, row=1, col=col)
    targets = ", ".join(f"{t:.0%}" for t in space.targets)
    fig.update_layout(title=f"EFTNAS search space (MACs targets {targets} of dense, sequence length {space.seq_len})",
                      template="plotly_white", height=380)
    return fig
