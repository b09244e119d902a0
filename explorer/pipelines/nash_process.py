"""A prune in a child process (``python -m explorer.pipelines.nash_process SETTINGS_JSON OUT [nash|lm]``: a NASH
prune, or a decoder-only LM's with ``lm``), so that
the app's own process stays free to answer every other session while it trains (the child also runs
at a lower CPU priority, ``lower_priority``).

Run in the app's process, the training loop's Python steps share one interpreter lock with the Gradio
server and every request of other sessions; the load benchmark (``scripts/bench_load.py``) measured the
Pareto endpoint at a p95 of 3.8 s that way (0.03-0.07 s alone). In a child process it competes for the
cores only. The child reports each progress message as one line ``PROGRESS [fraction, message]`` and an
error as one line ``error: <message>`` with exit status 2; the parent forwards progress, turns the error
into ``ValueError`` and, on cancel, kills the child and removes what the run had begun.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from explorer.paths import REPOSITORY
from explorer.pipelines.nash_settings import Cancelled, PruneSettings

PROGRESS = "PROGRESS "
Progress = Callable[[float, str], None]


def prune_in_subprocess(settings, out_dir: str | os.PathLike, progress: Progress | None = None,
                        cancel: threading.Event | None = None) -> dict:
    """Run :func:`explorer.pipelines.nash.run_prune` (for ``PruneSettings``) or
    :func:`explorer.pipelines.lm_prune.run_lm_prune` (for ``LMPruneSettings``) into ``out_dir`` in a child
    process; returns its metrics (``metrics.json``).

    Args:
        settings: What to run (every field goes to the child as JSON).
        out_dir: The run folder (must not exist or be empty).
        progress: ``progress(fraction in [0, 1], message)`` for each of the child's progress messages.
        cancel: When set, the child is killed within 0.2 s and its work folder removed.

    Raises:
        ValueError: With the child's one-line error (bad data, model, settings, an unwritable folder).
        Cancelled: When ``cancel`` was set; nothing of the run is left.
    """
    out_dir = Path(out_dir).resolve()
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="prune-settings-", delete=False) as f:
        f.write(json.dumps(asdict(settings)))
    env = {**child_environment(),
           "PYTHONPATH": os.pathsep.join([str(REPOSITORY)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    try:
        job = "nash" if isinstance(settings, PruneSettings) else "lm"
        child = subprocess.Popen([sys.executable, "-m", "explorer.pipelines.nash_process", f.name, str(out_dir), job],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        lower_priority(child.pid)
        return _follow(child, out_dir, progress, cancel)
    finally:
        os.unlink(f.name)


PARENT = "EXPLORER_PARENT_PID"  # set in a training child's environment: the process that waits for it


def child_environment() -> dict[str, str]:
    """The environment of a training child: this one, unbuffered output, and ``EXPLORER_PARENT_PID``
    so that the child ends when this process does (:func:`exit_with_parent`)."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", PARENT: str(os.getpid())}


def exit_with_parent(interval_s: float = 1.0) -> None:
    """In a training child started with :func:`child_environment`: end this process (as a crash would,
    ``os._exit``) within ``interval_s`` of its parent's end, so that stopping or killing the app never
    leaves a training job running without anyone to report to. Every stage of a run is safe against
    such an end (``tests/test_crash.py``). Does nothing without ``EXPLORER_PARENT_PID``."""
    expected = os.environ.get(PARENT)
    if not expected:
        return

    def watch() -> None:
        while True:
            if os.getppid() != int(expected):
                os._exit(3)
            time.sleep(interval_s)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


NICE = 10  # training children yield the cores to the app's requests (a Linux nice value; 0 is normal)


def lower_priority(pid: int) -> None:
    """Give a training child a lower CPU priority (``nice`` ``NICE``), set before it imports torch, so its
    threads inherit it: on 2 cores the app's own requests (Pareto, Compare) get the CPU first. Ignored
    where the system does not allow it."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, NICE)
    except (OSError, AttributeError):
        pass


def _follow(child: subprocess.Popen, out_dir: Path, progress: Progress | None, cancel) -> dict:
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in child.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    tail: list[str] = []
    while True:
        if cancel is not None and cancel.is_set():
            child.kill()
            child.wait()
            _remove_begun(out_dir)
            raise Cancelled("Run cancelled; nothing was saved (earlier runs are untouched).")
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            break
        if line.startswith(PROGRESS):
            if progress is not None:
                fraction, message = json.loads(line[len(PROGRESS):])
                progress(fraction, message)
        else:
            tail = (tail + [line.rstrip()])[-20:]
    if child.wait() != 0:
        _remove_begun(out_dir)
        errors = [t for t in tail if t.startswith("error: ")]
        raise ValueError(errors[-1][len("error: "):] if errors else "The prune failed: " + " | ".join(tail[-3:]))
    return json.loads((out_dir / "metrics.json").read_text())


def _remove_begun(out_dir: Path) -> None:
    """What a killed or failed child began beside ``out_dir``: its work folder, lock and temporaries."""
    from explorer.runs.stages import RunFolder, remove_stale_temporaries

    shutil.rmtree(RunFolder.work_folder(out_dir), ignore_errors=True)
    if out_dir.parent.is_dir():
        remove_stale_temporaries(out_dir)
    (out_dir.parent / f".{out_dir.name}.lock").unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    """The child: run the prune of the settings file ``argv[0]`` into ``argv[1]``; ``argv[2]`` is ``nash``
    (the default) or ``lm``."""
    exit_with_parent()
    document = json.loads(Path(argv[0]).read_text())

    def say(fraction: float, message: str) -> None:
        print(PROGRESS + json.dumps([fraction, message]), flush=True)

    try:
        if (argv[2] if len(argv) > 2 else "nash") == "lm":
            from explorer.pipelines.lm_prune import LMPruneSettings, run_lm_prune

            run_lm_prune(LMPruneSettings(**document), argv[1], progress=say)
        else:
            from explorer.pipelines.nash import run_prune

            run_prune(PruneSettings.from_dict(document), argv[1], progress=say, keep_unfinished=False)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"error: {err}".splitlines()[0], flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
