"""Re-time every run of a task in one quiet process, so that methods compare at equal footing.

Each prune run timed its own dense and pruned model when it finished, minutes or hours apart on a
shared machine whose speed drifts (the same dense model has timed 15-40% apart in different
minutes). This script loads the dense model and every run's pruned model of one task folder
(``scripts/nash_tables.sh``), and times them in alternating rounds against the dense model
(``explorer.evaluation.latency.paired_speedups``) at 256 in / 64 new tokens and at the task's median
lengths. A run's speed-up is the median over rounds of (mean of the dense timings just before and
just after the run's / run ms), so drift within a round of many runs cancels. The
results replace the runs' latencies and speed-ups in ``metrics.json`` (the per-round ratios under
``retimed.ratios``); the values measured at run time stay under ``at_run``. Background jobs given by
``--pause-pid`` are stopped while timing (under ``--lock``, so that two such jobs never time at once).
A run restored from shipped results (no weights on this machine) is timed as its architecture, rebuilt
from its plan.json on the pretrained model (``explorer.evaluation.timing_models``); so is the dense model when its
fine-tune is not on this machine. ``retimed.models`` records which was timed.

    .venv/bin/python scripts/nash_retime.py out/nash/rte [--rounds 20] [--pause-pid PID] [--force]

A folder whose runs were all re-timed together already (the same timing, no run added since) is
left as it is unless ``--force``.
"""

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.evaluation.latency import (add_pause_arguments, all_cores, device_description, paired_speedups, paused,
                                         registered_groups)
from explorer.evaluation.timing_models import dense_for_timing, pretrained, timing_model
from pruning.atomic import atomic_write_text


def already_retimed(metrics: dict) -> bool:
    """Whether every run was re-timed in one timing of exactly these runs (so a restarted job does not
    spend half an hour timing them again and replace numbers already reported)."""
    stamps = [m.get("retimed") for m in metrics.values()]
    return all(stamps) and len({s["date"] for s in stamps}) == 1 and stamps[0]["runs_timed_together"] == len(metrics)


def retime(folder: Path, rounds: int, pause: list[int], lock: Path | None = None, registry: Path | None = None,
           force: bool = False) -> None:
    runs = sorted(p for p in folder.iterdir() if (p / "metrics.json").is_file())
    if not runs:
        raise SystemExit(f"No finished runs in {folder}.")
    metrics = {run: json.loads((run / "metrics.json").read_text()) for run in runs}
    if not force and already_retimed(metrics):
        print(f"{folder}: all {len(runs)} runs were re-timed together on {metrics[runs[0]]['retimed']['date']}; "
              "kept (--force times them again)")
        return
    first = metrics[runs[0]]
    dense, dense_source = dense_for_timing(first)
    base = pretrained(first["settings"]["model"])
    loaded = {run.name: timing_model(run, base) for run in runs}
    runs_models = {name: model for name, (model, _) in loaded.items()}
    timing = first["settings"]["timing"]
    settings = {"long": (timing["input_tokens"], timing["new_tokens"])}
    if first.get("task_lengths"):
        settings["task"] = tuple(first["task_lengths"])
    with paused(pause + registered_groups(registry), lock), all_cores():
        timed = {key: paired_speedups(dense, runs_models, input_tokens=source, new_tokens=target, rounds=rounds)
                 for key, (source, target) in settings.items()}
    with all_cores():
        device = device_description("cpu")
    stamp = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "rounds": rounds,
             "protocol": "each run between two dense timings",
             "device": device, "runs_timed_together": len(runs),
             "load_avg_1min": os.getloadavg()[0], "dense": dense_source}
    for run in runs:
        m = metrics[run]
        at_run = {"speedup_end_to_end": m["speedup_end_to_end"], "speedup_task_lengths": m.get("speedup_task_lengths"),
                  "dense_ms": m["measurements"]["dense"]["latency"]["latency_ms"],
                  "pruned_ms": m["measurements"]["pruned"]["latency"]["latency_ms"]}
        m.setdefault("at_run", at_run)
        for key, field, latency in (("long", "speedup_end_to_end", "latency"),
                                    ("task", "speedup_task_lengths", "latency_task")):
            if key not in timed:
                continue
            result = timed[key][run.name]
            m[field] = round(result.speedup, 3)
            m["measurements"]["dense"][latency]["latency_ms"] = round(result.reference_ms, 1)
            m["measurements"]["pruned"][latency]["latency_ms"] = round(result.model_ms, 1)
        m["retimed"] = {**stamp, "timed": loaded[run.name][1], "ratios": {key: [round(r, 3) for r in timed[key][run.name].ratios] for key in timed}}
        atomic_write_text(run / "metrics.json", json.dumps(m, indent=1, default=str))
        task_part = (f", {m['speedup_task_lengths']:.2f}x at the task's lengths {settings['task']}"
                     if "task" in settings else "")
        print(f"{run.name}: {m['speedup_end_to_end']:.2f}x at {settings['long']} (at run time "
              f"{m['at_run']['speedup_end_to_end']:.2f}x){task_part}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="task folders of scripts/nash_tables.sh")
    parser.add_argument("--rounds", type=int, default=20)
    add_pause_arguments(parser)
    parser.add_argument("--force", action="store_true",
                        help="time again even when every run was already re-timed together")
    args = parser.parse_args()
    for folder in args.folders:
        retime(folder, args.rounds, args.pause_pid, args.lock, args.pause_registry, args.force)


if __name__ == "__main__":
    main()
