"""CoFi at the latency of a NASH run (NASH, Sec. 5: methods compared at equal latency).

Reads a finished NASH run (its settings and end-to-end speed-up over its own dense model), then
runs CoFi (every decoder layer kept, gates on encoder and decoder widths) at sparsities chosen by
``explorer.evaluation.latency_match``: a surrogate speed-up curve of uniform-width plans timed here, inverted
at the NASH speed-up, then corrected by each real CoFi run's measured speed-up, until one lands
within the tolerance (5%) or the tries are spent. CoFi gets the NASH run's training budget (gate
steps, recovery steps, distillation), data, evaluation and timing settings. Every CoFi run is kept
(each is a point of CoFi's front); ``<out>/cofi-match-<nash run>.json`` records the curve, the tries
and the match. Finished runs are reused, so an interrupted search resumes.

    .venv/bin/python scripts/cofi_match.py out/nash/rte/learned-k3-s0.3 --out out/nash/rte
"""

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.evaluation import latency_match
from explorer.cli.commands import _progress
from explorer.models.loading import load_model, peek_decoder_layers
from explorer.pipelines.nash_settings import PruneSettings
from explorer.pipelines.nash import run_prune

GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nash_run", help="a finished prune run folder (metrics.json) to match")
    parser.add_argument("--out", required=True, help="where the CoFi runs go (cofi-s<sparsity> folders)")
    parser.add_argument("--tries", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=0.05, help="relative speed-up tolerance")
    args = parser.parse_args()
    nash = json.loads((Path(args.nash_run) / "metrics.json").read_text())
    target = nash["speedup_end_to_end"]
    settings = PruneSettings.from_dict(nash["settings"])
    out = Path(args.out)
    record_file = out / f"cofi-match-{Path(args.nash_run).name}.json"
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    if "curve" not in record:
        dense = load_model(nash["dense_finetune"]["path"]).model
        timing = settings.timing
        curve = latency_match.speedup_curve(dense, GRID, input_tokens=timing.input_tokens,
                                            new_tokens=timing.new_tokens, repeats=3)
        record = {"nash_run": str(args.nash_run), "target_speedup": target, "tolerance": args.tolerance,
                  "curve": [[round(s, 4), round(v, 3)] for s, v in curve], "tries": []}
        out.mkdir(parents=True, exist_ok=True)
        record_file.write_text(json.dumps(record, indent=1))
    curve = [tuple(p) for p in record["curve"]]
    print(f"target speed-up {target:.2f}x; surrogate curve {record['curve']}", file=sys.stderr)
    sparsity = latency_match.sparsity_for_speedup(curve, target)
    layers = peek_decoder_layers(settings.model)
    for attempt in range(args.tries):
        if sparsity is None:
            record["matched"] = None
            record["why"] = (f"no CoFi sparsity up to {GRID[-1]} reaches {target:.2f}x on the surrogate: CoFi keeps all "
                             f"{layers} decoder layers")
            break
        sparsity = round(min(max(sparsity, 0.0), 0.97), 2)
        run_dir = out / f"cofi-s{sparsity}"
        if not (run_dir / "metrics.json").is_file():
            cofi = replace(settings, method="cofi", decoder_layers=layers, encoder_sparsity=sparsity,
                           layer_selection="uniform")
            run_prune(cofi, run_dir, progress=_progress, resume=True)
        measured = json.loads((run_dir / "metrics.json").read_text())["speedup_end_to_end"]
        if not any(t["run"] == str(run_dir) for t in record["tries"]):
            record["tries"].append({"sparsity": sparsity, "speedup": measured, "run": str(run_dir)})
        print(f"CoFi at sparsity {sparsity}: {measured:.2f}x (target {target:.2f}x)", file=sys.stderr)
        if latency_match.within(measured, target, args.tolerance):
            record["matched"] = str(run_dir)
            break
        following = latency_match.next_sparsity(curve, target, sparsity, measured)
        if following is not None and round(following, 2) == sparsity:
            following += 0.02 if measured < target else -0.02
        sparsity = following
    else:
        record["matched"] = None
        record["why"] = f"no try within {args.tolerance:.0%} of {target:.2f}x after {args.tries} runs"
    record_file.write_text(json.dumps(record, indent=1))
    print(json.dumps({k: record[k] for k in ("target_speedup", "tries", "matched")}, indent=1))


if __name__ == "__main__":
    main()
