"""Quality of int8 weights on finished prune runs: each run's pruned model (fp32, as saved) is
quantized (``pruning.quantization``) and evaluated on the same examples as its fp32 predictions
(``predictions.json``), and the paired bootstrap interval of int8 - fp32 is printed per run; with
the LM head quantized and kept in fp32, so that the choice of ``KEEP_FP32`` rests on a measurement.

    .venv/bin/python scripts/int8_quality.py out/nash/*/learned-k3-s0.3 [--json out/int8_quality.json]

Evaluation only (no timing), so it may run beside training. Target (issue): the loss from int8 is
within 1 point, or within the interval, on every task.
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.models import load_model  # noqa: E402
from explorer.quality import evaluate_quality  # noqa: E402
from explorer.tasks import get_task, load_split, paired_interval  # noqa: E402
from pruning import load_pruned, quantize  # noqa: E402

VARIANTS = {"int8, LM head int8": (), "int8, LM head fp32": ("lm_head", "decoder.cls.predictions.decoder")}


def check(run: Path, data_dir: str | None) -> list[dict]:
    metrics = json.loads((run / "metrics.json").read_text())
    predictions = json.loads((run / "predictions.json").read_text())
    spec = get_task(metrics["task"])
    data = metrics["settings"].get("data_dir") or data_dir
    examples = load_split(spec, predictions["split"], data if spec.name != "rotten_tomatoes" else None,
                          limit=predictions["num_examples"])
    tokenizer = load_model(str(run)).tokenizer
    fp32 = load_pruned(run, quantized=False)
    reference = predictions.get("pruned_fp32") or predictions["pruned"]
    fp32_value = metrics["quality"].get("pruned_fp32", metrics["quality"]["pruned"])["metrics"][spec.main_metric]
    rows = []
    for label, keep in VARIANTS.items():
        model = quantize(fp32, "int8", keep_fp32=keep)
        result = evaluate_quality(model, tokenizer, spec.name, examples, split=predictions["split"])
        iv = paired_interval(spec, examples, reference, result["predictions"])
        rows.append({"run": str(run), "task": spec.name, "variant": label, "metric": spec.main_metric,
                     "fp32": round(fp32_value, 2), "int8": round(result["metrics"][spec.main_metric], 2),
                     "diff": iv["diff"], "low": iv["low"], "high": iv["high"], "n": iv["n"],
                     "within_target": iv["diff"] >= -1.0 or iv["low"] <= 0 <= iv["high"]})
        print(f"{run.name} ({spec.name}), {label}: {spec.main_metric} {fp32_value:.2f} -> "
              f"{rows[-1]['int8']:.2f}, {iv['diff']:+.2f} [{iv['low']:+.2f}, {iv['high']:+.2f}]", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished prune run folders (with predictions.json)")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = [row for run in args.runs for row in check(run, args.data_dir)]
    print("| run | task | weights | metric | fp32 | int8 | int8 - fp32, 95% CI | within target |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {Path(r['run']).name} | {r['task']} | {r['variant']} | {r['metric']} | {r['fp32']:.2f} | "
              f"{r['int8']:.2f} | {r['diff']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}] | "
              f"{'yes' if r['within_target'] else 'NO'} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
