"""Resumable long runs: a work folder that records its finished stages.

A run that takes hours on a CPU (EFTNAS on a GLUE task, a long prune) writes into a hidden work
folder beside its final folder, ``.<name>.partial``, and records each finished stage in its
``stages.json`` (the stage's summary and wall seconds). Stage outputs are written atomically
(``pruning.atomic``) before the stage is recorded, so a killed run never records a stage whose
output is half-written. ``--resume`` reopens the work folder and skips recorded stages; a stage that
trains keeps Trainer checkpoints under ``checkpoints/<stage>`` and continues from the last one.
When every stage is done the work folder is renamed to the final folder (replacing an older run
only at that moment), so the final folder is either the old run or the whole new one.
"""

from __future__ import annotations

import json
import os
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
        ValueError: If a work folder exists and ``resume`` is False (it would be lost: pass
            ``resume`` or delete it), or ``resume`` is True and its settings differ.
    """

    def __init__(self, out_dir: str | os.PathLike, settings: dict, *, resume: bool = False,
                 ignore: tuple[str, ...] = ("device", "save_steps"), writer: bool = True):
        self.out_dir = Path(out_dir)
        self.path = self.work_folder(self.out_dir)
        self.writer = writer
        state_file = self.path / STATE_FILE
        settings = json.loads(json.dumps(settings, default=str))
        if not writer:
            state = json.loads(state_file.read_text()) if resume and state_file.is_file() else {}
            self.state = {"settings": settings, "done": state.get("done", {}), "started": _now(), "resumed": []}
            return
        if self.path.exists() and state_file.is_file():
            state = json.loads(state_file.read_text())
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
        return self.out_dir

    def _write(self) -> None:
        if not self.writer:
            return
        atomic_write_text(self.path / STATE_FILE, json.dumps(self.state, indent=1))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
