"""Quality of a model on a task split: generate, then score with the task's metrics."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from explorer.data.tasks import Example, get_task
from explorer.evaluation.latency import new_cache
from explorer.evaluation.scoring import compute_metrics


def generate_texts(model, tokenizer, sources: list[str], *, max_source_tokens: int, max_new_tokens: int,
                   batch_size: int = 16, num_beams: int = 1, device: str = "cpu",
                   progress: Callable[[float, str], None] | None = None) -> list[str]:
    """Generate one output text per source (greedy, or beam search with ``num_beams`` > 1).

    Args:
        sources: Input texts; inputs are truncated to ``max_source_tokens`` tokens.
        max_new_tokens: Upper bound on generated tokens per output.

    Raises:
        ValueError: If a source is empty or only white space.
    """
    for i, text in enumerate(sources):
        if not text or not text.strip():
            raise ValueError(f"Input {i} is empty; give some text to generate from.")
    model = model.to(device).eval()
    # Batches in order of input length, so each pads to similar lengths; outputs in the input order.
    lengths = [len(ids) for ids in tokenizer(sources, max_length=max_source_tokens, truncation=True)["input_ids"]]
    order = sorted(range(len(sources)), key=lambda i: lengths[i])
    outputs: list[str] = [""] * len(sources)
    for start in range(0, len(sources), batch_size):
        index = order[start:start + batch_size]
        enc = tokenizer([sources[i] for i in index], max_length=max_source_tokens, truncation=True, padding=True,
                        return_tensors="pt")
        enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        with torch.inference_mode():
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False,
                                 past_key_values=new_cache())
        for i, text in zip(index, tokenizer.batch_decode(ids, skip_special_tokens=True)):
            outputs[i] = text.strip()
        if progress:
            done = start + len(index)
            progress(min(1.0, done / len(sources)), f"generated {done}/{len(sources)}")
    return outputs


def evaluate_quality(model, tokenizer, task: str, examples: list[Example], *, split: str, device: str = "cpu",
                     batch_size: int = 16, num_beams: int = 1,
                     progress: Callable[[float, str], None] | None = None) -> dict:
    """Task metrics of ``model`` on ``examples``.

    Returns:
        ``{"metrics": {name: value}, "main_metric": name, "higher_is_better": {...},
        "split": split, "num_examples": n, "num_beams": b, "wall_s": s, "examples": first 3 outputs}``.

    Raises:
        ValueError: If ``examples`` is empty.
    """
    if not examples:
        raise ValueError(f"No {split} examples to evaluate on.")
    spec = get_task(task)
    start = time.perf_counter()
    predictions = generate_texts(model, tokenizer, [e.source for e in examples],
                                 max_source_tokens=spec.max_source_tokens, max_new_tokens=spec.max_target_tokens,
                                 batch_size=batch_size, num_beams=num_beams, device=device, progress=progress)
    metrics = compute_metrics(spec, predictions, examples)
    return {
        "metrics": metrics, "main_metric": spec.main_metric, "higher_is_better": spec.higher_is_better,
        "split": split, "num_examples": len(examples), "num_beams": num_beams,
        "wall_s": round(time.perf_counter() - start, 1), "distinct_outputs": len(set(predictions)),
        "predictions": predictions,
        "samples": [{"source": e.source[:300], "prediction": p, "reference": e.target}
                    for e, p in zip(examples[:3], predictions[:3])],
    }
