"""Compare tab: the dense model and pruned runs generate side by side, streaming."""

from __future__ import annotations

import time

from explorer import service

INTRO = ("**Compare.** Enter text; the dense model and the chosen pruned models generate side by side as "
         "tokens arrive, each with its milliseconds per token. Above each output: what was removed.")
MAX_PANELS = 3


def render(runs: str | None, shared: str | None) -> None:
    """Widgets and wiring of the tab (inside an open gr.Blocks)."""
    import gradio as gr

    gr.Markdown(INTRO)
    runs_state = gr.State(runs)
    with gr.Row():
        choice = gr.Dropdown([], multiselect=True, label="Pruned runs (up to 2)")
        refresh = gr.Button("Refresh runs")
    text = gr.Textbox(lines=4, label="Input text")
    go = gr.Button("Generate", variant="primary")
    headers, outputs = [], []
    with gr.Row():
        for _ in range(MAX_PANELS):
            with gr.Column():
                headers.append(gr.Markdown())
                outputs.append(gr.Textbox(lines=4, label="output"))

    def list_choices(root):
        return gr.Dropdown(choices=[r.run_id for r in service.list_runs_for_ui(root)])

    refresh.click(list_choices, runs_state, choice)

    def generate(run_ids, source, root):
        try:
            sources = service.compare_sources((run_ids or [])[:MAX_PANELS - 1], root)
            models = [service.MODELS.get(spec) for _, spec in sources]
        except (ValueError, FileNotFoundError) as err:
            raise gr.Error(str(err).splitlines()[0]) from None
        texts = [""] * MAX_PANELS
        heads = [h for h, _ in sources] + [""] * (MAX_PANELS - len(sources))
        for i, loaded in enumerate(models):
            try:
                for out, ms, tokens in service.stream_generation(loaded, source):
                    texts[i] = out
                    heads[i] = f"{sources[i][0]}\n\n{ms / max(tokens, 1):.1f} ms/token, {ms:.0f} ms total"
                    yield heads + texts
            except ValueError as err:
                raise gr.Error(str(err)) from None
        yield heads + texts

    go.click(generate, [choice, text, runs_state], headers + outputs)
