"""What the Compare tab calls: the same input to the dense model and to pruned runs, streamed."""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Iterator

from explorer.backend.common import INT8, data_dir_for
from explorer.backend.pareto import _explain
from explorer.data.splits import load_split
from explorer.data.tasks import Example, get_task
from explorer.evaluation.metrics import INVALID_LABEL
from explorer.evaluation.scoring import compute_metrics
from explorer.models.loading import LoadedModel
from explorer.runs.store import get_run


MAX_CHARACTERS = 50_000  # longer inputs are refused: the models read 512 tokens at most


class Turns:
    """Generations take turns: one runs at a time, so that each ms/token it shows has the machine to
    itself (as far as the app's own training jobs allow), while other sessions wait in line and are
    told their place at once instead of waiting in Gradio's queue without a word.

    Use: ``for ahead in TURNS.wait(): show(ahead)`` (returns when it is this caller's turn; yields the
    number of generations ahead every 0.5 s meanwhile), then ``TURNS.done()`` when finished. A caller
    that stops waiting (the session closed the generator) leaves the line.
    """

    def __init__(self):
        self._slot, self._guard, self._waiting = threading.Lock(), threading.Lock(), 0

    def wait(self) -> Iterator[int]:
        with self._guard:
            self._waiting += 1
        try:
            acquired = self._slot.acquire(blocking=False)
            while not acquired:
                with self._guard:
                    ahead = self._waiting  # the one running and the others waiting (counted roughly)
                yield ahead
                acquired = self._slot.acquire(timeout=0.5)
        finally:
            with self._guard:
                self._waiting -= 1

    def done(self) -> None:
        """End this caller's turn."""
        self._slot.release()


TURNS = Turns()  # the app's one line of generations


def check_text(text: str | None) -> str:
    """``text`` if a model can be given it.

    Raises:
        ValueError: If it is empty, only whitespace, or longer than ``MAX_CHARACTERS``.
    """
    if not text or not text.strip():
        raise ValueError("Enter some text (or pick an example) to generate from.")
    if len(text) > MAX_CHARACTERS:
        raise ValueError(f"The input has {len(text):,} characters; the models read at most 512 tokens (a few "
                         f"thousand characters), so paste at most {MAX_CHARACTERS:,}.")
    return text


def stream_generation(loaded: LoadedModel, text: str, max_new_tokens: int = 64) -> Iterator[tuple[str, float, int]]:
    """Greedy generation that yields ``(text so far, elapsed ms, generated tokens so far)`` after
    every generated token.

    A 2-token warm-up generation runs first (untimed), so the first call of a model does not
    charge its one-time set-up to the milliseconds per token. Generation runs in a thread and
    hands each new token over a queue (a ``transformers`` streamer); an error in generation is
    raised here.

    Args:
        loaded: Model and tokenizer: an encoder-decoder model reads ``text``; a decoder-only LM reads it as the
            user's message through its chat template (``explorer.evaluation.lm_tasks.chat_prompt``) and streams
            its reply.
        text: Input text; truncated to 512 tokens (an LM's prompt: its last 512).
        max_new_tokens: Upper bound on generated tokens.

    Raises:
        ValueError: If ``text`` is empty or longer than ``MAX_CHARACTERS``.
    """
    import queue

    import torch
    from transformers.generation.streamers import BaseStreamer

    from explorer.evaluation.latency import new_cache

    check_text(text)
    tokenizer, model = loaded.tokenizer, loaded.model.eval()
    if getattr(model.config, "is_encoder_decoder", False):
        enc = tokenizer([text], return_tensors="pt", truncation=True, max_length=512)
        ids, mask, cache = enc["input_ids"], enc["attention_mask"], new_cache
    else:  # a decoder-only LM: a chat turn; its own cache
        from explorer.evaluation.lm_tasks import chat_prompt

        ids = torch.tensor([tokenizer(chat_prompt(tokenizer, text), add_special_tokens=False)["input_ids"][-512:]])
        mask, cache = torch.ones_like(ids), lambda: None
    inputs = dict(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1)
    with torch.inference_mode():
        model.generate(**inputs, max_new_tokens=2, past_key_values=cache())
    events: queue.Queue = queue.Queue()

    class Streamer(BaseStreamer):
        """Receives the decoder start token (an LM: its prompt) first, skipped, then each generated token."""

        def __init__(self):
            self.ids: list[int] = []
            self.started = False

        def put(self, value):
            if not self.started:
                self.started = True
                return
            self.ids.extend(value.reshape(-1).tolist())
            events.put((tokenizer.decode(self.ids, skip_special_tokens=True), len(self.ids), time.perf_counter()))

        def end(self):
            events.put(None)

    def work():
        try:
            with torch.inference_mode():
                model.generate(**inputs, max_new_tokens=max_new_tokens, streamer=Streamer(),
                               past_key_values=cache())
        except Exception as err:  # handed to the caller's thread
            events.put(err)
            events.put(None)

    start = time.perf_counter()
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while (event := events.get()) is not None:
            if isinstance(event, Exception):
                raise event
            out, tokens, at = event
            yield out.strip(), (at - start) * 1000, tokens
    finally:
        thread.join()


def compare_sources(run_ids: list[str], root: str | None = None, int8: bool = False) -> list[tuple[str, str]]:
    """(explanation, model spec) for the dense model and each chosen run, dense first; with ``int8``
    also the first run with int8 Linear weights (``int8:<folder>``, see :class:`ModelCache`).

    The dense model is the fine-tuned one the first run was pruned from (a decoder-only LM's: the offline model
    itself).

    Raises:
        ValueError: If no run is chosen or a run is unknown.
    """
    if not run_ids:
        raise ValueError("Choose at least one run to compare with its dense model.")
    runs = [get_run(r, root) for r in run_ids]
    if len({r.metrics.get("kind") == "lm" for r in runs}) > 1:
        raise ValueError("Compare decoder-only LM runs with each other, and NASH runs with each other: they have "
                         "different dense models.")
    dense = runs[0].metrics.get("dense_finetune") or {}
    dense_spec = dense.get("path") or runs[0].metrics["model"]
    sources = [(f"dense: {runs[0].metrics['model']}", dense_spec)] + [(_explain(r), str(r.path)) for r in runs]
    if int8 and runs[0].metrics.get("settings", {}).get("quantize", "none") == "none":
        sources.append((_explain(runs[0]) + ", **int8 Linear weights**", INT8 + str(runs[0].path)))
    return sources


def task_example(task: str, shared: str | None = None, index: int | None = None, seed: int | None = None) -> Example:
    """One example of the task's evaluation split (test for summarization and rotten_tomatoes,
    validation for GLUE, whose test labels are hidden): ``index``, or a random one.

    Raises:
        ValueError: For an unknown task or unreadable data.
    """
    spec = get_task(task)
    examples = _first_examples(task, spec.eval_split, data_dir_for(task, shared))
    if not examples:
        raise ValueError(f"The {spec.eval_split} split of {task} is empty.")
    if index is None:
        index = random.Random(seed).randrange(len(examples))
    return examples[index % len(examples)]


@functools.lru_cache(maxsize=16)
def _first_examples(task: str, split: str, data_dir) -> tuple[Example, ...]:
    """The first 500 examples of a split, read once per process (the example button is clicked often)."""
    return tuple(load_split(task, split, data_dir=data_dir, limit=500))


def score_against_reference(task: str, prediction: str, example: Example) -> str:
    """One output scored against its example's reference, as a short line: ROUGE-1/2/L F1
    (percent) for summarization, right or wrong for classification, absolute error for
    regression (STS-B). A label or score is given as the scorer reads it (WordPiece decodes
    "not_equivalent" as "not _ equivalent" and "3.8" as "3. 8": ``scoring._parse_prediction``).

    Raises:
        ValueError: For an unknown task, or an example without a label.
    """
    from explorer.evaluation.scoring import _parse_prediction

    spec = get_task(task)
    if spec.kind == "summarization":
        scores = compute_metrics(spec, [prediction], [example])
        return "vs reference: " + ", ".join(f"{k} {scores[k]:.1f}" for k in ("rouge1", "rouge2", "rougeL"))
    if example.label is None:
        raise ValueError("This example has no gold label to compare with.")
    parsed = _parse_prediction(spec, prediction)
    if spec.kind == "regression":
        if parsed == INVALID_LABEL:
            return f"vs reference {example.label:.2f}: no score read (counts as {INVALID_LABEL})"
        return f"read as {parsed:g}, vs reference {example.label:.2f}: absolute error {abs(parsed - example.label):.2f}"
    read = repr(spec.label_words[parsed]) if parsed != INVALID_LABEL else "no label"
    return f"read as {read}, reference {example.target!r}: " + ("correct" if parsed == example.label else "wrong")
