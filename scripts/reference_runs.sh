#!/usr/bin/env bash
# The reference runs that ship in assets/reference_runs/ and make the explorer's first look:
# MiniLM2MiniLM (real pretrained weights, offline) on rotten_tomatoes, training-free NASH at six
# budgets, each with the same dense fine-tune (250 steps, cached), 100 recovery steps, 200 test
# examples and timing at 256 input / 64 new tokens, 64 calibration examples (the default when the
# shipped runs were made; today's default is a 4096-token budget). Only metrics.json and plan.json are kept
# (no weights: the Compare tab uses runs you make yourself). provenance.json records the command,
# the date, the commit and the machine. Takes about 10 minutes on 2 CPU cores.
#   bash scripts/reference_runs.sh            # CPU (what ships)
#   DEVICE=cuda bash scripts/reference_runs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE="${DEVICE:-cpu}"
DEST="${DEST:-assets/reference_runs}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
BUDGETS=("6 0.3" "3 0.0" "3 0.3" "2 0.3" "2 0.6" "1 0.3")
for budget in "${BUDGETS[@]}"; do
    read -r k s <<<"$budget"
    name="minilm2minilm__rotten_tomatoes__k${k}-s${s}"
    echo "== $name" >&2
    HF_HUB_OFFLINE=1 .venv/bin/python -m explorer prune --model minilm2minilm --task rotten_tomatoes \
        --encoder-sparsity "$s" --decoder-layers "$k" --layer-selection uniform --finetune-steps 250 \
        --recovery-steps 100 --eval-samples 200 --input-tokens 256 --new-tokens 64 --repeats 5 \
        --calibration-samples 64 --calibration-tokens 1000000000 \
        --device "$DEVICE" --out "$WORK/$name"
done
bash scripts/ship_runs.sh "$WORK" "$DEST" "$DEVICE" "DEVICE=$DEVICE bash scripts/reference_runs.sh"
.venv/bin/python scripts/reference_table.py "$DEST"
