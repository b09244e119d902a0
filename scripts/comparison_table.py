"""Print the SAMSum method comparison (``assets/reference_runs_samsum`` or a given folder) as a
markdown table: the dense model once, then one row per method run.

    .venv/bin/python scripts/comparison_table.py [folder]
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.runs.store import list_runs


def _label(m: dict) -> str:
    method = m["method"]
    if method == "nash-learned":
        label = "NASH learned" + (" + distillation" if m["gate_training"]["distill"] else ", no distillation")
        if m["settings"]["layer_selection"] == "learned":
            label += ", learned decoder layers"
        return label
    if method == "cofi":
        return "CoFi (encoder + decoder widths, hidden dims)"
    return {"nash-training-free": "NASH training-free", "decoder-only": "decoder-only shortening"}.get(method, method)


def _sparsity(m: dict) -> str:
    """Encoder sparsity; for CoFi, whose target covers encoder and decoder, that one too."""
    text = f"{m['encoder_sparsity_achieved']:.2f}"
    if m["method"] == "cofi" and "encoder_decoder_sparsity_achieved" in m:
        text += f" (enc + dec {m['encoder_decoder_sparsity_achieved']:.2f})"
    return text


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "assets" / "reference_runs_samsum"
    prov = json.loads((folder / "provenance.json").read_text())
    runs = sorted(list_runs(folder), key=lambda r: r.run_id)
    if not runs:
        raise SystemExit(f"No runs in {folder}.")
    print(f"`{prov['command']}`, {prov['date']}, commit {prov['commit']}, {prov['machine']}:\n")
    print("| model | decoder layers kept | encoder sparsity | ROUGE-1 | ROUGE-2 | ROUGE-L | % of dense ROUGE-L "
          "| end-to-end ms | speed-up | training after dense (steps) | wall min |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    d = runs[0].metrics
    dq = d["quality"]["dense"]["metrics"]
    dense_ms = sorted(r.metrics["measurements"]["dense"]["latency"]["latency_ms"] for r in runs)
    print(f"| dense (fine-tuned {d['settings']['finetune']['max_steps']} steps) | all | 0 | {dq['rouge1']:.2f} | "
          f"{dq['rouge2']:.2f} | {dq['rougeL']:.2f} | 100 | {dense_ms[len(dense_ms) // 2]:.0f} "
          f"({dense_ms[0]:.0f}-{dense_ms[-1]:.0f}) | 1.00x | - | - |")
    for run in runs:
        m = run.metrics
        q = m["quality"]["pruned"]["metrics"]
        dense_l = m["quality"]["dense"]["metrics"]["rougeL"]
        steps = (m["gate_training"] or {}).get("steps", 0) + (m["recovery_finetune"] or {}).get("steps", 0)
        wall = sum(v for k, v in m["stage_wall_s"].items() if k != "dense") / 60
        enforced = " *" if (m["gate_training"] or {}).get("target_enforced") else ""
        print(f"| {_label(m)} | {m['decoder_layers_kept']} | {_sparsity(m)}{enforced} | "
              f"{q['rouge1']:.2f} | {q['rouge2']:.2f} | {q['rougeL']:.2f} | {100 * q['rougeL'] / dense_l:.1f} | "
              f"{m['measurements']['pruned']['latency']['latency_ms']:.0f} | {m['speedup_end_to_end']:.2f}x | "
              f"{steps} | {wall:.1f} |")
    print("\nEach speed-up is against the dense model timed in the same run (its latency: the range in the dense "
          "row).")
    print("\n\\* the gates' expected sparsity had not reached the target when gate training ended; the plan removed "
          "the lowest-scoring remaining units to meet it (see the README).")


if __name__ == "__main__":
    main()
