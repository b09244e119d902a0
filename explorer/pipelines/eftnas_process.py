"""EFTNAS in a child process (``python -m explorer eftnas``): importing NNCF patches torch for the
whole process, so the explorer itself never imports it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from explorer.pipelines.eftnas_settings import EftnasSettings
from explorer.runs.eftnas_runs import load_run
from nas.records import RunSummary
from explorer.paths import REPOSITORY
from explorer.pipelines.nash_process import child_environment, lower_priority

Progress = Callable[[float, str], None]


def train_in_subprocess(settings: EftnasSettings, out_dir: str | os.PathLike,
                        progress: Progress | None = None, cancel=None) -> RunSummary:
    """Run :func:`run_eftnas` as ``python -m explorer eftnas`` in a child process, forwarding its
    progress lines. A child process because importing NNCF patches torch for the whole process
    (see ``nas.supernet.load_classifier_weights``); the explorer itself never imports it.

    Raises:
        ValueError: With the child's error message if it fails, or if ``cancel`` is set.
    """
    import subprocess
    import sys
    import tempfile

    if settings.data_dir is None and settings.task != "rotten_tomatoes":
        raise ValueError(f"{settings.task} needs local data (a data folder with it) offline.")
    # Every setting goes to the child as one JSON document (EftnasSettings.from_json), so none can be lost
    # in a hand-built argument list.
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="eftnas-settings-", delete=False) as f:
        f.write(settings.to_json())
    cmd = [sys.executable, "-m", "explorer", "eftnas", "--settings-json", f.name, "--out", str(out_dir), "--overwrite"]
    root = REPOSITORY
    try:
        child = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env=child_environment())
        lower_priority(child.pid)  # the app's requests first
        return _follow(child, out_dir, progress, cancel)
    finally:
        os.unlink(f.name)


def _follow(child, out_dir, progress: Progress | None, cancel) -> RunSummary:
    """Forward a child ``eftnas`` process's progress lines; its run, or its error as ValueError."""
    import re

    tail: list[str] = []
    for line in child.stdout:
        tail = (tail + [line.rstrip()])[-20:]
        match = re.match(r"\[\s*([\d.]+)%\] (.*)", line.strip())
        if match and progress is not None:
            progress(float(match.group(1)) / 100.0, match.group(2))
        if cancel is not None and cancel.is_set():
            child.kill()
            child.wait()
            raise ValueError("Cancelled; nothing was written.")
    if child.wait() != 0:
        errors = [t for t in tail if t.startswith("error:")]
        raise ValueError(errors[-1][len("error: "):] if errors else "EFTNAS failed: " + " | ".join(tail[-3:]))
    return load_run(out_dir)
