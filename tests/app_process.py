"""``python app.py`` as a child process on a free loopback port: how the app tests (``tests/test_app.py``)
and the app benchmarks (``scripts/bench_load.py``, ``scripts/bench_app.py``) start it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def folders_env(base: Path) -> dict[str, str]:
    """The app's runs folder ``base/runs``, cache ``base/cache`` and temporary folder ``base/tmp`` (made),
    so that a test's app touches nothing of the user's, and its cache is outside what Gradio serves by
    default, as ``~/.cache`` is."""
    (base / "tmp").mkdir(parents=True, exist_ok=True)
    return {"EXPLORER_RUNS": str(base / "runs"), "EXPLORER_CACHE": str(base / "cache"), "TMPDIR": str(base / "tmp")}


def start_app(env: dict[str, str], log: Path | None = None, timeout_s: float = 180.0,
              poll_s: float = 0.5) -> tuple[subprocess.Popen, str]:
    """Start ``python app.py`` (offline, no analytics, this environment plus ``env``) on a free port and
    wait until its page answers; returns (process, url).

    Args:
        env: Extra environment (e.g. :func:`folders_env`).
        log: File for the app's output (default: discarded).
        timeout_s: Longest wait for the page.
        poll_s: Seconds between tries (small when the start-up itself is being timed).

    Raises:
        RuntimeError: If the app exits or does not answer within ``timeout_s`` (with the log's tail).
    """
    port = free_port()
    full = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", **env, EXPLORER_PORT=str(port))
    with open(log, "w") if log else contextlib.nullcontext(subprocess.DEVNULL) as out:  # the child keeps its copy
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=full, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                tail = log.read_text()[-3000:] if log else "(output discarded)"
                raise RuntimeError(f"app.py did not start:\n{tail}") from None
            time.sleep(poll_s)


def stop_app(proc: subprocess.Popen) -> None:
    """Stop the app (SIGTERM, then wait)."""
    proc.terminate()
    proc.wait(timeout=30)
