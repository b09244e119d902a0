"""What keeping the FFN output layers in fp32 costs int8 on a BERT-style classifier (issue 15): the MiniLM-L6
classifier (EFTNAS's model; the shape, not the weights, sets the time) in fp32, with every Linear in int8, and with
every Linear but the FFN output layers in int8 (``pruning.quantization.ffn_output_layers``: the layers whose
long-tailed GELU inputs int8 rounds badly; ``scripts/int8_sensitivity.py``). One forward pass at each batch size
and sequence length, timed in alternating rounds in one process; per variant the median ms over rounds and the
speed-up as the median of each round's ratio to fp32 in the same round (paired).

    .venv/bin/python scripts/bench_int8_classifier.py [--rounds 7] [--pause-pids PID ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm", help="a classifier spec of explorer.models.classifier")
    parser.add_argument("--shapes", nargs="+", default=["1x128", "32x128"], help="batch x tokens")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--pause-pids", type=int, nargs="*", default=[])
    args = parser.parse_args()

    import torch

    from explorer.evaluation.classify import classifier_latency_ms
    from explorer.evaluation.latency import device_description, paused
    from explorer.models.classifier import load_classifier
    from pruning import quantize, weight_bytes
    from pruning.quantization import ffn_output_layers

    model = load_classifier(args.model, 2)[0]
    variants = {"fp32": model, "int8, every Linear": quantize(model, "int8"),
                "int8, FFN output fp32": quantize(model, "int8", keep_fp32=ffn_output_layers(model))}
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes]
    times = {(v, s): [] for s in shapes for v in variants}
    with paused(args.pause_pids):
        for _ in range(args.rounds):
            for batch, tokens in shapes:
                for name, m in variants.items():
                    times[(name, (batch, tokens))].append(
                        classifier_latency_ms(m, seq_len=tokens, batch_size=batch, repeats=args.repeats))
    print(f"{args.model} classifier, one forward pass, on {device_description('cpu')}, torch {torch.__version__}; "
          f"{args.rounds} alternating rounds, median of {args.repeats} passes each\n")
    print("| batch x tokens | weights | weight MB | ms (median of rounds) | speed-up over fp32 (median of paired "
          "rounds) | lowest - highest round |\n|---|---|---|---|---|---|")
    for shape in shapes:
        base = times[("fp32", shape)]
        for name, m in variants.items():
            values = times[(name, shape)]
            ratios = [b / v for b, v in zip(base, values)]
            print(f"| {shape[0]} x {shape[1]} | {name} | {weight_bytes(m) / 1e6:.0f} | {statistics.median(values):.2f} "
                  f"| {statistics.median(ratios):.2f}x | {min(ratios):.2f} - {max(ratios):.2f}x |")


if __name__ == "__main__":
    main()
