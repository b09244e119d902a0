"""Quality of int8 weights on finished runs with their weights: each model (fp32, as saved) is
quantized (``pruning.quantization``) and evaluated on the same examples as its fp32 predictions,
and the paired bootstrap interval of int8 - fp32 is printed per model; with the output layer (LM
head, classifier) quantized and kept in fp32, so that the choice of ``KEEP_FP32`` rests on a
measurement.

- a NASH prune run (``metrics.json`` + ``predictions.json``): its pruned model;
- an EFTNAS run (``eftnas.json``, with ``dense/`` and ``supernet/``): the dense classifier and
  every subnetwork of the front, on the whole reported split (GLUE dev).

    .venv/bin/python scripts/int8_quality.py out/nash/*/learned-k3-s0.3 out/eftnas/minilm-mrpc \
        [--json out/int8_quality.json] [--scales tensor channel] [--output-layer int8]

``--scales``: one int8 scale per weight matrix (``tensor``, the default scheme) and / or one per output row
(``channel``); ``--output-layer``: the output layer's variants to run (``int8``, ``fp32``; both by default);
``--ffn-output``: the FFN output layers' (``int8`` by default; ``fp32`` keeps them out of int8, README).

Evaluation only (no timing), so it may run beside training. Target (issue): the loss from int8 is
within 1 point, or within the interval, on every task.
"""

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.models.loading import load_model
from explorer.evaluation.generation import evaluate_quality
from explorer.data.tasks import get_task
from explorer.data.splits import load_split
from explorer.evaluation.scoring import paired_interval
from pruning import load_pruned, quantize  # noqa: E402
from pruning.quantization import SCALES as QUANT_SCALES, ffn_output_layers  # noqa: E402

VARIANTS = {"int8": (), "fp32": ("lm_head", "decoder.cls.predictions.decoder")}  # LM head precision -> kept fp32
CLASSIFIER_VARIANTS = {"int8": (), "fp32": ("classifier",)}
PRECISIONS = ("int8", "fp32")


@dataclass(frozen=True)
class Options:
    """Which int8 variants to run: weight scale granularities (``pruning.quantization.SCALES``), the output
    layer's precisions, the FFN output layers' precisions (``ffn_output_layers``), and for EFTNAS runs which
    models (None: all)."""
    scales: tuple[str, ...] = ("tensor",)
    output_layer: tuple[str, ...] = PRECISIONS
    ffn_output: tuple[str, ...] = ("int8",)
    only: tuple[str, ...] | None = None

    def variants(self, model, table: dict, head: str) -> list[tuple[str, tuple[str, ...], str]]:
        """(label, layers kept fp32, scales) for every chosen combination."""
        ffn = ffn_output_layers(model)
        return [(f"int8{', per-channel' if s == 'channel' else ''}, {head} {out}"
                 f"{', FFN output fp32' if f == 'fp32' else ''}", table[out] + (ffn if f == "fp32" else ()), s)
                for s in self.scales for out in self.output_layer for f in self.ffn_output]


def _row(run: Path, task: str, label: str, metric: str, fp32: float, int8: float, iv: dict) -> dict:
    row = {"run": str(run), "task": task, "variant": label, "metric": metric, "fp32": round(fp32, 2),
           "int8": round(int8, 2), "diff": iv["diff"], "low": iv["low"], "high": iv["high"], "n": iv["n"],
           "within_target": iv["diff"] >= -1.0 or iv["low"] <= 0 <= iv["high"]}
    print(f"{run.name} ({task}), {label}: {metric} {fp32:.2f} -> {int8:.2f}, "
          f"{iv['diff']:+.2f} [{iv['low']:+.2f}, {iv['high']:+.2f}]", file=sys.stderr)
    return row


def check_eftnas(run: Path, options: Options) -> list[dict]:
    """int8 vs fp32 for the dense classifier and every front subnetwork of an EFTNAS run folder."""
    from explorer.evaluation import metrics as m
    from explorer.evaluation.classify import predict
    from explorer.runs.eftnas_runs import reported_split, run_models

    summary, tokenizer, rows, labels = reported_split(run)
    metric = getattr(m, summary.metric)
    out = []
    for name, load in run_models(run, summary, options.only):
        model = load().eval()
        fp32 = predict(model, tokenizer, rows)
        for label, keep, scales in options.variants(model, CLASSIFIER_VARIANTS, "classifier"):
            int8 = predict(quantize(model, "int8", keep_fp32=keep, scales=scales), tokenizer, rows)
            iv = m.paired_bootstrap(metric, labels, fp32, int8)
            out.append(_row(run, summary.task, f"{name}, {label}", summary.metric, metric(labels, fp32),
                            metric(labels, int8), iv))
    return out


def check(run: Path, data_dir: str | None, options: Options) -> list[dict]:
    """int8 vs fp32 rows of one run folder (NASH prune run or EFTNAS run)."""
    if (run / "eftnas.json").exists():
        return check_eftnas(run, options)
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
    for label, keep, scales in options.variants(fp32, VARIANTS, "LM head"):
        model = quantize(fp32, "int8", keep_fp32=keep, scales=scales)
        result = evaluate_quality(model, tokenizer, spec.name, examples, split=predictions["split"])
        iv = paired_interval(spec, examples, reference, result["predictions"])
        rows.append(_row(run, spec.name, label, spec.main_metric, fp32_value, result["metrics"][spec.main_metric], iv))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path,
                        help="finished prune run folders (with predictions.json) or EFTNAS run folders")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--scales", nargs="+", choices=QUANT_SCALES, default=["tensor"])
    parser.add_argument("--output-layer", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--ffn-output", nargs="+", choices=PRECISIONS, default=["int8"],
                        help="the FFN output layers' precision(s): fp32 keeps them out of int8")
    parser.add_argument("--only", nargs="*", help="EFTNAS runs: only these models ('dense', or a front member's "
                        "MACs label such as '61%%')")
    args = parser.parse_args()
    options = Options(tuple(args.scales), tuple(args.output_layer), tuple(args.ffn_output),
                      tuple(args.only) if args.only else None)
    rows = [row for run in args.runs for row in check(run, args.data_dir, options)]
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
