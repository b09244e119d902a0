"""Prune tab: pick a model, task and budget; run training-free NASH; add a run."""

from __future__ import annotations

import torch

from explorer import service

INTRO = ("**Prune.** NASH narrows the encoder (removes attention heads and FFN neurons) and shortens the "
         "decoder (keeps k of L layers). Its two findings: decoder depth dominates generation latency, and "
         "moderate encoder sparsity keeps quality ([Ko et al., 2023](https://arxiv.org/abs/2310.10054)). "
         "A model not yet fine-tuned for the task is fine-tuned first (cached for later runs).")


def run(model, task, method, sparsity, layers, selection, recovery, device, eval_samples, runs, shared, progress):
    """One Prune request: settings -> run, with Gradio progress; errors become gr.Error."""
    import gradio as gr

    try:
        settings = service.prune_settings(model, task, sparsity, layers, selection, recovery, device, eval_samples,
                                          data_dir=service.data_dir_for(task, shared))
        result = service.start_prune(settings, runs, progress=lambda f, m: progress(f, desc=m))
    except (ValueError, FileNotFoundError) as err:
        raise gr.Error(str(err).splitlines()[0]) from None
    m = result.metrics
    dense, pruned = m["quality"]["dense"], m["quality"]["pruned"]
    main = dense["main_metric"]
    return (f"Run **{result.run_id}**: {m['plan_summary']}.\n\n{main}: dense {dense['metrics'][main]:.2f} -> "
            f"pruned {pruned['metrics'][main]:.2f} on {pruned['num_examples']} examples; "
            f"speed-up {m['speedup_end_to_end']:.2f}x end to end on {m['device']}."
            + ("\n\n**Random weights: the quality numbers mean nothing.**" if m["weights"] != "pretrained" else ""))


def render(runs: str | None, shared: str | None) -> None:
    """Widgets and wiring of the tab (inside an open gr.Blocks)."""
    import gradio as gr

    gr.Markdown(INTRO)
    with gr.Row():
        model = gr.Dropdown(service.model_choices(), value="minilm2minilm", allow_custom_value=True,
                            label="Model (offline first; or type a Hub id or local folder)")
        task = gr.Dropdown(service.task_choices(), value="rotten_tomatoes", label="Task")
        method = gr.Dropdown(list(service.METHODS), value=list(service.METHODS)[0], label="Method")
    with gr.Row():
        sparsity = gr.Slider(0.0, 0.95, value=0.3, step=0.05, label="Encoder sparsity")
        layers = gr.Slider(1, 6, value=2, step=1, label="Decoder layers kept")
        selection = gr.Radio(["uniform", "low", "high"], value="uniform", label="Layer selection")
    with gr.Row():
        recovery = gr.Number(100, precision=0, label="Recovery fine-tuning steps")
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        device = gr.Radio(devices, value=devices[-1], label="Device")
        eval_samples = gr.Number(64, precision=0, label="Evaluation examples")
    go = gr.Button("Prune", variant="primary")
    result = gr.Markdown()

    def on_model(spec):
        try:
            return gr.Slider(maximum=service.decoder_layer_count(spec))
        except ValueError as err:
            raise gr.Error(str(err).splitlines()[0]) from None

    model.change(on_model, model, layers)
    runs_state, shared_state = gr.State(runs), gr.State(shared)

    def on_run(*args, progress=gr.Progress()):
        return run(*args, progress)

    go.click(on_run, [model, task, method, sparsity, layers, selection, recovery, device, eval_samples, runs_state,
                      shared_state], result, concurrency_limit=1)
