"""Finish EFTNAS run folders (with weights) for the tables: a paired bootstrap interval of each front
member's difference from the dense model on the reported split (``eval_ci``, 95%, 1,000 resamples,
``explorer.evaluation.metrics.paired_bootstrap``), and the dense model and every front member timed again on a
quiet machine (the old latencies kept as ``latency_ms_first``). A long run times its front at its end,
whatever else the machine was doing then; this gives every run the same quiet conditions.

    .venv/bin/python scripts/eftnas_retime.py out/eftnas/minilm-cola out/eftnas/minilm-rte [--pause-pid PID]

Each latency is ``explorer.evaluation.classify.classifier_latency_ms``: one forward pass, batch 1, 128 tokens,
median of ``--repeats`` after warm-up, on the CPU with torch's default threads.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.records import RunSummary  # noqa: E402


def intervals(folder: Path, run: RunSummary) -> None:
    """``eval_ci`` of every front member: paired bootstrap of (subnetwork - dense) on the reported split."""
    from explorer.evaluation import metrics
    from explorer.evaluation.classify import predict
    from explorer.runs.eftnas_runs import extract_for_budget, reported_split
    from nas.supernet import load_classifier_weights

    _, tokenizer, rows, labels = reported_split(folder)
    dense = predict(load_classifier_weights(folder / "dense"), tokenizer, rows)
    metric = getattr(metrics, run.metric)
    front = []
    for point in run.front:
        sub, _, _ = extract_for_budget(folder, point)
        front.append(point.measured(eval_ci=metrics.paired_bootstrap(metric, labels, dense,
                                                                     predict(sub, tokenizer, rows))))
    run.front = front


def retime(folder: Path, repeats: int, pause: list[int]) -> None:
    from explorer.runs.eftnas_runs import FRONT_FILE, RUN_FILE, front_json, load_run
    from pruning.atomic import atomic_write_text

    run = load_run(folder)
    intervals(folder, run)
    from explorer.evaluation.latency import paused

    with paused(pause):
        _time(folder, run, repeats)
    atomic_write_text(folder / FRONT_FILE, front_json(run.front))
    atomic_write_text(folder / RUN_FILE, run.to_json())
    print(f"{folder}: dense {run.dense['latency_ms']:.1f} ms; front " +
          ", ".join(f"{p.latency_ms:.1f} ms ({p.eval_ci['diff']:+.1f} [{p.eval_ci['low']:+.1f}, "
                    f"{p.eval_ci['high']:+.1f}])" for p in run.front))


def _time(folder: Path, run: RunSummary, repeats: int) -> None:
    from explorer.evaluation.classify import classifier_latency_ms
    from explorer.runs.eftnas_runs import extract_for_budget
    from explorer.evaluation.latency import device_description
    from nas.supernet import load_classifier_weights

    dense = load_classifier_weights(folder / "dense")
    dense_ms = classifier_latency_ms(dense, repeats=repeats)
    run.dense.setdefault("latency_ms_first", run.dense["latency_ms"])
    run.dense["latency_ms"] = dense_ms
    front = []
    for point in run.front:
        sub, _, _ = extract_for_budget(folder, point)
        first = point.latency_ms_first if point.latency_ms_first is not None else point.latency_ms
        front.append(point.measured(latency_ms_first=first, latency_ms=classifier_latency_ms(sub, repeats=repeats)))
    run.front = front
    run.retimed = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "device": device_description("cpu"),
                   "repeats": repeats, "command": "scripts/eftnas_retime.py"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--pause-pid", type=int, nargs="*", default=[],
                        help="processes to stop (SIGSTOP) while timing and continue afterwards")
    args = parser.parse_args()
    for folder in args.folders:
        retime(Path(folder), args.repeats, args.pause_pid)


if __name__ == "__main__":
    main()
