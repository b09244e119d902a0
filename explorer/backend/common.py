"""What every tab shares: model and task choices, cancel tokens, the in-memory model cache, run lookup."""

from __future__ import annotations

import threading

from explorer.data.splits import task_folder
from explorer.data.tasks import list_tasks
from explorer.models.loading import OFFLINE_MODELS, LoadedModel, load_model, peek_decoder_layers
from explorer.paths import cache_root, os_error_message  # noqa: F401 (re-exported: ui/errors.py)
from explorer.pipelines.nash_settings import Cancelled  # noqa: F401 (re-exported: ui/errors.py)
from explorer.runs.references import reference_folders
from explorer.runs.store import Run, get_run, list_runs, runs_root, zip_run


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


class CancelTokens:
    """One cancel flag per browser session: the Prune button makes a fresh one, the Cancel
    button sets it, and the running job stops at its next progress report (within one
    training step or generation batch)."""

    def __init__(self):
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def new(self, key: str) -> threading.Event:
        """A fresh, unset flag for ``key`` (replacing any earlier one)."""
        with self._lock:
            self._events[key] = threading.Event()
            return self._events[key]

    def cancel(self, key: str) -> bool:
        """Set the flag of ``key``; False when that session has no job."""
        with self._lock:
            event = self._events.get(key)
        if event is None:
            return False
        event.set()
        return True


CANCEL = CancelTokens()


def find_run(run_id: str, root: str | None = None) -> Run:
    """A run of the user's runs folder or a shipped reference run, by its folder name.

    Raises:
        ValueError: If neither has it.
    """
    for folder in [runs_root(root), *reference_folders()]:
        for run in list_runs(folder):
            if run.run_id == run_id:
                return run
    raise ValueError(f"No run named {run_id!r}: pick one from the list (your runs and the reference runs).")


class ModelCache:
    """Keeps recently used models in memory so the Compare tab does not reload them."""

    def __init__(self, size: int = 4):
        self._size, self._models, self._lock = size, {}, threading.Lock()

    def get(self, spec: str) -> LoadedModel:
        """The loaded model for a spec or run folder, loading it on first use (a decoder-only LM through
        ``explorer.models.lm.load_lm``); ``int8:<spec>`` is that model with int8 Linear weights
        (``pruning.quantization``, CPU)."""
        with self._lock:
            if spec not in self._models:
                if len(self._models) >= self._size:
                    self._models.pop(next(iter(self._models)))
                if spec.startswith(INT8):
                    from dataclasses import replace

                    from pruning import quantize

                    fp32 = load_model(spec[len(INT8):])
                    self._models[spec] = replace(fp32, model=quantize(fp32.model, "int8"))
                else:
                    from explorer.models.lm import is_lm_spec, load_lm

                    self._models[spec] = load_lm(spec) if is_lm_spec(spec) else load_model(spec)
            return self._models[spec]


INT8 = "int8:"  # model spec prefix of the Compare tab's int8 twin of a run
MODELS = ModelCache()


def run_zip(run_id: str, root: str | None = None) -> str:
    """A zip of one run's folder (model, plan, metrics) that loads with ``pruning.load_pruned``
    once unzipped.

    Raises:
        ValueError: For an unknown run.
    """
    return str(zip_run(get_run(run_id, root), cache_root() / "downloads" / f"{run_id}.zip"))


def data_dir_for(task: str, shared: str | None) -> str | None:
    """``shared`` when it holds a folder for ``task`` (as ``../shared/data`` does), else None
    (the task then loads from its offline package or the Hub)."""
    return shared if shared and task_folder(task, shared) is not None else None


def list_runs_for_ui(root: str | None = None) -> list[Run]:
    """The user's runs, newest first."""
    return list(reversed(list_runs(root)))


def device_choices() -> list[str]:
    """The devices a run can use here: the CPU, and CUDA when a GPU is visible."""
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
