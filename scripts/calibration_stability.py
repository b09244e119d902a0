"""How many calibration examples training-free NASH needs: plans from few examples against many.

Computes the Taylor importance (``pruning.taylor_importance``) of a model's encoder heads and FFN
neurons from the first n training examples of a task, for each n in ``--sizes``, builds the plan
at each ``--sparsities`` value, and prints, per (n, sparsity), the fraction of the kept heads and
of the kept neurons that the plan from the largest n also keeps (1.0 = the same plan), with the
examples' source tokens (as the task truncates them) and the seconds the scores took.

    .venv/bin/python scripts/calibration_stability.py --model FOLDER --task samsum \
        --data-dir ../shared/data/SAMSum [--sizes 16 32 64 128] [--sparsities 0.3 0.5] [--threads 1]

Use a fine-tuned model (random weights give meaningless scores): e.g. the dense fine-tune that
``scripts/real_input_samsum.sh`` caches under ``~/.cache/compression-explorer/finetuned``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def overlap(plan_units, reference_units) -> float:
    """Fraction of the units ``reference_units`` keeps that ``plan_units`` keeps too."""
    shared = sum(len(set(a) & set(b)) for a, b in zip(plan_units, reference_units))
    return shared / sum(len(b) for b in reference_units)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--data-dir")
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from explorer.models.loading import load_model
    from explorer.pipelines.nash_steps import calibration_batches
    from explorer.data.tasks import get_task
    from explorer.data.splits import load_split
    from pruning import taylor_importance
    from pruning.importance import plan_from_scores

    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    train = load_split(args.task, "train", data_dir=args.data_dir)
    sizes = sorted(args.sizes)
    spec = get_task(args.task)
    lengths = [len(ids) for ids in loaded.tokenizer([e.source for e in train[:sizes[-1]]],
                                                    max_length=spec.max_source_tokens, truncation=True)["input_ids"]]
    scores, seconds = {}, {}
    for n in sizes:
        start = time.perf_counter()
        scores[n] = taylor_importance(loaded.model, calibration_batches(loaded, args.task, train[:n]))
        seconds[n] = time.perf_counter() - start
    reference = sizes[-1]
    print(f"{args.model} on {args.task}: overlap of each plan's kept units with the plan from {reference} "
          f"examples ({args.threads} CPU threads)\n")
    print("| calibration examples | source tokens | seconds | " + " | ".join(f"heads / neurons kept in common, s={s}"
                                                          for s in args.sparsities) + " |")
    print("|---|---|---|" + "---|" * len(args.sparsities))
    for n in sizes[:-1]:
        cells = []
        for s in args.sparsities:
            ref = plan_from_scores(loaded.model, scores[reference].head_scores, scores[reference].neuron_scores, s, (0,))
            plan = plan_from_scores(loaded.model, scores[n].head_scores, scores[n].neuron_scores, s, (0,))
            cells.append(f"{overlap(plan.kept_encoder_heads, ref.kept_encoder_heads):.3f} / "
                         f"{overlap(plan.kept_encoder_neurons, ref.kept_encoder_neurons):.3f}")
        print(f"| {n} | {sum(lengths[:n])} | {seconds[n]:.1f} | " + " | ".join(cells) + " |")
    print(f"| {reference} | {sum(lengths[:reference])} | {seconds[reference]:.1f} | " + " | ".join("1 / 1" for _ in args.sparsities) + " |")


if __name__ == "__main__":
    main()
