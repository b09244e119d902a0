"""NASH latency benchmark: decoder layers x encoder sparsity, speed-up vs MACs.

For each architecture (random weights built from the real configs; latency does not
depend on weight values) this prunes the dense model to every combination of kept
decoder layers {all, 4, 3, 2, 1} (uniform selection, NASH Sec. 4) and encoder
sparsity {0, 0.3, 0.6} (random importance scores with a fixed seed: which heads and
neurons go does not change time, only how many), then measures greedy generation of
64 tokens from 256 input tokens, batch 1, and its MACs. Speed-ups are over the dense
model measured in the same run. "speed-up / MACs ratio" is the measured speed-up
divided by the speed-up that MACs predict (dense GMACs / pruned GMACs): below 1,
time shrinks less than arithmetic does.

Every pruned model is timed in fp32 and, with ``--precisions fp32 int8`` (the default), again
with int8 Linear weights (``pruning.quantization``). A bandwidth model of decoding stands beside
each row: the bytes a batch-1 decoder step reads (``explorer.evaluation.costs.decode_bytes_per_token``:
kept decoder layers without the cached cross-attention K/V projections, the LM head, the KV
caches, at the weights' dtype), this machine's memory bandwidth (a large array copy,
``memory_bandwidth_gbs``), the decode time per token that bandwidth predicts, and measured /
predicted.

The last lines check NASH's headline (Ko et al., Findings of EMNLP 2023, arXiv
2310.10054, Table 1/Fig. 1): t5-base with 3 decoder layers and encoder sparsity 0.3
should be >= 2.5x faster than dense; with int8 weights, >= 5x (this project's target).

Usage (from the repository root)::

    python scripts/bench_latency.py --models t5-small --repeats 3
    nohup python scripts/bench_latency.py --out out/bench_latency_cpu.json > out/bench_latency_cpu.md &

The markdown table goes to stdout, progress to stderr; ``--out`` writes the rows as
CSV or JSON (chosen by the suffix) or markdown (``.md``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoConfig, AutoModelForSeq2SeqLM  # noqa: E402

from explorer.evaluation.costs import count_macs, count_params, decode_bytes_per_token, memory_bandwidth_gbs
from explorer.evaluation.latency import device_description, measure_latency, paused
from pruning.quantization import quantize, weight_bytes  # noqa: E402
from pruning.accounting import encoder_sparsity  # noqa: E402
from pruning.adapters import get_adapter  # noqa: E402
from pruning.importance import plan_from_scores  # noqa: E402
from pruning.layers import select_decoder_layers  # noqa: E402
from pruning.surgery import apply_plan  # noqa: E402

MODELS = ("t5-small", "flan-t5-small", "bart-base", "t5-base")
# t5-base from its model card: the t5-small config with these sizes (see shared/models/README.md).
T5_BASE_SIZES = {"d_model": 768, "d_ff": 3072, "num_layers": 12, "num_decoder_layers": 12, "num_heads": 12, "d_kv": 64}
TARGET = {"model": "t5-base", "decoder_layers": 3, "encoder_sparsity": 0.3, "speedup": 2.5}
TARGET_INT8 = 5.0  # t5-base NASH (3, 0.3) with int8 weights against dense fp32 (issue: pruning composed with int8)
COLUMNS = ("model", "precision", "decoder_layers", "encoder_sparsity", "encoder_sparsity_actual", "params_m",
           "weight_mb", "gmacs", "encoder_ms", "decode_ms_per_token", "latency_ms", "speedup", "macs_ratio",
           "speedup_over_macs_ratio", "decode_mb_per_token", "predicted_ms_per_token", "measured_over_predicted",
           "load_avg_1min", "paired_speedup")


def build_dense(name: str, models_dir: Path) -> torch.nn.Module:
    """Random-weight model of architecture ``name`` from its config under ``models_dir``.

    Raises:
        ValueError: If the config folder is missing.
    """
    folder = models_dir / ("t5-small" if name == "t5-base" else name)
    if not (folder / "config.json").exists():
        raise ValueError(f"No config for {name!r} at {folder}; pass --models-dir (the shared/models folder).")
    config = AutoConfig.from_pretrained(folder)
    if name == "t5-base":
        for key, value in T5_BASE_SIZES.items():
            setattr(config, key, value)
    torch.manual_seed(0)
    return AutoModelForSeq2SeqLM.from_config(config).eval()


def random_scores(model: torch.nn.Module, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per encoder layer, random head scores (H,) and FFN neuron scores (ffn_dim,)."""
    adapter = get_adapter(model)
    generator = torch.Generator().manual_seed(seed)
    layers = len(adapter.encoder_layers(model))
    heads = [torch.rand(adapter.num_heads(model), generator=generator) for _ in range(layers)]
    neurons = [torch.rand(adapter.ffn_dim(model), generator=generator) for _ in range(layers)]
    return heads, neurons


def paired_speedup(dense: torch.nn.Module, pruned: torch.nn.Module, setting: dict, device: str, rounds: int) -> float:
    """Median over ``rounds`` of dense ms / pruned ms, timing the two models alternately (ABBA order).

    The table times the dense model once, before every pruned model, so a slow drift
    of the machine's speed (seen here: the same dense t5-base at 36 and at 49 ms per
    token in different minutes) lands in every ratio; pairing neighbours in time
    cancels most of it.
    """
    ratios = []
    for i in range(rounds):
        order = (dense, pruned) if i % 2 == 0 else (pruned, dense)
        ms = {id(m): measure_latency(m, **setting, device=device, repeats=1, warmup=0).latency_ms for m in order}
        ratios.append(ms[id(dense)] / ms[id(pruned)])
    return statistics.median(ratios)


def bench_model(name: str, args: argparse.Namespace, bandwidth: float) -> list[dict]:
    """All rows (decoder layers x encoder sparsity) of one architecture, dense first."""
    dense = build_dense(name, args.models_dir)
    num_layers = get_adapter(dense).num_decoder_layers(dense)
    head_scores, neuron_scores = random_scores(dense)
    keeps = sorted({num_layers if k == "all" else int(k) for k in args.decoder_layers if k == "all" or int(k) <= num_layers},
                   reverse=True)
    setting = {"batch_size": args.batch_size, "input_tokens": args.input_tokens, "new_tokens": args.new_tokens}
    rows, reference = [], None
    for keep in keeps:
        for sparsity in args.sparsities:
            started = time.perf_counter()
            plan = plan_from_scores(dense, head_scores, neuron_scores, sparsity,
                                    select_decoder_layers(num_layers, keep, "uniform"), notes={"importance": "random"})
            is_dense = keep == num_layers and sparsity == 0
            fp32 = dense if is_dense else apply_plan(dense, plan)
            macs = count_macs(fp32, **setting)  # int8 does the same products
            for precision in args.precisions:
                model = fp32 if precision == "fp32" else quantize(fp32, precision)
                latency = measure_latency(model, **setting, device=args.device, repeats=args.repeats,
                                          warmup=args.warmup)
                if reference is None:
                    if not is_dense or precision != "fp32":
                        raise ValueError("The dense fp32 setting (all decoder layers, sparsity 0) must come first.")
                    reference = (latency.latency_ms, macs["gmacs"])
                speedup, macs_ratio = reference[0] / latency.latency_ms, reference[1] / macs["gmacs"]
                read = decode_bytes_per_token(model, input_tokens=args.input_tokens, new_tokens=args.new_tokens)
                predicted = read["total"] / (bandwidth * 1e9) * 1e3 * args.batch_size
                rows.append({
                    "model": name, "precision": precision, "decoder_layers": keep, "encoder_sparsity": sparsity,
                    "encoder_sparsity_actual": encoder_sparsity(plan, dense),
                    "params_m": count_params(fp32)["params_m"], "weight_mb": weight_bytes(model) / 1e6,
                    "gmacs": macs["gmacs"], "encoder_ms": latency.encoder_ms,
                    "decode_ms_per_token": latency.decode_ms_per_token, "latency_ms": latency.latency_ms,
                    "speedup": speedup, "macs_ratio": macs_ratio, "speedup_over_macs_ratio": speedup / macs_ratio,
                    "decode_mb_per_token": read["total"] / 1e6, "predicted_ms_per_token": predicted,
                    "measured_over_predicted": latency.decode_ms_per_token / predicted,
                    "load_avg_1min": os.getloadavg()[0],
                })
                if (name == TARGET["model"] and keep == TARGET["decoder_layers"]
                        and abs(sparsity - TARGET["encoder_sparsity"]) < 1e-9 and args.paired_rounds):
                    rows[-1]["paired_speedup"] = paired_speedup(dense, model, setting, args.device, args.paired_rounds)
                print(f"{name} {precision} decoder {keep}/{num_layers} sparsity {sparsity}: {latency.latency_ms:.1f} ms, "
                      f"{speedup:.2f}x ({time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.1f})",
                      file=sys.stderr, flush=True)
            if args.device.startswith("cuda"):
                dense.to("cpu")  # measure_latency moved it; keep one model at a time on the GPU
                del model
                torch.cuda.empty_cache()
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The rows as a markdown table with units in the headers."""
    header = ("| model | weights | decoder layers | encoder sparsity (target / actual) | params (M) | weights (MB) "
              "| GMACs | encoder ms | decoder ms/token | end-to-end ms | speed-up | MACs ratio | speed-up / MACs ratio "
              "| MB read per token | predicted ms/token | measured / predicted |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['decoder_layers']} | {r['encoder_sparsity']:.1f} / "
            f"{r['encoder_sparsity_actual']:.3f} | {r['params_m']:.1f} | {r['weight_mb']:.0f} | {r['gmacs']:.2f} "
            f"| {r['encoder_ms']:.1f} | {r['decode_ms_per_token']:.2f} | {r['latency_ms']:.1f} | {r['speedup']:.2f}x "
            f"| {r['macs_ratio']:.2f}x | {r['speedup_over_macs_ratio']:.2f} | {r['decode_mb_per_token']:.1f} "
            f"| {r['predicted_ms_per_token']:.2f} | {r['measured_over_predicted']:.2f} |"
        )
    return "\n".join(lines)


def target_line(rows: list[dict], precision: str = "fp32") -> str:
    """The headline check for t5-base, 3 decoder layers, encoder sparsity 0.3: >= 2.5x in fp32 (NASH),
    >= 5x with int8 weights, against dense fp32."""
    goal, who = (TARGET["speedup"], "NASH") if precision == "fp32" else (TARGET_INT8, "target with int8")
    match = [r for r in rows if r["model"] == TARGET["model"] and r["decoder_layers"] == TARGET["decoder_layers"]
             and abs(r["encoder_sparsity"] - TARGET["encoder_sparsity"]) < 1e-9 and r["precision"] == precision]
    if not match:
        return (f"Target: {TARGET['model']} {precision} with {TARGET['decoder_layers']} decoder layers and encoder "
                f"sparsity {TARGET['encoder_sparsity']} was not measured in this run.")
    speedup = match[0].get("paired_speedup", match[0]["speedup"])
    how = "paired, interleaved with dense fp32" if "paired_speedup" in match[0] else "from the table"
    verdict = "met" if speedup >= goal else "NOT met"
    return (f"Target: {TARGET['model']} {precision} with {TARGET['decoder_layers']} decoder layers and encoder "
            f"sparsity {TARGET['encoder_sparsity']}: speed-up {speedup:.2f}x ({how}; table: {match[0]['speedup']:.2f}x) "
            f"vs >= {goal}x ({who}) -> {verdict}.")


def write_rows(rows: list[dict], path: Path, table: str) -> None:
    """Write rows as CSV (``.csv``), JSON (``.json``) or the markdown table (``.md``).

    Raises:
        ValueError: For another suffix.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS, restval="")
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=1))
    elif path.suffix == ".md":
        path.write_text(table + "\n")
    else:
        raise ValueError(f"--out must end in .csv, .json or .md, got {path.name!r}.")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help="architectures to run")
    parser.add_argument("--models-dir", type=Path, default=ROOT.parent / "shared" / "models",
                        help="folder with the config folders (default: ../shared/models)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (torch.set_num_threads)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per median")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    parser.add_argument("--decoder-layers", nargs="+", default=["all", "4", "3", "2", "1"],
                        help="decoder layers to keep ('all' = dense depth)")
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.0, 0.3, 0.6], help="encoder sparsities")
    parser.add_argument("--input-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8"],
                        help="weights of each pruned model: fp32, and int8 Linear layers (CPU only)")
    parser.add_argument("--paired-rounds", type=int, default=7,
                        help="rounds of the interleaved dense/pruned check of the target row (0: off)")
    parser.add_argument("--out", type=Path, help="also write the rows to this .csv, .json or .md file")
    parser.add_argument("--pause-pid", type=int, nargs="*", default=[],
                        help="processes to stop (SIGSTOP) while timing and continue afterwards (a background run)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    for k in args.decoder_layers:
        if k != "all" and not (k.isdigit() and int(k) >= 1):
            parser.error(f"--decoder-layers takes 'all' or positive integers, got {k!r}")
    if "all" not in args.decoder_layers or 0.0 not in args.sparsities:
        parser.error("the dense reference needs 'all' in --decoder-layers and 0 in --sparsities")
    args.sparsities = sorted(set(args.sparsities))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    device = device_description(args.device)
    load_start = os.getloadavg()[0]
    if "int8" in args.precisions and args.device != "cpu":
        raise SystemExit("int8 weights run on the CPU: use --device cpu or --precisions fp32.")
    rows = []
    with paused(args.pause_pid):
        bandwidth = memory_bandwidth_gbs()
        print(f"memory bandwidth (array copy, read + write): {bandwidth:.1f} GB/s", file=sys.stderr)
        for name in args.models:
            rows.extend(bench_model(name, args, bandwidth))
    table = markdown_table(rows)
    print(f"Latency of greedy generation, {args.input_tokens} input tokens -> {args.new_tokens} new tokens, batch "
          f"{args.batch_size}, median of {args.repeats}, on {device}; torch {torch.__version__}, transformers "
          f"{transformers.__version__}. Random weights; random importance scores (seed 0). 1-minute load average "
          f"{load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end (this run adds about its thread count; well "
          "above that, other processes competed for the CPU and times are inflated). Memory bandwidth "
          f"{bandwidth:.1f} GB/s (best of 5 copies of a 256 MB array, bytes read + written); predicted ms/token = "
          "MB read per token / bandwidth.\n")
    print(table)
    print()
    for precision in args.precisions:
        print(target_line(rows, precision))
    if args.out:
        write_rows(rows, args.out, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
