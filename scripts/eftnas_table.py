"""The README's EFTNAS table: for each finished run folder, the dense model and the best subnetwork
on its Pareto front (by the search metric, never the reported one) within 75% and within 50% of the
dense MACs, with the reported metric, MACs at sequence length 128, latency, device and wall time.

    .venv/bin/python scripts/eftnas_table.py out/eftnas/minilm-*           # runs of scripts/eftnas_glue.sh
    .venv/bin/python scripts/eftnas_table.py assets/reference_eftnas/*     # the shipped results
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.eftnas import best_for_budget, load_run  # noqa: E402


def rows(folder: Path) -> list[str]:
    run = load_run(folder)
    metric, dense = run["metric"], run["dense"]
    dq = dense["eval"][metric]
    where = f"{run['eval_split']} ({run['eval_examples']})"
    out = [f"| {run['task']} | {metric}, {where} | dense | {dq:.2f} | 100 | {dense['gmacs']:.3f} | 100 | "
           f"{dense['latency_ms']:.1f} | {run['device']} | {run['wall_s'] / 60:.0f} min |"]
    for budget in (0.75, 0.5):
        p = best_for_budget(run["front"], max_macs_fraction=budget)
        if p is None:
            out.append(f"| {run['task']} | | <= {budget:.0%} MACs | none on the front | | | | | | |")
            continue
        q = p["eval"][metric]
        out.append(f"| {run['task']} | | <= {budget:.0%} MACs: heads {p['heads']}, FFN {p['neurons']} | {q:.2f} | "
                   f"{100 * q / dq:.1f} | {p['gmacs']:.3f} | {100 * p['macs_fraction']:.1f} | {p['latency_ms']:.1f} | | |")
    return out


def main(folders: list[str]) -> None:
    print("| task | metric (split, examples) | model | metric | % of dense | GMACs (seq 128) | % of dense MACs "
          "| latency ms (batch 1, 128 tokens) | device | wall |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for folder in folders:
        print("\n".join(rows(Path(folder))))


if __name__ == "__main__":
    main(sys.argv[1:] or sorted(str(p) for p in Path("out/eftnas").glob("minilm-*")))
