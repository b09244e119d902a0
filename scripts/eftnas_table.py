"""The README's EFTNAS tables, printed from finished run folders.

1. Per task: the dense model and the best subnetwork on its Pareto front (chosen by the search metric
   on held-out training examples, never by the reported one) within 75% and within 50% of the dense
   MACs: the reported dev metric, % of dense, the difference from dense with its 95% paired bootstrap
   interval (``scripts/eftnas_retime.py`` adds it), GMACs at sequence length 128, latency, parameters.
2. The average over the tasks, as the EFTNAS paper reports its GLUE average (the average of the
   subnetworks' metrics over the average of the dense metrics; the mean of per-task ratios beside it),
   and whether it meets the target (>= 99% of dense within 50% of the MACs).
3. Per task: training examples, epochs and steps of each stage, wall time per stage, device and threads.

    .venv/bin/python scripts/eftnas_table.py out/eftnas/minilm-*           # runs of scripts/eftnas_glue.sh
    .venv/bin/python scripts/eftnas_table.py assets/reference_eftnas/*     # the shipped results
    .venv/bin/python scripts/eftnas_table.py --fronts assets/reference_eftnas/*   # and every front in full
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.runs.eftnas_runs import best_for_budget, load_run
from explorer.pipelines.report import front_table
from nas.records import RunSummary

BUDGETS = (0.75, 0.5)
TARGET = 99.0


def quality_rows(run: RunSummary) -> list[str]:
    metric, dense = run.metric, run.dense
    dq = dense["eval"][metric]
    where = f"{run.eval_split} ({run.eval_examples})"
    out = [f"| {run.task} | {metric}, {where} | dense | {dq:.2f} | 100 | | {dense['gmacs']:.3f} | 100 | "
           f"{dense['latency_ms']:.1f} | {dense['params_m']:.1f} |"]
    for budget in BUDGETS:
        p = best_for_budget(run.front, max_macs_fraction=budget)
        if p is None:
            out.append(f"| {run.task} | | <= {budget:.0%} MACs | none on the front | | | | | | |")
            continue
        q = p.eval[metric]
        ci = p.get("eval_ci")
        diff = f"{ci['diff']:+.2f} [{ci['low']:+.2f}, {ci['high']:+.2f}]" if ci else "not computed"
        out.append(f"| {run.task} | | <= {budget:.0%} MACs: heads {p.head_widths}, FFN {p.ffn_widths} | {q:.2f} | "
                   f"{100 * q / dq:.1f} | {diff} | {p.gmacs:.3f} | {100 * p.macs_fraction:.1f} | {p.latency_ms:.1f} | "
                   f"{p.params_m:.1f} |")
    return out


def average_rows(runs: list[RunSummary]) -> list[str]:
    dense = [r.dense_quality for r in runs]
    lines = [f"| dense | {statistics.mean(dense):.2f} | 100 | | 100 |"]
    for budget in BUDGETS:
        points = [best_for_budget(r.front, max_macs_fraction=budget) for r in runs]
        if any(p is None for p in points):
            lines.append(f"| <= {budget:.0%} MACs | a task has no subnetwork this small | | | |")
            continue
        subs = [p.eval[r.metric] for p, r in zip(points, runs)]
        of_avg = 100 * statistics.mean(subs) / statistics.mean(dense)
        per_task = statistics.mean(100 * s / d for s, d in zip(subs, dense))
        macs = statistics.mean(100 * p.macs_fraction for p in points)
        met = "" if budget != 0.5 else (" (target >= 99: met)" if of_avg >= TARGET else " (target >= 99: missed)")
        lines.append(f"| <= {budget:.0%} MACs | {statistics.mean(subs):.2f} | {of_avg:.1f}{met} | {per_task:.1f} | "
                     f"{macs:.1f} |")
    return lines


def cost_row(run: RunSummary) -> str:
    s, t = run.settings, run.timings_s
    epochs = "/".join(f"{s.get(f'{k}_epochs') or '-'}" for k in ("finetune", "movement", "supernet"))
    steps = f"{run.finetune['steps']}/{run.movement['steps']}/{run.supernet['steps']}"
    stages = ", ".join(f"{k} {v / 60:.0f}" for k, v in t.items())
    resumed = f", resumed {len(run.resumed)}x" if run.resumed else ""
    return (f"| {run.task} | {run.train_examples} | {run.search_examples} | {epochs} | {steps} | {stages} | "
            f"{run.wall_s / 60:.0f} min{resumed} | {run.device} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*")
    parser.add_argument("--fronts", action="store_true", help="print every run's whole front too")
    args = parser.parse_args()
    folders = args.folders or sorted(str(p) for p in Path("out/eftnas").glob("minilm-*"))
    runs = [load_run(Path(f)) for f in folders]
    print("| task | metric (split, examples) | model | metric | % of dense | minus dense [95% paired bootstrap] "
          "| GMACs (seq 128) | % of dense MACs | latency ms (batch 1, 128 tokens) | params (M) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        print("\n".join(quality_rows(run)))
    print(f"\nAverage over {len(runs)} tasks ({', '.join(r['task'] for r in runs)}):\n")
    print("| model | average metric | % of dense average | mean of per-task % | mean % of dense MACs |")
    print("|---|---|---|---|---|")
    print("\n".join(average_rows(runs)))
    print("\n| task | training examples | search examples | epochs (dense / movement / super-network) | steps | "
          "wall per stage (min) | wall | device |")
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(cost_row(run))
    if args.fronts:
        for run in runs:
            print(f"\n{run.task}:\n\n{front_table(run)}")


if __name__ == "__main__":
    main()
