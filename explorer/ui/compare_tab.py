"""Compare tab: the dense model and pruned runs generate side by side, streaming."""

from __future__ import annotations

import gradio as gr
from explorer.backend import common, compare
from explorer.ui.errors import shown_to_user

INTRO = ("**Compare.** The same input goes to the dense model and to the pruned runs you choose; each output "
         "streams as its tokens arrive, with milliseconds per token and in total, and, for an example from the "
         "task's test split, its score against the reference. The models run one after the other, so each "
         "timing has the machine to itself. Above each output: what was removed. NASH's first finding shows "
         "here: fewer decoder layers means fewer milliseconds per token. A decoder-only LM run (SmolLM2, Gemma 3) "
         "reads the input as a chat message through its chat template and streams its reply beside the dense "
         "LM's.")
MAX_PANELS = 4  # dense, two runs, and the first run with int8 weights
# Streamed outputs reach the page at most every 100 ms (each update sends every panel): a fast model's
# 64 tokens are a few updates, not 64, which keeps the server answering other sessions under load.
STREAM_EVERY_MS = 100.0


def generate(run_ids, text, example, task, root, int8=False):
    """Stream (header, output) pairs for the dense model, up to two runs and, with ``int8``, the
    first run with int8 Linear weights.

    Yields:
        ``MAX_PANELS`` headers followed by ``MAX_PANELS`` output texts.
    """
    with shown_to_user():
        compare.check_text(text)
        sources = compare.compare_sources((run_ids or [])[:2], root, bool(int8))
    scored = example is not None and example[0] == text
    heads = [h for h, _ in sources] + [""] * (MAX_PANELS - len(sources))
    texts = [""] * MAX_PANELS
    for ahead in compare.TURNS.wait():  # one generation at a time; say so at once while waiting
        yield [f"{heads[0]}\n\n*waiting: {ahead} other generation(s) ahead (models run one at a time, so that "
               "each timing has the machine to itself)*"] + heads[1:] + texts
    try:
        yield from _generate_in_turn(sources, heads, texts, text, example if scored else None, task)
    finally:
        compare.TURNS.done()


def _generate_in_turn(sources, heads, texts, text, example, task):
    """The models of ``sources`` generate one after the other (this session's turn)."""
    for i, (head, spec) in enumerate(sources):
        with shown_to_user():
            loaded = common.MODELS.get(spec)
            heads[i] = f"{head}\n\n*loading and generating...*"
            yield heads + texts
            ms, tokens = 0.0, 0
            timing, shown = "", -1.0
            for out, ms, tokens in compare.stream_generation(loaded, text):
                texts[i] = out
                timing = f"{ms / max(tokens, 1):.1f} ms/token, {ms:.0f} ms total, {tokens} tokens"
                if ms - shown >= STREAM_EVERY_MS:  # the page updates every 0.1 s at most, not every token
                    shown = ms
                    heads[i] = f"{head}\n\n{timing} (generating...)"
                    yield heads + texts
            heads[i] = f"{head}\n\n{timing or 'no tokens generated'}"
            if example is not None:
                heads[i] += "\n\n" + compare.score_against_reference(task, texts[i], example[1])
        yield heads + texts


def render(runs: str | None, shared: str | None) -> dict:
    """Widgets and wiring of the tab (inside an open gr.Blocks).

    Returns:
        ``{"refresh": (fn, inputs, outputs)}`` so the app can list new runs after a prune and on load;
        ``"show"``: (fn, inputs, outputs) that chooses a run and an example (the first look passes its
        hand-over ``(run_id, task, example)`` before ``inputs``); ``"generate"``: the Generate button's wiring.
    """
    gr.Markdown(INTRO)
    runs_state, shared_state = gr.State(runs), gr.State(shared)
    example = gr.State(None)  # (source text, Example) of the last picked test example
    with gr.Row():
        choice = gr.Dropdown([], multiselect=True, max_choices=2, label="Your pruned runs (up to 2)",
                             elem_id="compare-runs")
        int8 = gr.Checkbox(False, label="Also the first run with int8 weights (CPU)", elem_id="compare-int8")
        refresh = gr.Button("Refresh runs")
    with gr.Row():
        task = gr.Dropdown(common.task_choices(), value="rotten_tomatoes", label="Task of the example")
        pick = gr.Button("Random test example")
    text = gr.Textbox(lines=4, label="Input text", elem_id="compare-input")
    reference = gr.Markdown()
    go = gr.Button("Generate", variant="primary", elem_id="generate-button")
    headers, outputs = [], []
    with gr.Row():
        for i in range(MAX_PANELS):
            with gr.Column():
                headers.append(gr.Markdown(elem_id=f"compare-head-{i}"))
                outputs.append(gr.Textbox(lines=4, label="output", elem_id=f"compare-out-{i}"))

    def run_ids(root):
        # Generation is for encoder-decoder and decoder-only LM runs; EFTNAS classifiers are compared in the
        # EFTNAS tab.
        return [r.run_id for r in common.list_runs_for_ui(root) if r.metrics.get("method") != "eftnas"]

    def list_choices(root):
        return gr.Dropdown(choices=run_ids(root))

    def on_pick(task_name, shared_dir):
        with shown_to_user():
            ex = compare.task_example(task_name, shared_dir)
        return ex.source, (ex.source, ex), f"**Reference:** {ex.target}"

    def show(handover, root):
        """The first look's hand-over ``(run_id, task, example)``: the run chosen beside dense, the
        example as input (so the outputs are scored against its reference)."""
        run_id, task_name, picked = handover
        return (gr.Dropdown(choices=run_ids(root), value=[run_id]), picked.source, (picked.source, picked),
                f"**Reference:** {picked.target}", task_name)

    refresh.click(list_choices, runs_state, choice, api_name="list_runs")
    pick.click(on_pick, [task, shared_state], [text, example, reference], api_name="example")
    inputs = [choice, text, example, task, runs_state, int8]
    # No queue limit: every session's request starts at once and waits its turn in compare.TURNS, where
    # it is told its place (the models still run one at a time).
    go.click(generate, inputs, headers + outputs, api_name="generate", concurrency_limit=None)
    return {"refresh": (list_choices, [runs_state], [choice]),
            "show": (show, [runs_state], [choice, text, example, reference, task]),  # inputs follow a hand-over
            "generate": (generate, inputs, headers + outputs)}
