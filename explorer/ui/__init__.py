"""The Gradio explorer: one module per tab, composed by :func:`build_app`.

Tabs hold widgets and wiring only; every computation is a call into
``explorer.backend`` (one module per tab, tested without the UI).
"""

from __future__ import annotations

HEADER = ("# Compression Explorer\nMake encoder-decoder transformers smaller and faster, and see the trade-off. "
          "**Prune** a model with [NASH](https://arxiv.org/abs/2310.10054) (narrow encoder, shallow decoder), "
          "search a BERT classifier's subnetworks with **EFTNAS** (a super-network you extract from by MACs or "
          "latency budget), see every run on the **Pareto** front of quality against cost, and **Compare** the dense "
          "and pruned models' generations live. The Pareto tab opens with reference runs measured by this project.")


def build_app(runs: str | None = None, shared_data: str | None = None):
    """The ``gr.Blocks`` app with the Prune, EFTNAS, Pareto and Compare tabs.

    Args:
        runs: Runs folder (default: ``EXPLORER_RUNS`` or ``<cache>/runs``).
        shared_data: A folder of local datasets (e.g. ``../shared/data``) used when it holds the task.

    Returns:
        The ``gr.Blocks``; serve it with ``.queue().launch()`` (see ``app.py``).
    """
    import gradio as gr

    from explorer.ui import compare_tab, eftnas_tab, first_look, pareto_tab, prune_tab

    with gr.Blocks(title="Compression Explorer") as app:
        gr.Markdown(HEADER)
        start = first_look.render()
        with gr.Tabs() as tabs:
            with gr.Tab("Prune", id="prune"):
                prune = prune_tab.render(runs, shared_data)
            with gr.Tab("EFTNAS", id="eftnas"):
                eft = eftnas_tab.render(runs, shared_data)
            with gr.Tab("Pareto", id="pareto"):
                pareto = pareto_tab.render(runs)
            with gr.Tab("Compare", id="compare"):
                compare = compare_tab.render(runs, shared_data)
        # Start here: the default prune (or its earlier run; one queue slot with the Prune button), then the
        # Compare tab opens with it chosen beside dense and a test example, and generates.
        runs_state, shared_state = gr.State(runs), gr.State(shared_data)
        show, show_inputs, show_outputs = compare["show"]
        started = start["button"].click(first_look.on_start, [runs_state, shared_state],
                                        [start["status"], start["handover"]], concurrency_limit=1,
                                        concurrency_id="prune", api_name="start_here")
        started.success(*pareto["update"], api_name=False)
        started.success(lambda: gr.Tabs(selected="compare"), None, tabs, api_name=False) \
            .then(show, [start["handover"]] + show_inputs, show_outputs, api_name=False) \
            .then(*compare["generate"], api_name=False)
        # A new run shows up on the Pareto front and in the Compare tab's run list at once.
        for event in (prune["event"], prune["lm_event"]):
            event.success(*pareto["update"], api_name=False).success(*compare["refresh"], api_name=False)
        # First look: the front (with the shipped reference runs), the run list and the fine-tune estimate.
        app.load(*pareto["update"], api_name=False)
        app.load(*compare["refresh"], api_name=False)
        app.load(*prune["estimate"], api_name=False, concurrency_limit=1, concurrency_id="estimate")
        # The EFTNAS tab draws its first run (a shipped reference run) at once, not after a click.
        app.load(*eft["refresh"], api_name=False).then(*eft["open"], api_name=False)
    return app
