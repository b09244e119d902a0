"""The Gradio explorer: one module per tab, composed by :func:`build_app`.

Tabs hold widgets and wiring only; every computation is a call into
``explorer.service`` (tested without the UI).
"""

from __future__ import annotations


def build_app(runs: str | None = None, shared_data: str | None = None):
    """The ``gr.Blocks`` app with the Prune, Pareto and Compare tabs.

    Args:
        runs: Runs folder (default: ``EXPLORER_RUNS`` or ``<cache>/runs``).
        shared_data: A folder of local datasets (e.g. ``../shared/data``) used when present.
    """
    import gradio as gr

    from . import compare_tab, pareto_tab, prune_tab

    with gr.Blocks(title="Compression Explorer") as app:
        gr.Markdown("# Compression Explorer\nMake encoder-decoder transformers smaller and faster with "
                    "[NASH](https://arxiv.org/abs/2310.10054), and see the trade-off.")
        with gr.Tabs():
            with gr.Tab("Prune"):
                prune_tab.render(runs, shared_data)
            with gr.Tab("Pareto"):
                pareto_tab.render(runs)
            with gr.Tab("Compare"):
                compare_tab.render(runs, shared_data)
    return app
