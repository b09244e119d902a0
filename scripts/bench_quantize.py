"""Which int8 implementation, and which layers in int8: greedy generation (256 in, 64 new tokens,
batch 1) of a NASH-pruned model (3 decoder layers, encoder sparsity 0.3) in fp32 and with int8
Linear weights by each candidate, timed in alternating rounds in one process (median of rounds,
each against fp32 in the same round).

Candidates:
    torch.ao dynamic       ``torch.ao.quantization.quantize_dynamic`` (qint8), every Linear (this
                           project's ``pruning.quantization``, LM head included)
    torch.ao, LM head fp32 the same with the LM head left in fp32
    torchao dynamic        ``torchao.quantization.Int8DynamicActivationInt8WeightConfig`` (eager)
    torchao weight-only    ``torchao.quantization.Int8WeightOnlyConfig`` (eager)

torchao is not a dependency of the project: the two torchao rows appear only when it imports
(``pip install --target /tmp/torchao torchao==0.18.0 --no-deps`` and ``PYTHONPATH=/tmp/torchao``).

    .venv/bin/python scripts/bench_quantize.py [--models minilm2minilm t5-base] [--rounds 5] [--pause-pid PID]
"""

import argparse
import copy
import statistics
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from explorer.evaluation.latency import device_description, measure_latency, paused
from pruning import apply_plan, quantize, weight_bytes  # noqa: E402
from pruning.layers import select_decoder_layers  # noqa: E402


def nash_model(name: str) -> torch.nn.Module:
    """The model pruned to 3 decoder layers (uniform) and encoder sparsity 0.3 (random scores: the
    shape, not which units, sets the time)."""
    from bench_latency import build_dense, random_scores

    from explorer.models.loading import load_model
    from pruning.adapters import get_adapter
    from pruning.importance import plan_from_scores

    dense = load_model(name).model if name == "minilm2minilm" else build_dense(name, ROOT.parent / "shared" / "models")
    layers = get_adapter(dense).num_decoder_layers(dense)
    heads, neurons = random_scores(dense)
    plan = plan_from_scores(dense, heads, neurons, 0.3, select_decoder_layers(layers, 3, "uniform"))
    return apply_plan(dense, plan).eval()


def candidates(model: torch.nn.Module) -> dict:
    head = "decoder.cls.predictions.decoder" if hasattr(model, "decoder") and hasattr(model.decoder, "cls") else "lm_head"
    out = {"fp32": model, "torch.ao dynamic": quantize(model, "int8", keep_fp32=()),
           "torch.ao, LM head fp32": quantize(model, "int8", keep_fp32=(head,))}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_
        for label, config in (("torchao dynamic", Int8DynamicActivationInt8WeightConfig()),
                              ("torchao weight-only", Int8WeightOnlyConfig())):
            copied = copy.deepcopy(model)
            quantize_(copied, config)
            out[label] = copied
    except ImportError:
        print("torchao is not importable: its rows are left out (see the docstring)", file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["minilm2minilm", "t5-base"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pause-pid", type=int, nargs="*", default=[])
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "scripts"))
    setting = {"input_tokens": 256, "new_tokens": 64}
    print(f"Greedy generation, 256 input -> 64 new tokens, batch 1, on {device_description('cpu')}, torch "
          f"{torch.__version__}; NASH shape: 3 decoder layers, encoder sparsity 0.3; median of {args.rounds} "
          "alternating rounds, each candidate against fp32 in the same round.\n")
    print("| model | weights | MB | end-to-end ms | decoder ms/token | speed-up over fp32 (paired) |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        models = candidates(nash_model(name))
        with paused(args.pause_pid):
            for m in models.values():  # warm-up
                measure_latency(m, **setting, repeats=1, warmup=1)
            times = {label: [] for label in models}
            per_token = {label: [] for label in models}
            for _ in range(args.rounds):
                for label, m in models.items():
                    result = measure_latency(m, **setting, repeats=1, warmup=0)
                    times[label].append(result.latency_ms)
                    per_token[label].append(result.decode_ms_per_token)
        for label, m in models.items():
            ratio = statistics.median(f / t for f, t in zip(times["fp32"], times[label]))
            print(f"| {name} | {label} | {weight_bytes(m) / 1e6:.0f} | {statistics.median(times[label]):.0f} | "
                  f"{statistics.median(per_token[label]):.2f} | {ratio:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
