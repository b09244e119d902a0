"""The Prune tab's training-time estimate against the time the dense fine-tune really takes.

For each model and task: the estimate (``explorer.backend.prune.finetune_estimate``: a training step
measured here at the task's padded batch shape) with a fresh cache, then the dense fine-tune itself
(``cached_dense_finetune``, the same settings) into that cache, and the ratio. Prints a markdown table.

    .venv/bin/python scripts/bench_estimate.py                          # the offline default, 250 steps
    .venv/bin/python scripts/bench_estimate.py --model minilm2minilm --task samsum --data-dir ../shared/data

Run it on a quiet machine: both numbers are wall time. Target (issue 17): within 2x.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm2minilm")
    parser.add_argument("--task", default="rotten_tomatoes")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--steps", type=int, default=250, help="dense fine-tuning steps (the Prune tab's default)")
    args = parser.parse_args()
    os.environ["EXPLORER_CACHE"] = tempfile.mkdtemp(prefix="bench-estimate-")  # nothing cached: a first run

    from explorer.backend.prune import finetune_estimate, prune_settings
    from explorer.evaluation.latency import device_description
    from explorer.training.finetune import cached_dense_finetune

    settings = prune_settings(args.model, args.task, 0.3, 1, "uniform", 0, "cpu", 64, data_dir=args.data_dir,
                              finetune_steps=args.steps)
    start = time.perf_counter()
    estimate = finetune_estimate(settings)
    estimate_s = time.perf_counter() - start
    _, summary = cached_dense_finetune(settings.model, settings.task, settings.finetune, data_dir=settings.data_dir)
    actual = summary["wall_s"]
    print(f"Dense fine-tune, estimate against actual, on {device_description('cpu')}; estimate basis: "
          f"{estimate['basis']}; computing the estimate took {estimate_s:.1f} s.\n")
    print("| model | task | steps | batch | estimate (s) | actual (s) | estimate / actual |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.model} | {args.task} | {args.steps} | {settings.finetune.batch_size} | {estimate['seconds']:.0f} | "
          f"{actual:.0f} | {estimate['seconds'] / actual:.2f} |")


if __name__ == "__main__":
    main()
