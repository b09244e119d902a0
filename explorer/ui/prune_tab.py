"""Prune tab: pick a model, task and budget; run training-free NASH; add a run."""

from __future__ import annotations

import gradio as gr
from explorer.backend import common, prune
from explorer.ui.errors import shown_to_user

INTRO = ("**Prune.** [NASH](https://arxiv.org/abs/2310.10054) (Ko et al., Findings of EMNLP 2023) makes an "
         "encoder-decoder model faster in two ways: it *narrows the encoder* (removes attention heads and FFN "
         "neurons) and *shortens the decoder* (keeps k of its L layers). Its two findings: decoder depth dominates "
         "generation latency, because the decoder runs once per generated token; and moderate encoder sparsity "
         "keeps quality. Methods: *training-free* ranks encoder units by first-order Taylor importance "
         "([Michel et al., 2019](https://arxiv.org/abs/1905.10650)) in seconds; *learned gates* trains hard-concrete "
         "gates under a sparsity target, as NASH does (slower, usually better); *decoder only* keeps the whole "
         "encoder (the baseline; set sparsity to 0). Every run is saved and appears on the Pareto tab.")


def run(model, task, method, sparsity, layers, selection, recovery, device, eval_samples, finetune_steps,
        input_tokens, new_tokens, repeats, gate_steps, runs, shared, progress, cancel, quantize="none"):
    """One Prune request: settings -> run, with Gradio progress; errors become gr.Error.

    Returns:
        Markdown summary of the new run.
    """
    with shown_to_user():
        settings = prune.prune_settings(model, task, sparsity, layers, selection, recovery, device, eval_samples,
                                          data_dir=common.data_dir_for(task, shared), finetune_steps=finetune_steps,
                                          input_tokens=input_tokens, new_tokens=new_tokens, repeats=repeats,
                                          method=method, gate_steps=gate_steps, quantize=quantize)
        result = prune.start_prune(settings, runs, progress=lambda f, m: progress(f, desc=m), cancel=cancel)
    m = result.metrics
    dense, pruned = m["quality"]["dense"], m["quality"]["pruned"]
    main = dense["main_metric"]
    text = (f"Run **{result.run_id}**: {m['plan_summary']} ({m['encoder_sparsity_achieved'] * 100:.0f}% of encoder "
            f"head and FFN parameters removed).\n\n{main}: dense {dense['metrics'][main]:.2f} -> pruned "
            f"{pruned['metrics'][main]:.2f} on {pruned['num_examples']} {pruned['split']} examples; speed-up "
            f"{m['speedup_end_to_end']:.2f}x end to end on {m['device']}. Wall time per stage (s): "
            f"{m['stage_wall_s']}.")
    if "pruned_fp32" in m["quality"]:
        fp32 = m["quality"]["pruned_fp32"]["metrics"][main]
        fp32_ms = m["measurements"]["pruned_fp32"]["latency"]["latency_ms"]
        text += (f"\n\nint8 weights: {main} {fp32:.2f} in fp32 -> {pruned['metrics'][main]:.2f} in int8; "
                 f"{fp32_ms / m['measurements']['pruned']['latency']['latency_ms']:.2f}x faster than the same pruned "
                 f"model in fp32.")
    if m["weights"] != "pretrained":
        text += "\n\n**Random weights: the quality numbers mean nothing; only time, MACs and parameters do.**"
    return text


def estimate(model, task, device, finetune_steps, method, recovery, gate_steps, shared):
    """Markdown: how long the run will train (dense fine-tune unless cached, gate training, recovery)."""
    try:
        settings = prune.prune_settings(model, task, 0.0, 1, "uniform", recovery, device, 1,
                                          data_dir=common.data_dir_for(task, shared), finetune_steps=finetune_steps,
                                          method=method, gate_steps=gate_steps)
        return prune.finetune_estimate(settings)["text"]
    except (ValueError, FileNotFoundError, OSError) as err:
        return f"*{str(err).splitlines()[0]}*"


def render(runs: str | None, shared: str | None) -> dict:
    """Widgets and wiring of the tab (inside an open gr.Blocks).

    Returns:
        ``{"event": the Prune click event, "estimate": (fn, inputs, outputs)}`` for the app's wiring.
    """
    gr.Markdown(INTRO)
    with gr.Row():
        d = prune.DEFAULTS
        model = gr.Dropdown(common.model_choices(), value=d["model"], allow_custom_value=True,
                            label="Model (offline ones first; or type a Hub id or a local folder)",
                            elem_id="prune-model")
        task = gr.Dropdown(common.task_choices(), value=d["task"], label="Task", elem_id="prune-task")
        method = gr.Dropdown(prune.METHOD_LABELS, value=d["method"], label="Method")
    with gr.Row():
        sparsity = gr.Slider(0.0, 0.95, value=d["sparsity"], step=0.05,
                             label="Encoder sparsity (fraction of encoder head and FFN parameters removed)")
        layers = gr.Slider(1, 6, value=d["layers"], step=1, label="Decoder layers kept")
        selection = gr.Radio(["uniform", "low", "high", "learned"], value=d["selection"],
                             label="Decoder layer selection",
                             info="learned: decoder layer gates, with NASH (learned gates) only")
    with gr.Row():
        recovery = gr.Number(d["recovery"], precision=0, minimum=0, label="Recovery fine-tuning steps (0: none)")
        devices = common.device_choices()
        device = gr.Radio(devices, value=devices[-1], label="Device")
        eval_samples = gr.Number(d["eval_samples"], precision=0, minimum=1, label="Evaluation examples")
    with gr.Accordion("Dense fine-tuning and timing", open=False):
        with gr.Row():
            finetune_steps = gr.Number(d["finetune_steps"], precision=0, minimum=1,
                                       label="Dense fine-tuning steps (cached)")
            input_tokens = gr.Number(d["input_tokens"], precision=0, minimum=1, label="Timing: input tokens")
            new_tokens = gr.Number(d["new_tokens"], precision=0, minimum=1, label="Timing: new tokens")
            repeats = gr.Number(d["repeats"], precision=0, minimum=1, label="Timing: repeats (median)")
            gate_steps = gr.Number(d["gate_steps"], precision=0, minimum=1, label="Learned gates: training steps")
            quantize = gr.Dropdown(["none", "int8"], value=d["quantize"],
                                   label="Weights after pruning (int8: CPU only)", elem_id="prune-quantize")
    estimate_box = gr.Markdown(elem_id="finetune-estimate")
    with gr.Row():
        go = gr.Button("Prune", variant="primary", elem_id="prune-button")
        stop = gr.Button("Cancel", variant="stop", elem_id="cancel-button")
    result = gr.Markdown(elem_id="prune-result")
    runs_state, shared_state = gr.State(runs), gr.State(shared)

    def on_model(spec):
        with shown_to_user():
            count = common.decoder_layer_count(spec)
        return gr.Slider(maximum=count, value=min(2, count))

    model.change(on_model, model, layers, api_name=False)
    estimate_inputs = [model, task, device, finetune_steps, method, recovery, gate_steps, shared_state]
    # One API endpoint per action: the estimate is /estimate, whichever setting changed.
    # (always_last: while one estimate runs, only the latest of the changes queued behind it is estimated.)
    # (One estimate at a time in the app: a first one times a training step.)
    model.change(estimate, estimate_inputs, estimate_box, api_name="estimate", trigger_mode="always_last",
                 concurrency_limit=1, concurrency_id="estimate")
    for component in (task, device, finetune_steps, method, recovery, gate_steps):
        component.change(estimate, estimate_inputs, estimate_box, api_name=False, trigger_mode="always_last",
                         concurrency_limit=1, concurrency_id="estimate")

    def on_run(model_, task_, method_, sparsity_, layers_, selection_, recovery_, device_, eval_, ft_, in_, new_,
               rep_, gates_, runs_, shared_, quantize_="none", request: gr.Request = None, progress=gr.Progress()):
        cancel = common.CANCEL.new(request.session_hash if request else "default")
        return run(model_, task_, method_, sparsity_, layers_, selection_, recovery_, device_, eval_, ft_, in_, new_,
                   rep_, gates_, runs_, shared_, progress, cancel, quantize_)

    def on_cancel(request: gr.Request):
        if common.CANCEL.cancel(request.session_hash if request else "default"):
            gr.Info("Cancelling: the run stops at its next step; nothing of it is saved.")

    event = go.click(on_run, [model, task, method, sparsity, layers, selection, recovery, device, eval_samples,
                              finetune_steps, input_tokens, new_tokens, repeats, gate_steps, runs_state,
                              shared_state, quantize],
                     result, concurrency_limit=1, concurrency_id="prune", api_name="prune")
    stop.click(on_cancel, None, None, queue=False, api_name="cancel")
    return {"event": event, "estimate": (estimate, estimate_inputs, estimate_box)}
