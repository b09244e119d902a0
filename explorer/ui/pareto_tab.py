"""Pareto tab: quality against latency, MACs or parameters for every run."""

from __future__ import annotations

import gradio as gr
from explorer.backend import common, pareto
from explorer.ui.errors import shown_to_user

INTRO = ("**Pareto front.** Each point is a model; the star is the dense model it was pruned from. A model is on "
         "the front (dotted line) when no other model is both at least as good and at least as cheap: the front is "
         "the best trade-off found so far, and a point below it is wasted budget. Quality comes from the number of "
         "evaluation examples in each point's hover (the k x s grid of reference runs: 200; the NASH tables' runs: the "
         "whole evaluation split); compare like with like. Reference runs were measured by this project (see their "
         "hover for the machine and date); latencies from different machines only compare on the *relative* "
         "scale, which also shows the trade-offs reported in the "
         "[NASH](https://arxiv.org/abs/2310.10054) and EFTNAS (LREC-COLING 2024) papers as hollow diamonds, "
         "never mixed into the front.")


def update(task, axis, scale, colour, references, reported, root, metric="main"):
    """(figure, note, table, CSV path, run choices, plan-view run choices) for the tab's current settings."""
    with shown_to_user():
        fig, frame, note = pareto.pareto_view(task, axis, colour, root, scale=scale, references=references,
                                               reported=reported, metric=metric)
    path = pareto.export_csv(frame, name=f"runs-{task}") if not frame.empty else None
    runs = common.list_runs_for_ui(root)  # read once for both dropdowns
    own = [r.run_id for r in runs]
    planned = pareto.plan_runs(task, root, runs)
    return (fig, note, pareto.display_table(frame), path,
            gr.Dropdown(choices=own, value=own[0] if own else None),
            gr.Dropdown(choices=planned, value=planned[0] if planned else None))


def show_plan(run_id, root):
    """(figure, caption) of what ``run_id`` removed."""
    if not run_id:
        return None, "Pick a run to see what it removed."
    with shown_to_user():
        return pareto.plan_view(run_id, root)


def render(runs: str | None) -> dict:
    """Widgets and wiring of the tab (inside an open gr.Blocks).

    Returns:
        ``{"update": (fn, inputs, outputs)}`` so the app can redraw after a prune and on load.
    """
    gr.Markdown(INTRO)
    with gr.Row():
        task = gr.Dropdown(common.task_choices() + list(pareto.LM_TASKS), value="rotten_tomatoes",
                           label="Task (lm-samsum: decoder-only LMs, SmolLM2 and Gemma 3)", elem_id="pareto-task")
        metric = gr.Dropdown(["main", *pareto.LM_METRICS], value="main", elem_id="pareto-metric",
                             label="Quality (main: the task's metric; LMs: perplexity, zero-shot SST-2 accuracy or "
                                   "chat-summary ROUGE-L)")
        axis = gr.Radio([(v, k) for k, v in pareto.COST_AXES.items()], value="latency_ms", label="Cost axis")
        scale = gr.Radio(["absolute", "relative"], value="absolute", label="Scale (relative: to each dense model)")
    with gr.Row():
        colour = gr.Radio(["kind", "method"], value="kind", label="Colour by")
        references = gr.Checkbox(True, label="Reference runs (shipped in assets/)")
        reported = gr.Checkbox(True, label="Reported points (papers)")
        refresh = gr.Button("Refresh")
    plot = gr.Plot(label="Quality vs cost", elem_id="pareto-plot")
    note = gr.Markdown()
    table = gr.Dataframe(label="Runs (download has every column)", interactive=False)
    csv = gr.DownloadButton("Download CSV")
    with gr.Row():
        pick = gr.Dropdown([], label="One of your runs")
        zip_button = gr.Button("Zip its model for download")
        zipped = gr.File(label="Model zip (unzip, then pruning.load_pruned(folder))")
    gr.Markdown("**What a run removed.** Encoder heads by layer (for learned NASH, the gate value folded into "
                "each kept head), FFN neurons kept per encoder layer, and the decoder layers kept. Decoder depth "
                "sets most of the latency; the encoder's width sets most of the quality (NASH's two findings).")
    plan_pick = gr.Dropdown([], label="Run", elem_id="plan-run")
    plan_plot = gr.Plot(label="Plan", elem_id="plan-plot")
    plan_note = gr.Markdown()
    runs_state = gr.State(runs)
    inputs = [task, axis, scale, colour, references, reported, runs_state, metric]
    outputs = [plot, note, table, csv, pick, plan_pick]
    plan_pick.change(show_plan, [plan_pick, runs_state], [plan_plot, plan_note], api_name="plan")
    refresh.click(update, inputs, outputs, api_name="pareto")
    for event in (task.change, axis.change, scale.change, colour.change, references.change, reported.change,
                  metric.change):
        event(update, inputs, outputs, api_name=False)

    def on_zip(run_id, root):
        if not run_id:
            raise gr.Error("Choose one of your runs first.")
        with shown_to_user():
            return common.run_zip(run_id, root)

    zip_button.click(on_zip, [pick, runs_state], zipped, concurrency_limit=1, api_name="zip_run")
    return {"update": (update, inputs, outputs)}
