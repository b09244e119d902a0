"""What a run removed, drawn: encoder heads x layers, FFN neurons kept per encoder layer, the
decoder layers kept and, for plans that narrow them (CoFi), the decoder widths and hidden
dimensions kept (the learned-NASH issue, item 7: "a view of the learned gates").

For a learned run whose ``metrics.json`` carries the deterministic gate values
(``gate_training.gates``, written by ``explorer.training.gates.train_gates``), each kept head's cell shows
its gate value (the factor folded into its weights); otherwise cells are 1 (kept) or 0 (removed),
which is all a training-free or decoder-only plan has.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pruning.plan import PruningPlan


def plan_figure(plan: PruningPlan, metrics: dict | None = None, title: str = "") -> go.Figure:
    """Three panels for one run's plan.

    Args:
        plan: The run's plan (``PruningPlan.load(run_folder)``).
        metrics: The run's ``metrics.json``, for gate values when there are any.
        title: Figure title.

    Returns:
        A plotly figure: a heatmap of encoder layers x heads (gate value, 0 = removed), bars of
        FFN neurons kept per encoder layer (of F), a map of the decoder layers kept (with rows for
        the fraction of self-attention heads, cross-attention heads and FFN neurons each kept layer
        keeps, when the plan narrows the decoder), and a bar of hidden dimensions kept when the
        plan cuts them.
    """
    heads_kept, neurons_kept = plan.kept_encoder_heads, plan.kept_encoder_neurons
    n_heads, ffn_dim = plan.num_heads, plan.ffn_dim
    n_dec, dec_kept = plan.num_decoder_layers, set(plan.kept_decoder_layers)
    gates = ((metrics or {}).get("gate_training") or {}).get("gates") or {}
    values = gates.get("heads")
    grid = []
    for layer, kept in enumerate(heads_kept):
        kept = set(kept)
        if values and layer < len(values) and len(values[layer]) == n_heads:
            grid.append([values[layer][h] if h in kept else 0.0 for h in range(n_heads)])
        else:
            grid.append([1.0 if h in kept else 0.0 for h in range(n_heads)])
    label = "gate value" if values else "kept"
    fig = make_subplots(rows=2, cols=2, column_widths=[0.62, 0.38], row_heights=[0.8, 0.2], vertical_spacing=0.18,
                        horizontal_spacing=0.12,
                        subplot_titles=(f"Encoder heads ({label}; 0 = removed)", f"FFN neurons kept (of {ffn_dim})",
                                        f"Decoder layers kept ({len(dec_kept)} of {n_dec})", " "))
    layers = [f"enc {i}" for i in range(len(heads_kept))]
    fig.add_trace(go.Heatmap(z=grid, x=[f"h{h}" for h in range(n_heads)], y=layers, zmin=0, zmax=1,
                             colorscale="Blues", showscale=False,
                             hovertemplate="%{y}, %{x}: %{z:.2f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=[len(n) for n in neurons_kept], y=layers, orientation="h", marker_color="#4c78a8",
                         hovertemplate="%{y}: %{x} neurons<extra></extra>", showlegend=False), row=1, col=2)
    fig.update_xaxes(range=[0, ffn_dim], row=1, col=2)
    rows, names = [[1.0 if i in dec_kept else 0.0 for i in range(n_dec)]], ["layer kept"]
    for per_layer, label, full in ((plan.kept_decoder_heads, "self-attn heads", plan.decoder_num_heads),
                                   (plan.kept_cross_heads, "cross-attn heads", plan.decoder_num_heads),
                                   (plan.kept_decoder_neurons, "FFN neurons", plan.decoder_ffn_dim)):
        if per_layer and full:  # CoFi: decoder widths, as the fraction of each kept layer's units kept
            rows.append([len(per_layer[i]) / full if i in dec_kept else 0.0 for i in range(n_dec)])
            names.append(f"{label} (of {full})")
    fig.add_trace(go.Heatmap(z=rows, x=[f"dec {i}" for i in range(n_dec)], y=names, zmin=0, zmax=1,
                             colorscale="Greens", showscale=False,
                             hovertemplate="%{x}, %{y}: %{z:.2f}<extra></extra>"), row=2, col=1)
    if plan.kept_hidden_dims:
        d = plan.hidden_size
        fig.add_trace(go.Bar(x=[len(plan.kept_hidden_dims)], y=["hidden"], orientation="h", marker_color="#f58518",
                             hovertemplate="%{x} hidden dimensions kept<extra></extra>", showlegend=False), row=2, col=2)
        fig.update_xaxes(range=[0, d], row=2, col=2)
        fig.layout.annotations[3].update(text=f"Hidden dimensions kept (of {d})")
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_yaxes(autorange="reversed", row=1, col=2)
    fig.update_layout(title=title, height=460 + 40 * (len(rows) - 1), margin=dict(l=50, r=20, t=70, b=30), template="plotly_white")
    return fig
