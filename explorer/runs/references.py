"""The shipped reference runs (``assets/reference_runs*``: results only) and the papers' reported points."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from explorer.runs.points import REPORTED_COLUMNS, runs_table
from explorer.runs.store import list_runs, runs_signature
from explorer.paths import ASSETS



def reference_folders() -> list[Path]:
    """The folders of shipped reference runs: ``assets/reference_runs`` (rotten_tomatoes, made by
    ``scripts/reference_runs.sh``) and ``assets/reference_runs_*`` (e.g. the SAMSum method
    comparison of ``scripts/samsum_comparison.sh``), each with its own ``provenance.json``."""
    return sorted(f for f in ASSETS.glob("reference_runs*") if f.is_dir())


def reference_table(task: str | None = None, metric: str | None = None) -> pd.DataFrame:
    """The reference runs shipped in ``assets/`` (measured by this project's scripts; see
    :func:`reference_folders`), their provenance in the ``source`` column. Built again only when a
    reference folder changed (``runs_signature``); the table is shared and must not be modified. ``metric``: as
    in ``runs_table``."""
    folders = reference_folders()
    key = (task, metric, tuple((f, runs_signature(f)) for f in folders))
    if key not in _TABLES:
        if len(_TABLES) >= 32:  # every task and both signatures fit; more means the folders changed
            _TABLES.clear()
        _TABLES[key] = _reference_table(folders, task, metric)
    return _TABLES[key]


_TABLES: dict[tuple, pd.DataFrame] = {}


def _reference_table(folders: list[Path], task: str | None, metric: str | None = None) -> pd.DataFrame:
    tables = []
    for folder in folders:
        try:
            prov = json.loads((folder / "provenance.json").read_text())
            source = f"reference run: {prov['command']}, {prov['date']}, commit {prov['commit']}"
        except (OSError, json.JSONDecodeError, KeyError):
            source = f"reference run (assets/{folder.name})"
        tables.append(runs_table([(r.run_id, r.metrics) for r in list_runs(folder)], reference=source, metric=metric))
    tables = [t for t in tables if not t.empty]
    table = pd.concat(tables, ignore_index=True) if tables else runs_table([])
    return table if task is None else table[table["task"] == task].reset_index(drop=True)


def reference_floor(task: str) -> dict | None:
    """The task's constant-predictor floor shipped with its NASH reference runs
    (``assets/reference_runs_nash_<task>/floor.json``, written by ``scripts/nash_tables.py --ship``:
    ``{"task", "metric", "text", "of", "score", "dense", "diff", "low", "high", "n"}``: the score of writing
    the training set's majority label, or mean score, for every evaluation example, and dense's paired
    bootstrap interval above it), or None when none is shipped or it cannot be read."""
    path = ASSETS / f"reference_runs_nash_{task}" / "floor.json"
    try:
        floor = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return floor if isinstance(floor, dict) and floor.get("task") == task and "score" in floor else None


def reported_points() -> pd.DataFrame:
    """Published trade-offs from ``assets/reported_points.json`` (relative numbers, each with its source)."""
    path = ASSETS / "reported_points.json"
    points = json.loads(path.read_text())["points"] if path.exists() else []
    return pd.DataFrame(points, columns=REPORTED_COLUMNS)
