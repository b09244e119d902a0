"""Decode ms per token of a decoder-only LM at several depths and widths, before any pruning run: which budgets
reach a speed-up at all (timing depends on the shape, not on which layers, heads or neurons are kept, so the
first ones are kept). Rounds alternate the dense model and every shape; per shape the median decode time over
rounds, and the speed-up as the median of each round's ratio to the dense model of the same round (paired: a
drift of the machine between rounds moves both), with the lowest and highest round's ratio beside it.

    .venv/bin/python scripts/lm_speed_grid.py --layers 30 20 18 17 15 --width 0 0.25 --pause-pids 1234
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--layers", type=int, nargs="+", default=[30, 24, 20, 18, 17, 15])
    parser.add_argument("--width", type=float, nargs="+", default=[0.0, 0.25])
    parser.add_argument("--input-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pause-pids", type=int, nargs="*", default=[])
    args = parser.parse_args()

    from explorer.evaluation.latency import measure_lm_latency, paused
    from explorer.models.lm import load_lm
    from pruning import apply_plan
    from pruning.decoder_only import lm_plan

    dense = load_lm(args.model).model
    config = dense.config
    kv, size = config.num_key_value_heads, config.num_attention_heads // config.num_key_value_heads
    shapes = {}
    for k in args.layers:
        for s in args.width:
            per_group = size - math.floor(s * size + 1e-9)
            heads = [tuple(g * size + i for g in range(kv) for i in range(per_group))] * config.num_hidden_layers
            neurons = [tuple(range(max(1, round(config.intermediate_size * (1 - s)))))] * config.num_hidden_layers
            plan = lm_plan(dense, list(range(k)), heads if s else None, neurons if s else None)
            shapes[(k, s)] = apply_plan(dense, plan)
    times = {key: [] for key in shapes}
    with paused(args.pause_pids):
        for _ in range(args.rounds):
            for key, model in shapes.items():
                t = measure_lm_latency(model, input_tokens=args.input_tokens, new_tokens=args.new_tokens, repeats=3)
                times[key].append(t.decode_ms_per_token)
    base = times.get((config.num_hidden_layers, 0.0))
    print(f"{args.rounds} rounds of {args.input_tokens} in / {args.new_tokens} out, batch 1\n")
    print("| layers | width sparsity | params (M) | decode ms/token (median) | speed-up (median of rounds) | "
          "lowest - highest round |\n|---|---|---|---|---|---|")
    for (k, s), values in times.items():
        params = sum(p.numel() for p in shapes[(k, s)].parameters()) / 1e6
        row = f"| {k} | {s} | {params:.1f} | {statistics.median(values):.2f} |"
        if base:
            ratios = [b / v for b, v in zip(base, values)]
            row += f" {statistics.median(ratios):.2f}x | {min(ratios):.2f} - {max(ratios):.2f}x |"
        print(row)


if __name__ == "__main__":
    main()
