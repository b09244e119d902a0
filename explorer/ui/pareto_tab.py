"""Pareto tab: quality against latency, MACs or parameters for every run."""

from __future__ import annotations

from explorer import service
from explorer.pareto import COST_AXES

INTRO = ("**Pareto front.** Each point is a model; a point is on the front when no other model is both at "
         "least as good and at least as cheap. Points above and left of the front would be better; the front "
         "is the best trade-off found so far. Star: the dense model.")


def render(runs: str | None) -> None:
    """Widgets and wiring of the tab (inside an open gr.Blocks)."""
    import gradio as gr

    gr.Markdown(INTRO)
    with gr.Row():
        task = gr.Dropdown(service.task_choices(), value="rotten_tomatoes", label="Task")
        axis = gr.Radio(list(COST_AXES), value="latency_ms", label="Cost axis")
        color = gr.Radio(["kind", "method"], value="kind", label="Colour by")
        refresh = gr.Button("Refresh")
    plot = gr.Plot(label="Quality vs cost")
    table = gr.Dataframe(label="Runs", interactive=False)
    csv = gr.DownloadButton("Download CSV")
    runs_state = gr.State(runs)

    def update(task_name, axis_name, colour, root):
        fig, frame = service.pareto_view(task_name, axis_name, colour, root)
        path = service.export_csv(frame, root)
        return fig, frame, path

    for event in (refresh.click, task.change, axis.change, color.change):
        event(update, [task, axis, color, runs_state], [plot, table, csv])
