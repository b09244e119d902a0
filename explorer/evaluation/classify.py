"""A classifier's predictions, task metrics and forward latency on tokenized examples."""

from __future__ import annotations

import torch
from torch import nn

from explorer.data.tasks import Example, get_task
from explorer.evaluation.latency import median_ms, random_input_ids


def example_label(example: Example, i: int, regression: bool) -> int | float:
    """The label of example ``i`` for a classifier: a class id, or a float score with ``regression``.

    Raises:
        ValueError: For an example without raw input texts or without a label.
    """
    if not example.texts or example.label is None:
        raise ValueError(f"Example {i} has no input texts or no label; EFTNAS needs a labelled classification or "
                         f"regression split.")
    return float(example.label) if regression else int(example.label)


def tokenize(tokenizer, examples: list[Example], max_tokens: int, *, regression: bool = False) -> list[dict]:
    """Examples -> rows with ``input_ids``, ``attention_mask`` (and ``token_type_ids``) and ``labels``
    (class ids, or float scores with ``regression``); sentence pairs are encoded as pairs (BERT's
    [SEP] between them). For evaluation sets; training sets go through :func:`training_dataset`.

    Raises:
        ValueError: For an example without raw input texts or without a label.
    """
    rows = []
    for i, ex in enumerate(examples):
        label = example_label(ex, i, regression)
        encoded = tokenizer(*ex.texts[:2], truncation=True, max_length=max_tokens)
        rows.append({**{k: list(v) for k, v in encoded.items()}, "labels": label})
    return rows


@torch.no_grad()
def predict(model: nn.Module, tokenizer, rows: list[dict], *, batch_size: int = 64, device: str = "cpu") -> list:
    """Predicted class ids (or scores, for a one-output regression head) for tokenized rows
    (padding per batch, batches of similar length)."""
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer)
    model = model.to(device).eval()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    out: dict[int, float | int] = {}
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        batch = collate([{k: v for k, v in rows[i].items() if k != "labels"} for i in index])
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        values = logits[:, 0].float().tolist() if logits.shape[-1] == 1 else logits.argmax(-1).tolist()
        out.update(zip(index, values))
    return [out[i] for i in range(len(rows))]


def score(task: str, model: nn.Module, tokenizer, rows: list[dict], *, device: str = "cpu") -> dict[str, float]:
    """The task's metrics (in %, as the NASH runs report them; correlations x100 for STS-B) of
    ``model`` on ``rows``."""
    from explorer.evaluation import metrics as m

    spec = get_task(task)
    predictions = predict(model, tokenizer, rows, device=device)
    labels = [r["labels"] for r in rows]
    functions = {"accuracy": m.accuracy, "mcc": m.mcc, "f1": m.f1, "pearson": m.pearson, "spearman": m.spearman}
    return {name: round(functions[name](labels, predictions), 2) for name in spec.higher_is_better if name in functions}


def classifier_latency_ms(model: nn.Module, *, seq_len: int = 128, batch_size: int = 1, device: str = "cpu",
                          repeats: int = 10, warmup: int = 3) -> float:
    """Median ms of one forward pass of a classifier on ``batch_size`` x ``seq_len`` random tokens
    (``explorer.evaluation.latency``'s seeded inputs without special tokens and its timer: warm-up,
    CUDA synchronised, median of ``repeats``)."""
    dev = torch.device(device)
    model = model.to(dev).eval()
    ids = random_input_ids(model, batch_size, seq_len, dev)
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        return round(median_ms(lambda: model(input_ids=ids, attention_mask=mask), repeats=repeats, warmup=warmup,
                                device=dev), 3)
