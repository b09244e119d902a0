"""Write a folder all at once: into a temporary sibling, renamed into place only when complete."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``directory``; on success it replaces ``directory``.

    On any exception (including KeyboardInterrupt) the temporary folder is removed and
    ``directory`` is left exactly as it was, so readers never see a half-written folder.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        yield tmp
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Write one file all at once: ``write(tmp)`` writes a temporary sibling (unique to this process
    and thread), which then replaces ``path``; on any exception the temporary file is removed and
    ``path`` is left as it was. Returns ``path``.

    ``write`` is a function of the temporary path, e.g. ``lambda tmp: torch.save(obj, tmp)``.
    """
    import threading

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of a text file (UTF-8)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
