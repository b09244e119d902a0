"""The "Start here" row above the tabs: one click from opening the page to a live side-by-side
generation of a dense and a pruned model (``explorer.backend.first_look``)."""

from __future__ import annotations

import gradio as gr
from explorer.backend import common, first_look, prune
from explorer.ui.errors import shown_to_user

TEXT = ("**New here? Start here.** One click prunes the offline default (MiniLM2MiniLM, real MiniLM-L6 "
        "weights, on rotten_tomatoes: a dense fine-tune, training-free NASH keeping {layers} of 6 decoder layers "
        "at encoder sparsity {sparsity}, recovery, evaluation and timing; a few minutes on 2 CPU cores, with "
        "progress here), then opens **Compare** with the dense and the pruned model generating side by side on a "
        "test review. If that run already exists, it is reused at once.")


def on_start(root, shared, request: gr.Request = None, progress=gr.Progress()):
    """Run or reuse the default prune; returns (status Markdown, hand-over for the Compare tab)."""
    cancel = common.CANCEL.new(request.session_hash if request else "default")
    with shown_to_user():
        run, example, reused = first_look.start_here(root, shared, progress=lambda f, m: progress(f, desc=m),
                                                     cancel=cancel)
    m = run.metrics
    dense, pruned = m["quality"]["dense"], m["quality"]["pruned"]
    main = dense["main_metric"]
    status = (f"{'Reused' if reused else 'Made'} run **{run.run_id}**: {m['plan_summary']}; {main} dense "
              f"{dense['metrics'][main]:.2f} -> pruned {pruned['metrics'][main]:.2f} on {pruned['num_examples']} "
              f"examples, {m['speedup_end_to_end']:.2f}x faster end to end. Now in **Compare**, generating...")
    return status, (run.run_id, m["task"], example)


def render() -> dict:
    """The row's widgets (inside an open gr.Blocks, above the tabs).

    Returns:
        ``{"button", "status", "handover"}``: the app wires the click (it needs the tabs).
    """
    d = prune.DEFAULTS
    with gr.Row(equal_height=True):
        gr.Markdown(TEXT.format(layers=d["layers"], sparsity=d["sparsity"]))
        button = gr.Button("Start here", variant="primary", elem_id="start-here", scale=0, min_width=160)
    status = gr.Markdown("*Progress shows here once you press Start here.*", elem_id="start-here-status",
                         min_height=80, container=True)
    return {"button": button, "status": status, "handover": gr.State(None)}
