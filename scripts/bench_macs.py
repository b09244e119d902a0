"""MACs counting: extrapolated from three short generations against a direct count; prints a table.

``explorer.evaluation.costs.count_macs`` counts generation of 1, 2 and 3 tokens under ``FlopCounterMode`` and
extrapolates the quadratic to N tokens; ``direct=True`` counts all N. Both must agree exactly; this
reports the GMACs and the seconds of each on real architectures (random weights: MACs do not depend
on weight values).

    .venv/bin/python scripts/bench_macs.py [--models flan-t5-small t5-small bart-base] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["flan-t5-small"], help="folders under ../shared/models")
    parser.add_argument("--input-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from explorer.evaluation.costs import count_macs
    from explorer.models.loading import load_model

    torch.set_num_threads(args.threads)
    print(f"{args.input_tokens} input / {args.new_tokens} new tokens, batch 1, {args.threads} CPU threads\n")
    print("| model | GMACs, extrapolated | s | GMACs, direct | s | equal |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        model = load_model(f"random:{ROOT.parent / 'shared' / 'models' / name}").model
        row = []
        for direct in (False, True):
            start = time.perf_counter()
            macs = count_macs(model, input_tokens=args.input_tokens, new_tokens=args.new_tokens, direct=direct)
            row.append((macs, time.perf_counter() - start))
        (fast, t_fast), (slow, t_slow) = row
        print(f"| {name} | {fast['gmacs']:.3f} | {t_fast:.1f} | {slow['gmacs']:.3f} | {t_slow:.1f} | "
              f"{'yes' if fast == slow else 'NO'} |")


if __name__ == "__main__":
    main()
