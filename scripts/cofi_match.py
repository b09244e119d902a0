"""CoFi at the latency of a NASH run (NASH, Sec. 5: methods compared at equal latency).

Reads a finished NASH run (its settings), then runs CoFi (every decoder layer kept, gates on
encoder and decoder widths) at sparsities chosen by ``explorer.evaluation.latency_match``: a
surrogate speed-up curve of uniform-width plans, inverted at the NASH run's speed-up, then
corrected by each real CoFi run's speed-up, until one lands within the tolerance (5%) or the tries
are spent. Speed-ups are never taken from runs timed at different moments: the NASH model and
each CoFi model are timed together against the dense model in alternating rounds
(``explorer.evaluation.latency.paired_speedups``), and the NASH speed-up of that same timing is
the target. CoFi runs already in ``--out`` (an interrupted search, or an earlier one) are judged
first, so a match may cost no training. CoFi gets the NASH run's training budget (gate steps,
recovery steps, distillation), data, evaluation and timing settings. Every CoFi run is kept (each
is a point of CoFi's front); ``<out>/cofi-match-<nash run>.json`` records the curve, the tries and
the match. When the surrogate says no sparsity reaches NASH's speed-up and no real CoFi run is
faster than NASH, one run at the grid's top sparsity (0.95) decides it, so that "CoFi cannot reach
NASH's latency" rests on a real run timed together with NASH. Runs restored from shipped results (no
weights on this machine) are timed as their architectures (``explorer.evaluation.timing_models``). A
finished search (its record has a match, or says why there is none) is left as it is unless ``--again``. Time it on a quiet machine
(``--pause-pid`` stops background jobs while timing). ``--after-try`` runs a command after each new CoFi run is
judged and recorded: ``nash_tables.sh`` ships (or stages) the task's finished runs with it, so that a machine
lost in the middle of a search (one try is a CPU hour) keeps every finished try and the record, and a new
machine goes on from them (``nash_tables.py --restore``).

    .venv/bin/python scripts/cofi_match.py out/nash/rte/learned-k3-s0.3 --out out/nash/rte
"""

import argparse
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.evaluation import latency_match
from explorer.cli.commands import _progress
from explorer.models.loading import peek_decoder_layers
from explorer.pipelines.nash_settings import PruneSettings
from explorer.pipelines.nash import run_prune
from explorer.evaluation.latency import add_pause_arguments, all_cores, paired_speedups, paused, registered_groups
from explorer.evaluation.timing_models import dense_for_timing, pretrained, timing_model
from pruning.atomic import atomic_write_text

GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)


def judge(dense, nash_model, cofi_dir: Path, timing, rounds: int, pause: list[int], lock: Path | None,
          registry: Path | None, base) -> dict:
    """The NASH model's and one CoFi run's speed-ups over dense, timed together (256 / 64 or the
    run's timing setting), as a record of one try."""
    with paused(pause + registered_groups(registry), lock), all_cores():
        timed = paired_speedups(dense, {"nash": nash_model, "cofi": timing_model(cofi_dir, base)[0]},
                                input_tokens=timing.input_tokens, new_tokens=timing.new_tokens, rounds=rounds)
    return {"sparsity": float(cofi_dir.name.removeprefix("cofi-s")), "run": str(cofi_dir),
            "speedup": round(timed["cofi"].speedup, 3), "nash_speedup": round(timed["nash"].speedup, 3)}


def after_try(command: str | None) -> None:
    """Run ``--after-try``'s shell command, if any, once a new try is recorded.

    Raises:
        SystemExit: with the command's exit status when it fails (e.g. staging refused runs of another dense
            fine-tune: every further try would be wasted); the record written before it is kept.
    """
    if command and (code := subprocess.run(command, shell=True).returncode):
        print(f"--after-try failed with exit status {code} ({command}); the search stops, its record is kept",
              file=sys.stderr)
        raise SystemExit(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nash_run", help="a finished prune run folder (metrics.json) to match")
    parser.add_argument("--out", required=True, help="where the CoFi runs go (cofi-s<sparsity> folders)")
    parser.add_argument("--tries", type=int, default=3, help="CoFi runs trained at most (earlier runs are free)")
    parser.add_argument("--tolerance", type=float, default=0.05, help="relative speed-up tolerance")
    parser.add_argument("--rounds", type=int, default=20, help="alternating timing rounds per judgement")
    add_pause_arguments(parser)
    parser.add_argument("--again", action="store_true",
                        help="continue a finished search (by default a finished one is left as it is)")
    parser.add_argument("--after-try", metavar="COMMAND",
                        help="shell command run after each new CoFi run is judged and recorded (e.g. ship the "
                             "finished runs); if it fails, the search stops with its exit status, its record kept")
    args = parser.parse_args()
    nash_dir = Path(args.nash_run)
    nash = json.loads((nash_dir / "metrics.json").read_text())
    settings = PruneSettings.from_dict(nash["settings"])
    timing = settings.timing
    out = Path(args.out)
    record_file = out / f"cofi-match-{nash_dir.name}.json"
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    if "matched" in record and not args.again:  # a finished search: a restarted job must not time it again
        print(f"{record_file}: the search finished earlier (matched: {record['matched']}); kept (--again searches on)",
              file=sys.stderr)
        print(json.dumps({k: record[k] for k in ("tries", "matched", "why")}, indent=1))
        return
    dense, _ = dense_for_timing(nash)  # a restored run (no weights here) times as its architecture
    base = pretrained(settings.model)
    nash_model, _ = timing_model(nash_dir, base)
    if "curve" not in record:
        with paused(args.pause_pid + registered_groups(args.pause_registry), args.lock), all_cores():
            curve = latency_match.speedup_curve(dense, GRID, input_tokens=timing.input_tokens,
                                                new_tokens=timing.new_tokens, rounds=5)
        record = {"nash_run": str(nash_dir), "tolerance": args.tolerance, "timing": "paired rounds",
                  "curve": [[round(s, 4), round(v, 3)] for s, v in curve], "tries": []}
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(record_file, json.dumps(record, indent=1))
    curve = [tuple(p) for p in record["curve"]]
    layers = peek_decoder_layers(settings.model)
    judged = {t["run"] for t in record["tries"]}
    for cofi_dir in sorted(out.glob("cofi-s*")):  # runs of an earlier search: judged before any training
        if (cofi_dir / "metrics.json").is_file() and str(cofi_dir) not in judged:
            record["tries"].append(judge(dense, nash_model, cofi_dir, timing, args.rounds, args.pause_pid, args.lock,
                                         args.pause_registry, base))
            atomic_write_text(record_file, json.dumps(record, indent=1))  # a stopped search keeps its judgements

    def best() -> dict | None:
        return min(record["tries"], key=lambda t: abs(t["speedup"] / t["nash_speedup"] - 1.0), default=None)

    trained = 0
    while True:
        closest = best()
        if closest is not None:
            print(f"closest: CoFi {closest['sparsity']} at {closest['speedup']:.2f}x, "
                  f"NASH {closest['nash_speedup']:.2f}x", file=sys.stderr)
        if closest is not None and latency_match.within(closest["speedup"], closest["nash_speedup"], args.tolerance):
            record["matched"], record["why"] = closest["run"], None
            break
        if trained == args.tries:
            record["matched"] = None
            record["why"] = f"no CoFi run within {args.tolerance:.0%} of NASH's speed-up after {trained} new runs"
            break
        target = closest["nash_speedup"] if closest else json.loads((nash_dir / "metrics.json").read_text())[
            "speedup_end_to_end"]
        between = latency_match.sparsity_between_tries([(t["sparsity"], t["speedup"] / t["nash_speedup"])
                                                        for t in record["tries"]])
        if between is not None:
            sparsity = between
        elif closest is None:
            sparsity = latency_match.sparsity_for_speedup(curve, target)
        else:
            sparsity = latency_match.next_sparsity(curve, target, closest["sparsity"], closest["speedup"])
        too_slow = record["tries"] and all(t["speedup"] < t["nash_speedup"] for t in record["tries"])
        if sparsity is None and (too_slow or not record["tries"]) and max(
                (t["sparsity"] for t in record["tries"]), default=0.0) < GRID[-1]:
            sparsity = GRID[-1]  # the surrogate says out of reach: one real run at the grid's top decides it
        if sparsity is None:
            record["matched"] = None
            top = max(record["tries"], key=lambda t: t["sparsity"], default=None)
            record["why"] = (f"CoFi keeps all {layers} decoder layers and does not reach NASH's speed-up: "
                             + (f"at sparsity {top['sparsity']} it is {top['speedup']:.2f}x against NASH's "
                                f"{top['nash_speedup']:.2f}x, timed together" if top and too_slow else
                                f"no sparsity up to {GRID[-1]} reaches {target:.2f}x on the surrogate"))
            break
        sparsity = round(min(max(sparsity, 0.0), 0.97), 2)
        while any(t["sparsity"] == sparsity for t in record["tries"]):  # tried: step past it
            sparsity = round(sparsity + (0.02 if closest["speedup"] < closest["nash_speedup"] else -0.02), 2)
        run_dir = out / f"cofi-s{sparsity}"
        cofi = replace(settings, method="cofi", decoder_layers=layers, encoder_sparsity=sparsity,
                       layer_selection="uniform")
        run_prune(cofi, run_dir, progress=_progress, resume=True)
        trained += 1
        record["tries"].append(judge(dense, nash_model, run_dir, timing, args.rounds, args.pause_pid, args.lock,
                                         args.pause_registry, base))
        atomic_write_text(record_file, json.dumps(record, indent=1))
        after_try(args.after_try)
    atomic_write_text(record_file, json.dumps(record, indent=1))
    print(json.dumps({k: record[k] for k in ("tries", "matched", "why")}, indent=1))


if __name__ == "__main__":
    main()
