"""Crash tests: ``kill -9`` of a prune during each stage (dense fine-tune, importance, recovery,
evaluation, writing) changes nothing already saved (an earlier run, every cache entry), shows no
half-written run, and the next run (``--resume``) succeeds from what the killed one had finished.

The kill is real: the child process (tests/crash_child.py, the explorer's own command line) sends
itself SIGKILL at the stage, so no exception handler, ``finally`` or atexit code runs.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SHARED

pytestmark = [pytest.mark.slow,  # 11 child processes, each importing torch and transformers
              pytest.mark.skipif(not (SHARED / "data" / "SAMSum").exists(), reason="../shared/data is not beside "
                                 "the project")]
# A tiny T5 on SAMSum: every stage takes a second or two. Checkpoints every 2 steps.
BASE = ["prune", "--task", "samsum", "--data-dir", str(SHARED / "data"), "--decoder-layers", "2",
        "--encoder-sparsity", "0.5", "--recovery-steps", "4", "--finetune-steps", "4", "--batch-size", "2",
        "--train-samples", "16", "--eval-samples", "4", "--calibration-samples", "2", "--input-tokens", "16",
        "--new-tokens", "4", "--repeats", "1", "--save-steps", "2"]
# Per stage: settings that make the stage do work (not a cache hit), and the stages finished at the kill.
STAGES = {
    "dense fine-tune": (["--finetune-steps", "6"], set()),
    "importance": (["--calibration-samples", "4"], set()),
    "recovery": ([], {"plan"}),
    "evaluation": ([], {"plan", "recovery"}),
    "writing": ([], {"plan", "recovery", "evaluation", "timing"}),
}


def _with(args: list[str], extra: list[str]) -> list[str]:
    """``args`` with the options in ``extra`` replacing their values there."""
    args = list(args)
    for flag, value in zip(extra[::2], extra[1::2]):
        args[args.index(flag) + 1] = value
    return args


def _explorer(args: list[str], env: dict, crash_at: str | None = None) -> subprocess.CompletedProcess:
    command = ([sys.executable, str(ROOT / "tests" / "crash_child.py"), crash_at, "--"] if crash_at
               else [sys.executable, "-m", "explorer"])
    return subprocess.run(command + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                          check=False)


def _files(*folders: Path) -> dict[str, str]:
    """sha256 of every file under ``folders``, by path."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def earlier(tmp_path_factory, tiny_t5_dir):
    """A runs folder with one finished run and a cache (dense fine-tune, importance, dense quality)."""
    base = tmp_path_factory.mktemp("crash")
    env = dict(os.environ, EXPLORER_CACHE=str(base / "cache"), HF_HUB_OFFLINE="1", TMPDIR=str(base))
    args = BASE[:1] + ["--model", str(tiny_t5_dir)] + BASE[1:]
    done = _explorer(args + ["--out", str(base / "runs" / "earlier")], env)
    assert done.returncode == 0, done.stderr[-3000:]
    return base, env, args


@pytest.mark.parametrize("stage", STAGES)
def test_kill_9_during_a_stage_loses_nothing_and_the_next_run_succeeds(stage, earlier):
    from explorer.runs.stages import RunFolder
    from explorer.runs.store import list_runs
    from pruning import load_pruned

    base, env, args = earlier
    runs, cache = base / "runs", base / "cache"
    out = runs / f"killed-{stage.replace(' ', '-')}"
    extra, finished = STAGES[stage]
    args = _with(args, extra) + ["--out", str(out)]
    saved = _files(runs, cache)
    listed = [r.run_id for r in list_runs(runs)]

    killed = _explorer(args, env, crash_at=stage)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert f"KILLED at {stage}:" in killed.stderr
    # Nothing saved before changed or went missing; no half-written run is visible or listed.
    after = _files(runs, cache)
    changed = [path for path, digest in saved.items() if after.get(path) != digest]
    assert not changed, f"changed or lost by the kill: {changed}"
    assert not out.exists() and [r.run_id for r in list_runs(runs)] == listed
    # The kill came in the stage named: the work folder records exactly the stages before it.
    work = RunFolder.work_folder(out)
    assert set(json.loads((work / "stages.json").read_text())["done"]) == finished

    resumed = _explorer(args + ["--resume"], env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["quality"]) == {"dense", "pruned"} and metrics["speedup_end_to_end"] > 0
    assert load_pruned(out).config.num_decoder_layers == 2
    assert [r.run_id for r in list_runs(runs)] == sorted(listed + [out.name])
    # Only the runs remain in the runs folder: no work folder, lock or temporary of the killed run.
    assert sorted(p.name for p in runs.iterdir()) == sorted(listed + [out.name]), list(runs.iterdir())
    assert not [p for p in cache.rglob("*") if p.name.startswith(".") and ".checkpoints" not in p.name
                and p.name.endswith(".tmp")], "a temporary file was left in the cache"


def test_a_training_child_ends_when_the_app_that_started_it_is_killed():
    """kill -9 of the app (here: a parent standing in for it) must not leave its training child running."""
    import time

    child_code = ("import time; from explorer.pipelines.nash_process import exit_with_parent; "
                  "exit_with_parent(0.1); time.sleep(120)")
    parent_code = ("import subprocess, sys, time; from explorer.pipelines.nash_process import child_environment; "
                   f"c = subprocess.Popen([sys.executable, '-c', {child_code!r}], env=child_environment()); "
                   "print(c.pid, flush=True); time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", parent_code], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    child_pid = int(parent.stdout.readline())
    time.sleep(1.0)
    os.kill(child_pid, 0)  # running while its parent runs
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            return  # gone (reaped by init)
        with open(f"/proc/{child_pid}/stat") as stat:
            if stat.read().split(")")[-1].split()[0] == "Z":
                return  # exited, only not reaped yet
        time.sleep(0.1)
    os.kill(child_pid, signal.SIGKILL)
    pytest.fail("the child outlived its parent by 10 s")
