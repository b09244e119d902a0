"""Training throughput of the NASH table jobs' two ways to use the cores: one job with every thread,
or one one-thread job per core side by side (``scripts/nash_tables.sh`` runs either way). Prints a table.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_jobs.py                      # about 15 minutes on 2 cores
    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_jobs.py --tasks stsb --steps 20 --rounds 1   # a quick look

Each measurement is the tables' dense fine-tune (``explorer.training.finetune.finetune``: MiniLM2MiniLM
from its pretrained weights, the task's batch size from ``nash_tables.sh``, real training examples from
../shared/data) for ``--steps`` optimizer steps, in a fresh process:

- "one job, N threads": one process with ``OMP_NUM_THREADS`` = the core count;
- "N jobs, 1 thread": as many one-thread processes as cores, started together.

Throughput is optimizer steps per minute over all processes (each process's steps over its own
``Trainer.train`` wall time, summed). The two settings alternate in rounds (one, several, one, several,
...) so that a slow drift of the machine falls on both; the ratio is the median of the per-round ratios.
The first process of each task is a two-step warm-up (it writes the tokenized-data cache) and is not
counted. Keep other jobs off the machine while it runs (the numbers are times).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
BATCH = {"samsum": 16}  # nash_tables.sh: 32 for every GLUE task and rotten_tomatoes, 16 for SAMSum


def worker(task: str, steps: int, data_dir: str) -> None:
    """Fine-tune for ``steps`` steps and print ``{"steps": n, "train_s": seconds}`` as one JSON line."""
    sys.path.insert(0, str(ROOT))
    import time

    import transformers

    from explorer.models.loading import load_model
    from explorer.training.finetune import FinetuneSettings, finetune, training_examples

    seconds = []
    train = transformers.Trainer.train

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return train(self, *args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    transformers.Trainer.train = timed
    settings = FinetuneSettings(max_steps=steps, batch_size=BATCH.get(task, 32),
                                learning_rate=2e-4 if task == "samsum" else 1e-4)
    examples, _ = training_examples(task, settings, None if task == "rotten_tomatoes" else data_dir)
    summary = finetune(load_model("minilm2minilm"), examples, settings, task=task)
    print(json.dumps({"steps": summary["steps"], "train_s": round(sum(seconds), 2)}), flush=True)


def launch(task: str, steps: int, threads: int, copies: int, data_dir: str) -> list[dict]:
    """Start ``copies`` worker processes at once with ``threads`` threads each; their results."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", CI="true")
    command = [sys.executable, __file__, "--worker", task, "--steps", str(steps), "--data-dir", data_dir]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"a worker failed (exit {proc.returncode}); run it alone to see why: {' '.join(command)}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["stsb", "samsum"])
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per process")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (one job, several jobs)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--data-dir", default=str(DATA))
    parser.add_argument("--worker", metavar="TASK", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.data_dir)
        return
    rows = []
    for task in args.tasks:
        launch(task, 2, args.cores, 1, args.data_dir)  # warm-up: the tokenized-data cache
        one, many, ratios = [], [], []
        for _ in range(args.rounds):
            a = sum(r["steps"] / r["train_s"] * 60 for r in launch(task, args.steps, args.cores, 1, args.data_dir))
            b = sum(r["steps"] / r["train_s"] * 60 for r in launch(task, args.steps, 1, args.cores, args.data_dir))
            one.append(a)
            many.append(b)
            ratios.append(b / a)
            print(f"{task}: one job {a:.1f} steps/min, {args.cores} jobs {b:.1f} steps/min",
                  file=sys.stderr, flush=True)
        rows.append((task, BATCH.get(task, 32), statistics.median(one), statistics.median(many),
                     statistics.median(ratios), min(ratios), max(ratios)))
    print(f"\n| task | batch | one job, {args.cores} threads (steps/min) | {args.cores} jobs, 1 thread each "
          f"(steps/min, all jobs) | ratio (median [min, max] over {args.rounds} rounds) |")
    print("|---|---|---|---|---|")
    for task, batch, a, b, ratio, low, high in rows:
        print(f"| {task} | {batch} | {a:.1f} | {b:.1f} | {ratio:.2f}x [{low:.2f}, {high:.2f}] |")


if __name__ == "__main__":
    main()
