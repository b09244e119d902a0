"""Time the dense model and every front member of finished EFTNAS run folders again, on a quiet
machine, and write the new latencies into their eftnas.json and front.json (the old ones are kept
as ``latency_ms_first``). A long run times its front at its end, whatever else the machine was doing
then; this gives every run the same quiet conditions.

    .venv/bin/python scripts/eftnas_retime.py out/eftnas/minilm-cola out/eftnas/minilm-rte [--pause-pid PID]

Each latency is ``explorer.eftnas.classifier_latency_ms``: one forward pass, batch 1, 128 tokens,
median of ``--repeats`` after warm-up, on the CPU with torch's default threads.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def retime(folder: Path, repeats: int) -> None:
    from explorer.eftnas import FRONT_FILE, RUN_FILE, classifier_latency_ms, extract_for_budget, load_run
    from explorer.measure import device_description
    from nas.supernet import load_classifier_weights

    run = load_run(folder)
    dense = load_classifier_weights(folder / "dense")
    dense_ms = classifier_latency_ms(dense, repeats=repeats)
    run["dense"].setdefault("latency_ms_first", run["dense"]["latency_ms"])
    run["dense"]["latency_ms"] = dense_ms
    for point in run["front"]:
        sub, _, _ = extract_for_budget(folder, point)
        point.setdefault("latency_ms_first", point["latency_ms"])
        point["latency_ms"] = classifier_latency_ms(sub, repeats=repeats)
    run["retimed"] = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "device": device_description("cpu"),
                      "repeats": repeats, "command": "scripts/eftnas_retime.py"}
    for name, data in ((FRONT_FILE, run["front"]), (RUN_FILE, run)):
        tmp = folder / f".{name}.tmp"
        tmp.write_text(json.dumps(data, indent=1, default=str))
        os.replace(tmp, folder / name)
    print(f"{folder}: dense {dense_ms:.1f} ms; front " + ", ".join(f"{p['latency_ms']:.1f}" for p in run["front"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--pause-pid", type=int, nargs="*", default=[],
                        help="processes to stop (SIGSTOP) while timing and continue afterwards")
    args = parser.parse_args()
    for pid in args.pause_pid:
        os.kill(pid, signal.SIGSTOP)
    try:
        for folder in args.folders:
            retime(Path(folder), args.repeats)
    finally:
        for pid in args.pause_pid:
            os.kill(pid, signal.SIGCONT)


if __name__ == "__main__":
    main()
