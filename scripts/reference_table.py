"""Print the reference runs of ``assets/reference_runs`` (or a given folder) as a markdown table.

    .venv/bin/python scripts/reference_table.py [folder]
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.runs.store import list_runs


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "assets" / "reference_runs"
    prov = json.loads((folder / "provenance.json").read_text())
    runs = sorted(list_runs(folder), key=lambda r: -r.metrics["measurements"]["pruned"]["latency"]["latency_ms"])
    print(f"`{prov['command']}`, {prov['date']}, commit {prov['commit']}, {prov['machine']}:\n")
    print("| run | decoder layers kept | encoder sparsity | accuracy (dense) | end-to-end ms (dense) | speed-up | GMACs "
          "| params (M) |")
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        m = run.metrics
        q, d = m["quality"]["pruned"], m["quality"]["dense"]
        main = q["main_metric"]
        lat, dlat = (m["measurements"][k]["latency"]["latency_ms"] for k in ("pruned", "dense"))
        print(f"| {run.run_id} | {m['decoder_layers_kept']} | {m['encoder_sparsity_achieved']:.2f} | "
              f"{q['metrics'][main]:.1f} ({d['metrics'][main]:.1f}) | {lat:.0f} ({dlat:.0f}) | "
              f"{m['speedup_end_to_end']:.2f}x | {m['measurements']['pruned']['macs']['gmacs']:.2f} | "
              f"{m['measurements']['pruned']['params']['params_m']:.1f} |")
    first = runs[0].metrics["quality"]["pruned"]
    print(f"\n{first['main_metric']} on {first['num_examples']} {first['split']} examples of "
          f"{runs[0].metrics['task']}; latency batch 1, 256 input and 64 new tokens, greedy, median of 5.")


if __name__ == "__main__":
    main()
