#!/usr/bin/env bash
# The documented real-input run (README, "Real input: MiniLM2MiniLM on SAMSum"):
# dense fine-tune (cached), training-free NASH (2 of 6 decoder layers, encoder sparsity 0.3),
# recovery fine-tune, ROUGE on SAMSum test, latency of dense vs pruned.
# On CPU this is a documented subset (steps, evaluation size below); on a GPU pass --device cuda
# and larger numbers through the environment, e.g. FINETUNE_STEPS=3000 EVAL_SAMPLES=819.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${DATA:-../shared/data/SAMSum}"
OUT="${OUT:-out/samsum-nash-s0.3-k2}"
HF_HUB_OFFLINE=1 .venv/bin/python -m explorer prune --model minilm2minilm --task samsum --data-dir "$DATA" \
    --encoder-sparsity 0.3 --decoder-layers 2 --layer-selection uniform \
    --finetune-steps "${FINETUNE_STEPS:-500}" --batch-size "${BATCH_SIZE:-8}" --learning-rate "${LEARNING_RATE:-3e-4}" \
    --recovery-steps "${RECOVERY_STEPS:-150}" --calibration-samples 64 --eval-samples "${EVAL_SAMPLES:-200}" \
    --input-tokens 256 --new-tokens 64 --repeats 5 --device "${DEVICE:-cpu}" --out "$OUT" --overwrite
