"""Resumable long runs: a work folder that records its finished stages.

A run that takes hours on a CPU (EFTNAS on a GLUE task, a long prune) writes into a hidden work
folder beside its final folder, ``.<name>.partial``, and records each finished stage in its
``stages.json`` (the stage's summary and wall seconds). Stage outputs are written atomically
(``pruning.atomic``) before the stage is recorded, so a killed run never records a stage whose
output is half-written. ``--resume`` reopens the work folder and skips recorded stages; a stage that
trains keeps Trainer checkpoints under ``checkpoints/<stage>`` and continues from the last one.
When every stage is done the work folder is renamed to the final folder (replacing an older run
only at that moment), so the final folder is either the old run or the whole new one.

One run writes a folder at a time: the writer holds an exclusive ``flock`` on ``.<name>.lock`` beside
it while it runs (the kernel releases it when the process ends, also on ``kill -9``, which leaves
only the empty file), so a second run with the same output folder is refused at once instead of
mixing its files into the first's. Holding it, the writer also removes what a run killed while saving
its final folder left beside it: the temporary sibling of ``pruning.atomic.atomic_directory``
(``.<name>.<8 characters>``), which no reader ever lists.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from pathlib import Path
from pruning.atomic import atomic_write_text

STATE_FILE = "stages.json"


class RunFolder:
    """The work folder of one resumable run.

    Args:
        out_dir: The final run folder.
        settings: JSON-able settings; a resumed run must have the same ones (``ignore`` aside).
        resume: Continue the work folder if it exists (else start one); each resumption is recorded.
        ignore: Settings keys that may differ on resume: how the run is executed, not what it
            computes (the device; the checkpoint interval ``save_steps``).
        writer: False for the other processes of a multi-process run (``accelerate launch``,
            torchrun): they read the work folder but never create or write it; records stay in memory.

    Attributes:
        path: The work folder (``.<name>.partial`` beside ``out_dir``).

    Raises:
        ValueError: If a work folder with progress exists and ``resume`` is False (it would be lost:
            pass ``resume`` or delete it), ``resume`` is True and its settings differ, another run is
            writing the same folder, or the folder cannot be written (permissions, no space).
    """

    _lock_fd: int | None = None

    def __init__(self, out_dir: str | os.PathLike, settings: dict, *, resume: bool = False,
                 ignore: tuple[str, ...] = ("device", "save_steps"), writer: bool = True):
        self.out_dir = Path(out_dir)
        self.path = self.work_folder(self.out_dir)
        self.writer = writer
        state_file = self.path / STATE_FILE
        settings = json.loads(json.dumps(settings, default=str))
        self._lock_fd: int | None = None
        if not writer:
            state = json.loads(state_file.read_text()) if resume and state_file.is_file() else {}
            self.state = {"settings": settings, "done": state.get("done", {}), "started": _now(), "resumed": []}
            return
        try:
            self._lock_fd, self._lock_path = _lock(self.out_dir)
            remove_stale_temporaries(self.out_dir)
            self._open(state_file, settings, resume, ignore)
        except OSError as err:
            self.release()
            raise ValueError(f"Cannot write the run folder {self.out_dir} ({err.strerror or err}); choose a folder "
                             f"you can write to, with free space.") from None
        except BaseException:
            self.release()
            raise

    def _open(self, state_file: Path, settings: dict, resume: bool, ignore: tuple[str, ...]) -> None:
        state = json.loads(state_file.read_text()) if self.path.exists() and state_file.is_file() else None
        if state is not None and not state["done"] and not _has_checkpoints(self.path):
            state = None  # a run that failed or was killed before finishing anything: nothing to resume
        if state is not None:
            if not resume:
                raise ValueError(f"An unfinished run is in {self.path} (stages done: "
                                 f"{', '.join(state['done']) or 'none'}); pass --resume to continue it, or delete "
                                 f"that folder to start over.")
            old = {k: v for k, v in state["settings"].items() if k not in ignore}
            new = {k: v for k, v in settings.items() if k not in ignore}
            if old != new:
                changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                raise ValueError(f"--resume needs the same settings as the unfinished run in {self.path}; these "
                                 f"differ: {', '.join(changed)}. Use the same ones, or delete that folder.")
            self.state = state
            self.state["resumed"].append(_now())
            self._write()
        else:
            if self.path.exists():  # a work folder killed before its first record: nothing to keep
                shutil.rmtree(self.path)
            self.path.mkdir(parents=True)
            self.state = {"settings": settings, "done": {}, "started": _now(), "resumed": []}
            self._write()

    @staticmethod
    def work_folder(out_dir: str | os.PathLike) -> Path:
        """The work folder of the run whose final folder is ``out_dir``."""
        out_dir = Path(out_dir)
        return out_dir.parent / f".{out_dir.name}.partial"

    def release(self) -> None:
        """Give up the folder's lock and remove its file (at the end of the run; idempotent)."""
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            try:
                os.unlink(self._lock_path)
            except OSError:
                pass
            os.close(fd)

    def __del__(self) -> None:
        self.release()

    def has_progress(self) -> bool:
        """Whether a resumed run would use anything here: a finished stage or a training checkpoint."""
        return bool(self.state["done"]) or _has_checkpoints(self.path)

    def done(self, stage: str) -> dict | None:
        """The record of a finished stage, or None."""
        return self.state["done"].get(stage)

    def finish(self, stage: str, record: dict) -> dict:
        """Record ``stage`` as finished with ``record`` (JSON-able); returns the record."""
        self.state["done"][stage] = json.loads(json.dumps(record, default=str))
        self._write()
        return self.state["done"][stage]

    def checkpoints(self, stage: str) -> Path:
        """The folder a training stage keeps its checkpoints in."""
        return self.path / "checkpoints" / stage

    def publish(self, keep: tuple[str, ...] = ()) -> Path:
        """Move the finished work folder to the final folder (replacing an older run there), dropping
        the checkpoints (and everything not needed afterwards except ``keep``)."""
        shutil.rmtree(self.path / "checkpoints", ignore_errors=True)
        old = self.out_dir.parent / f".{self.out_dir.name}.old"
        if self.out_dir.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.out_dir, old)
        os.replace(self.path, self.out_dir)
        shutil.rmtree(old, ignore_errors=True)
        self.release()
        return self.out_dir

    def _write(self) -> None:
        if not self.writer:
            return
        atomic_write_text(self.path / STATE_FILE, json.dumps(self.state, indent=1))


def _lock(out_dir: Path) -> tuple[int, Path]:
    """An exclusive, non-blocking flock on ``.<name>.lock`` beside ``out_dir``: (descriptor, path).

    The holder removes the file when it releases the lock (:meth:`RunFolder.release`); a process that
    locked a file just removed (its path now names another file, or none) tries again, so two
    processes never both hold the lock of one path.

    Raises:
        ValueError: If another process holds it.
        OSError: If the lock file cannot be created.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    path = out_dir.parent / f".{out_dir.name}.lock"
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ValueError(f"Another run is writing {out_dir} now; wait for it to finish or choose another output "
                             f"folder.") from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd, path
        except FileNotFoundError:
            pass
        os.close(fd)  # the previous holder removed this file as we locked it: lock the new one


def remove_stale_temporaries(out_dir: Path) -> None:
    """Remove ``atomic_directory``'s temporary siblings of ``out_dir`` (``.<name>.`` + mkdtemp's 8
    characters) left by a writer killed mid-save. Only the holder of the folder's lock may call it:
    no other process writes them then."""
    pattern = re.compile(rf"\.{re.escape(out_dir.name)}\.[a-z0-9_]{{8}}")
    for path in out_dir.parent.iterdir():
        if pattern.fullmatch(path.name) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)


def _has_checkpoints(path: Path) -> bool:
    return any((path / "checkpoints").glob("*/checkpoint-*"))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
