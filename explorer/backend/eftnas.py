"""What the EFTNAS tab calls: list and open runs (their front, search space and importance),
choose the best subnetwork for a budget, classify with it beside the dense model, add it to the
Pareto front, and train a new super-network in a child process. No Gradio here.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from explorer.data.tasks import get_task, list_tasks
from explorer.figures.eftnas import front_figure, importance_figure, search_space_figure
from explorer.pipelines.eftnas_process import train_in_subprocess
from explorer.pipelines.eftnas_settings import EftnasSettings
from explorer.runs.eftnas_runs import (add_to_pareto, choose, eftnas_root, extract_for_budget, has_supernetwork,
                                       list_eftnas_runs, load_run)
from nas.records import FrontPoint, RunSummary

__all__ = ["CLASSIFICATION_TASKS", "add_to_pareto", "choose_subnetwork", "classify_side_by_side", "list_eftnas_runs",
           "open_run", "train"]

CLASSIFICATION_TASKS = [t for t in list_tasks() if get_task(t).kind == "classification"]


def open_run(label: str, root: str | None = None) -> dict:
    """A run by its label in :func:`list_eftnas_runs`: ``{"folder", "summary", "front_figure",
    "space_figure" (None without a saved search space), "importance_figure", "note"}``.

    Raises:
        ValueError: For an unknown label.
    """
    from nas.search_space import SearchSpace
    from nas.supernet import SPACE_FILE

    folder = list_eftnas_runs(root).get(label)
    if folder is None:
        raise ValueError(f"No EFTNAS run {label!r}.")
    summary = load_run(folder)
    path = folder / "supernet" / SPACE_FILE
    space = SearchSpace.from_json(path) if path.is_file() else None
    weights = "with super-network weights" if has_supernetwork(folder) else "results only (no weights)"
    note = (f"{summary.model} on {summary.task}, {weights}; dense {summary.metric} "
            f"{summary.dense['eval'][summary.metric]:.2f} at {summary.dense['gmacs']:.3f} GMACs; "
            f"{len(summary.front)} subnetworks on the front; trained on {summary.device} in "
            f"{summary.wall_s / 60:.1f} min.")
    return {"folder": str(folder), "summary": summary, "front_figure": front_figure(summary),
            "space_figure": search_space_figure(space) if space else None,
            "importance_figure": importance_figure(folder), "note": note}


def choose_subnetwork(summary: RunSummary, budget: str, value: float) -> tuple[FrontPoint, object, str]:
    """``(front point, front figure with it circled, description)`` of the best subnetwork within a
    budget (``budget``: ``macs`` with ``value`` in % of dense MACs, or ``latency`` in ms).

    Raises:
        ValueError: For an unknown budget kind or one no subnetwork fits.
    """
    point = choose(summary, budget, value)
    metric = summary.metric
    dense_q = summary.dense_quality
    text = (f"**Best subnetwork within {value:g}{' %' if budget == 'macs' else ' ms'}**: heads per layer "
            f"{point.head_widths}, FFN neurons per layer {point.ffn_widths}; {100 * point.macs_fraction:.1f}% of dense "
            f"MACs ({point.gmacs:.3f} GMACs), {metric} {point.eval[metric]:.2f} "
            f"({100 * point.eval[metric] / dense_q:.1f}% of dense), {point.latency_ms:.2f} ms when measured.")
    return point, front_figure(summary, point), text


def train(model: str, task: str, *, device: str = "auto", train_samples: int | None = None,
          finetune_steps: int = 300, movement_steps: int = 200, supernet_steps: int = 300,
          data_dir: str | None = None, root: str | None = None, progress: Callable[[float, str], None] | None = None,
          cancel: threading.Event | None = None) -> tuple[Path, RunSummary]:
    """Train a super-network in a child process into a new folder of the runs folder's ``eftnas/``
    (named by time, model and task); returns ``(folder, run summary)``.

    Raises:
        ValueError: For bad settings, a failed child (its message) or a cancelled run.
    """
    settings = EftnasSettings(model=model, task=task, data_dir=data_dir if task != "rotten_tomatoes" else None,
                              train_samples=train_samples or None, finetune_steps=finetune_steps,
                              movement_steps=movement_steps, supernet_steps=supernet_steps, device=device)
    out = eftnas_root(root) / f"{time.strftime('%Y%m%d-%H%M%S')}__{model.split('/')[-1]}__{task}"
    return out, train_in_subprocess(settings, out, progress, cancel)


def classify_side_by_side(directory: str | os.PathLike, point: FrontPoint, text: str) -> list[tuple[str, str, float]]:
    """``[(model, label, probability)]`` of the dense model and the subnetwork on ``text``; for a
    regression task (STS-B) ``(model, "score", predicted score)``. A sentence pair is typed as
    ``first sentence ||| second sentence``.

    Raises:
        ValueError: For empty text or a run without weights.
    """
    from nas.supernet import load_classifier_weights

    if not text or not text.strip():
        raise ValueError("Type a sentence to classify.")
    directory = Path(directory)
    if not has_supernetwork(directory):
        raise ValueError("This run has no weights (reference runs ship results only).")
    from transformers import AutoTokenizer

    summary = load_run(directory)
    words = get_task(summary.task).label_words
    tokenizer = AutoTokenizer.from_pretrained(directory / "supernet")
    sub, _, _ = extract_for_budget(directory, point)
    dense = load_classifier_weights(directory / "dense")
    parts = [p.strip() for p in text.split("|||")][:2]
    encoded = tokenizer(*parts, truncation=True, max_length=128, return_tensors="pt")
    out = []
    for name, model in (("dense", dense), (f"subnetwork ({100 * point.macs_fraction:.0f}% MACs)", sub)):
        with torch.inference_mode():
            logits = model(**encoded).logits[0]
        if logits.numel() == 1:
            out.append((name, "score", round(float(logits[0]), 4)))
            continue
        probs = torch.softmax(logits, -1)
        out.append((name, words[int(probs.argmax())], round(float(probs.max()), 4)))
    return out
