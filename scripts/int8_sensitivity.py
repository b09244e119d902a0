"""Where int8 loses quality on a BERT-style classifier (issue 15): the dense classifier and chosen front members of
an EFTNAS run, each evaluated in fp32 and with int8 Linear layers in several variants, int8 - fp32 on the whole
evaluation split with a 95% paired bootstrap interval:

- ``all``: every Linear in int8 (``pruning.quantization.quantize``, per-tensor weight scales, activations
  quantized per batch on the fly): the default scheme;
- ``weights only``: every Linear's weight rounded to int8 and back (per-tensor scale), activations in fp32.
  If this holds and ``all`` does not, the loss comes from quantizing activations, not weights;
- ``all but <kind> in fp32``: one kind of Linear layer kept in fp32 (query / key / value, attention output,
  FFN in, FFN out, pooler + classifier), which says which layer's inputs int8 hurts.

Activation outliers in a few hidden dimensions of BERT-style models are the known cause of such losses
(Bondarenko et al. 2021, "Understanding and Overcoming the Challenges of Efficient Transformer Quantization";
Dettmers et al. 2022, LLM.int8()): one per-tensor scale for an activation with outliers rounds the rest.

    .venv/bin/python scripts/int8_sensitivity.py out/eftnas/minilm-stsb --only dense 49% 60%

Evaluation only (no timing), so it may run beside other jobs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pruning.quantization import FFN_OUTPUT_PATTERN  # noqa: E402

# kind -> pattern over BERT module names (transformers' BertModel naming).
KINDS = {
    "query / key / value": r"attention\.self\.(query|key|value)$",
    "attention output": r"attention\.output\.dense$",
    "FFN in": r"intermediate\.dense$",
    "FFN out": FFN_OUTPUT_PATTERN.pattern,  # pruning.quantization.ffn_output_layers' names
    "pooler + classifier": r"(pooler\.dense|classifier)$",
}


def weights_only_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose non-empty Linear weights are rounded to int8 with one scale per tensor (the
    scale and zero point ``quantize`` would use: symmetric min / max) and back to fp32."""
    import copy

    from torch.ao.quantization import default_dynamic_qconfig

    out = copy.deepcopy(model).eval()
    for module in out.modules():
        if isinstance(module, torch.nn.Linear) and module.weight.numel():
            observer = default_dynamic_qconfig.weight()
            observer(module.weight.detach())
            scale, zero = observer.calculate_qparams()
            q = torch.quantize_per_tensor(module.weight.detach(), float(scale), int(zero), torch.qint8)
            module.weight.data = q.dequantize()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished EFTNAS run folder (eftnas.json, dense/, supernet/)")
    parser.add_argument("--only", nargs="*", help="'dense' and / or front members by MACs label, e.g. 49%%")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from explorer.evaluation import metrics as m
    from explorer.evaluation.classify import predict
    from explorer.runs.eftnas_runs import reported_split, run_models
    from pruning import quantize

    summary, tokenizer, rows, labels = reported_split(args.run)
    metric = getattr(m, summary.metric)
    models = run_models(args.run, summary, args.only)
    out = []
    print(f"| model | variant | {summary.metric} fp32 | int8 | int8 - fp32 [95% CI] |\n|---|---|---|---|---|")
    for name, make in models:
        model = make().eval()
        linear = [n for n, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)]
        fp32 = predict(model, tokenizer, rows)
        variants = {"all": quantize(model, "int8"), "weights only": weights_only_int8(model)}
        for kind, pattern in KINDS.items():
            keep = tuple(n for n in linear if re.search(pattern, n))
            variants[f"all but {kind} in fp32"] = quantize(model, "int8", keep_fp32=keep)
        for label, q in variants.items():
            pred = predict(q, tokenizer, rows)
            iv = m.paired_bootstrap(metric, labels, fp32, pred)
            row = {"model": name, "variant": label, "fp32": metric(labels, fp32), "int8": metric(labels, pred), **iv}
            out.append(row)
            print(f"| {name} | {label} | {row['fp32']:.2f} | {row['int8']:.2f} | "
                  f"{iv['diff']:+.2f} [{iv['low']:+.2f}, {iv['high']:+.2f}] |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
