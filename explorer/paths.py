"""Where things are: the repository's shipped assets, and the cache (fine-tuned models, wheels)
and runs the project writes.

Cache default: ``~/.cache/compression-explorer``; override with ``EXPLORER_CACHE``.
Nothing is written inside the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent  # the checkout: app.py, explorer/, assets/, ...
ASSETS = REPOSITORY / "assets"  # shipped reference runs and reported points (results only)


def cache_root() -> Path:
    """Root of the project's cache (created on first use)."""
    root = Path(os.environ.get("EXPLORER_CACHE", Path.home() / ".cache" / "compression-explorer")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def slug(text: str) -> str:
    """A file-name-safe version of a model spec or task name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "x"


def settings_hash(data: dict) -> str:
    """Short stable hash of JSON-able settings, for cache keys."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def os_error_message(err: OSError) -> str:
    """The one line shown for an ``OSError`` of a file or folder (a full disk, no permission), by the command
    line and by every tab: which path, and what to check."""
    where = f" {err.filename}" if err.filename else ""
    return f"Cannot read or write{where}: {err.strerror or err}; check the path, its permissions and the free space."
