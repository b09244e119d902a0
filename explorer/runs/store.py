"""The runs store: every pruning run as a folder that outlives the process.

A run folder is exactly what ``explorer.pipelines.nash.run_prune`` writes (the pruned model,
``plan.json``, ``metrics.json``), so a run made from the command line with
``--out <runs folder>/<name>`` is listed like one made in the UI. Folders are
written atomically (temporary sibling + rename); hidden folders (``.name.*``, the
temporaries of an interrupted run) are never listed.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from explorer.paths import cache_root, slug
from pruning.atomic import atomic_write

METRICS_FILE = "metrics.json"


def runs_root(path: str | os.PathLike | None = None) -> Path:
    """The runs folder: ``path``, else ``EXPLORER_RUNS``, else ``<cache>/runs`` (created)."""
    root = Path(path or os.environ.get("EXPLORER_RUNS") or cache_root() / "runs").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def new_run_dir(root: Path, model: str, task: str, label: str) -> Path:
    """A fresh, not yet existing run folder name: ``<UTC time>__<model>__<task>__<label>``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = root / f"{stamp}__{slug(Path(model).name or model)}__{slug(task)}__{slug(label)}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


@dataclass(frozen=True)
class Run:
    """One finished run: its folder and its ``metrics.json``."""

    path: Path
    metrics: dict

    @property
    def run_id(self) -> str:
        """The folder name, unique within the runs folder."""
        return self.path.name


def runs_signature(root: str | os.PathLike | None = None) -> tuple:
    """What identifies the runs folder's content without reading it: for every visible folder, the
    inode, size and modification time (ns) of its ``metrics.json`` and whether it has a ``plan.json``.
    Run files are written atomically (a new file renamed into place), so any change to a run changes
    this. Costs a few ``stat`` calls per run (no file is read)."""
    entries = []
    with os.scandir(runs_root(root)) as folders:
        for folder in folders:
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            try:
                st = os.stat(os.path.join(folder.path, METRICS_FILE))
                metrics = (st.st_ino, st.st_size, st.st_mtime_ns)
            except OSError:
                metrics = None
            entries.append((folder.name, metrics, os.path.exists(os.path.join(folder.path, "plan.json"))))
    return tuple(sorted(entries))


_LISTED: dict[Path, tuple[tuple, list]] = {}  # runs folder -> (signature, runs): list_runs' memory


def list_runs(root: str | os.PathLike | None = None) -> list[Run]:
    """Every complete run in the runs folder, oldest first.

    A folder counts only if it has a readable ``metrics.json`` and a ``plan.json``;
    temporaries and broken folders are skipped (never raised on), so one bad folder
    cannot hide the others. The folder is read again only when :func:`runs_signature` changed
    (the app lists runs on nearly every click); the returned ``metrics`` dicts are shared between
    calls and must not be modified.
    """
    folder_root = runs_root(root)
    signature, key = runs_signature(folder_root), folder_root.resolve()
    remembered = _LISTED.get(key)
    if remembered is not None and remembered[0] == signature:
        return list(remembered[1])
    runs = []
    for folder in sorted(folder_root.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            metrics = json.loads((folder / METRICS_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if (folder / "plan.json").exists():
            runs.append(Run(folder, metrics))
    _LISTED[key] = (signature, runs)
    return list(runs)


def get_run(run_id: str, root: str | os.PathLike | None = None) -> Run:
    """The run with this folder name.

    Raises:
        ValueError: If there is no such complete run.
    """
    for run in list_runs(root):
        if run.run_id == run_id:
            return run
    raise ValueError(f"No run named {run_id!r} in {runs_root(root)}.")


def zip_run(run: Run, destination: str | os.PathLike | None = None) -> Path:
    """Zip a run folder (model, plan, metrics) so that, once unzipped, it loads with
    ``pruning.load_pruned``. Returns the zip path (default: beside the runs folder)."""
    destination = Path(destination or run.path.parent.parent / "downloads" / f"{run.run_id}.zip")
    destination.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(run.path.rglob("*")):
                if file.is_file():
                    archive.write(file, Path(run.run_id) / file.relative_to(run.path))

    atomic_write(destination, write)
    return destination


def delete_run(run_id: str, root: str | os.PathLike | None = None) -> None:
    """Remove one run folder.

    Raises:
        ValueError: If there is no such run.
    """
    shutil.rmtree(get_run(run_id, root).path)
