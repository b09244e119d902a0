"""What the explorer's tabs call: plain functions, tested without the UI.

The UI turns the ``ValueError``s raised here into ``gr.Error`` messages; nothing in
this module knows Gradio.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pandas as pd

from .finetune import FinetuneSettings
from .models import OFFLINE_MODELS, LoadedModel, load_model, peek_decoder_layers
from .pareto import make_pareto_figure, runs_table
from .pipeline import PruneSettings, run_prune
from .runs import Run, get_run, list_runs, new_run_dir, runs_root
from .tasks import get_task, list_tasks, task_folder

METHODS = {"NASH (training-free)": "nash-training-free"}


def model_choices() -> list[tuple[str, str]]:
    """(label, spec) pairs for the model picker: offline models first, marked."""
    return [(f"{name} (offline)", name) for name in OFFLINE_MODELS]


def task_choices() -> list[str]:
    """Every registered task name."""
    return list_tasks()


def decoder_layer_count(model: str) -> int:
    """Decoder layers of a model spec (for the slider's maximum).

    Raises:
        ValueError: For unknown, unsupported or unreachable models.
    """
    return peek_decoder_layers(model)


def start_prune(settings: PruneSettings, root: str | None = None,
                progress: Callable[[float, str], None] | None = None) -> Run:
    """Run training-free NASH into a new run folder of the runs store and return the run.

    Raises:
        ValueError: As ``pipeline.run_prune`` does.
    """
    store = runs_root(root)
    label = f"s{settings.encoder_sparsity:g}-k{settings.decoder_layers}-{settings.layer_selection}"
    folder = new_run_dir(store, settings.model, settings.task, label)
    run_prune(settings, folder, progress=progress)
    return get_run(folder.name, store)


def pareto_view(task: str, axis: str = "latency_ms", color: str = "kind", root: str | None = None):
    """(figure, table) of every run on ``task``.

    Raises:
        ValueError: For an unknown task or axis.
    """
    get_task(task)
    table = runs_table([(r.run_id, r.metrics) for r in list_runs(root)])
    table = table[table["task"] == task]
    if table.empty:
        return None, table
    return make_pareto_figure(table, axis, color=color), table


def _explain(run: Run) -> str:
    m = run.metrics
    return (f"{m['model']} on {m['task']}: {m['plan_summary']} "
            f"({m['encoder_sparsity_achieved'] * 100:.0f}% of encoder head and FFN parameters removed)")


class ModelCache:
    """Keeps recently used models in memory so the Compare tab does not reload them."""

    def __init__(self, size: int = 4):
        self._size, self._models, self._lock = size, {}, threading.Lock()

    def get(self, spec: str) -> LoadedModel:
        """The loaded model for a spec or run folder, loading it on first use."""
        with self._lock:
            if spec not in self._models:
                if len(self._models) >= self._size:
                    self._models.pop(next(iter(self._models)))
                self._models[spec] = load_model(spec)
            return self._models[spec]


MODELS = ModelCache()


def stream_generation(loaded: LoadedModel, text: str, max_new_tokens: int = 64) -> Iterator[tuple[str, float, int]]:
    """Greedy generation that yields ``(text so far, elapsed ms, tokens so far)`` as tokens arrive.

    Raises:
        ValueError: If ``text`` is empty.
    """
    from transformers import TextIteratorStreamer

    from .measure import new_cache

    if not text or not text.strip():
        raise ValueError("Enter some text (or pick an example) to generate from.")
    enc = loaded.tokenizer([text], return_tensors="pt", truncation=True, max_length=512)
    streamer = TextIteratorStreamer(loaded.tokenizer, skip_special_tokens=True)
    kwargs = dict(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], max_new_tokens=max_new_tokens,
                  do_sample=False, num_beams=1, streamer=streamer, past_key_values=new_cache())
    start = time.perf_counter()
    thread = threading.Thread(target=loaded.model.generate, kwargs=kwargs, daemon=True)
    thread.start()
    out, tokens = "", 0
    for piece in streamer:
        out += piece
        tokens += 1
        yield out.strip(), (time.perf_counter() - start) * 1000, tokens
    thread.join()


def compare_sources(run_ids: list[str], root: str | None = None) -> list[tuple[str, str]]:
    """(explanation, model spec) for the dense model and each chosen run, dense first.

    The dense model is the fine-tuned one the first run was pruned from.

    Raises:
        ValueError: If no run is chosen or a run is unknown.
    """
    if not run_ids:
        raise ValueError("Choose at least one run to compare with its dense model.")
    runs = [get_run(r, root) for r in run_ids]
    dense = runs[0].metrics.get("dense_finetune") or {}
    dense_spec = dense.get("path") or runs[0].metrics["model"]
    return [(f"dense: {runs[0].metrics['model']}", dense_spec)] + [(_explain(r), str(r.path)) for r in runs]


def runs_dataframe(root: str | None = None) -> pd.DataFrame:
    """All runs as a table for display and CSV download."""
    return runs_table([(r.run_id, r.metrics) for r in list_runs(root)])


def prune_settings(model: str, task: str, sparsity: float, layers: int, selection: str, recovery_steps: int,
                   device: str, eval_samples: int, data_dir: str | None = None,
                   finetune_steps: int = 250) -> PruneSettings:
    """Settings of one Prune-tab request (the UI's widgets map one to one onto these)."""
    settings = PruneSettings(model=model.strip(), task=task, encoder_sparsity=float(sparsity),
                             decoder_layers=int(layers), layer_selection=selection,
                             recovery_steps=int(recovery_steps), eval_samples=int(eval_samples),
                             device=device, data_dir=data_dir or None,
                             finetune=FinetuneSettings(max_steps=int(finetune_steps)))
    settings.check()
    return settings


def data_dir_for(task: str, shared: str | None) -> str | None:
    """``shared`` when it holds a folder for ``task`` (as ``../shared/data`` does), else None
    (the task then loads from its offline package or the Hub)."""
    return shared if shared and task_folder(task, shared) is not None else None


def list_runs_for_ui(root: str | None = None) -> list[Run]:
    """Runs, newest first."""
    return list(reversed(list_runs(root)))


def export_csv(table: pd.DataFrame, root: str | None = None) -> str:
    """Write the runs table as CSV beside the runs folder; returns the path."""
    path = runs_root(root).parent / "downloads" / "runs.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return str(path)
