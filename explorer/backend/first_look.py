"""What the "Start here" button calls: the first look of a new visitor, one click from a live
side-by-side generation of a dense and a pruned model.

It runs the Prune tab's default (``explorer.backend.prune.DEFAULTS``: training-free NASH on
MiniLM2MiniLM, rotten_tomatoes) end to end, or reuses a finished run of exactly those settings from the
runs folder (a Space's second visitor waits for nothing), and picks a test example for the Compare tab.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import asdict

from explorer.backend import common, compare, prune
from explorer.data.tasks import Example
from explorer.pipelines.nash_settings import PruneSettings
from explorer.runs.store import Run, list_runs

# Settings that say how a run was executed, not what it computed: a default run on another device counts.
_EXECUTION = ("device",)


def default_settings(shared: str | None = None, device: str | None = None) -> PruneSettings:
    """The Prune tab's default settings (with ``shared`` data when it holds the task).

    Args:
        shared: A folder of local datasets (``../shared/data``), or None.
        device: Device (default: the Prune tab's default, the last of ``common.device_choices()``).
    """
    d = prune.DEFAULTS
    return prune.prune_settings(d["model"], d["task"], d["sparsity"], d["layers"], d["selection"], d["recovery"],
                                device or common.device_choices()[-1], d["eval_samples"],
                                data_dir=common.data_dir_for(d["task"], shared), finetune_steps=d["finetune_steps"],
                                input_tokens=d["input_tokens"], new_tokens=d["new_tokens"], repeats=d["repeats"],
                                method=d["method"], gate_steps=d["gate_steps"], quantize=d["quantize"])


def find_run(settings: PruneSettings, root: str | None = None) -> Run | None:
    """The newest finished run in the runs folder made with ``settings`` (the device aside), or None."""
    def key(values: dict) -> dict:
        return {k: v for k, v in json.loads(json.dumps(values, default=str)).items() if k not in _EXECUTION}

    wanted = key(asdict(settings))
    for run in reversed(list_runs(root)):
        if key(run.metrics.get("settings") or {}) == wanted:
            return run
    return None


def start_here(root: str | None = None, shared: str | None = None,
               progress: Callable[[float, str], None] | None = None,
               cancel: threading.Event | None = None) -> tuple[Run, Example, bool]:
    """The default prune, run now or reused, and a random test example of its task.

    Returns:
        ``(run, example, reused)``: ``reused`` is True when the run was already in the runs folder.

    Raises:
        ValueError: As ``explorer.backend.prune.start_prune`` does (e.g. the offline model's package
            is missing, or the rotten_tomatoes corpus cannot be fetched).
        Cancelled: When ``cancel`` was set during the run; nothing is saved.
    """
    settings = default_settings(shared)
    run = find_run(settings, root)
    reused = run is not None
    if run is None:
        run = prune.start_prune(settings, root, progress=progress, cancel=cancel)
    return run, compare.task_example(settings.task, shared), reused
