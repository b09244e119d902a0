#!/usr/bin/env bash
# Ship finished runs as reference runs: copy metrics.json and plan.json of every run folder in WORK
# into DEST (no weights), with a provenance.json (command, date, commit, machine), replacing DEST
# only once the copy is complete. Used by scripts/reference_runs.sh and scripts/samsum_comparison.sh.
#   bash scripts/ship_runs.sh WORK DEST DEVICE "COMMAND"
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="$1"; DEST="$2"; DEVICE="$3"; COMMAND="$4"
STAGE="$(mktemp -d "$(dirname "$DEST")/.$(basename "$DEST").XXXX")"
for run in "$WORK"/*/; do
    [ -f "$run/metrics.json" ] || continue
    mkdir -p "$STAGE/$(basename "$run")"
    cp "$run/metrics.json" "$run/plan.json" "$STAGE/$(basename "$run")/"
done
.venv/bin/python - "$STAGE" "$DEVICE" "$COMMAND" <<'PY'
import json, subprocess, sys
from datetime import datetime, timezone
from explorer.evaluation.latency import device_description
stage, device, command = sys.argv[1:4]
commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
json.dump({"command": command, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "commit": commit or "unknown",
           "machine": device_description(device),
           "note": "measured by this project; each run's metrics.json records its device, settings and wall times"},
          open(f"{stage}/provenance.json", "w"), indent=1)
PY
rm -rf "$DEST.old"
[ -d "$DEST" ] && mv "$DEST" "$DEST.old"
mv "$STAGE" "$DEST"
rm -rf "$DEST.old"
echo "wrote $DEST" >&2
