#!/usr/bin/env bash
# EFTNAS on MiniLM-L6 (real weights, offline package) for GLUE tasks from ../shared/data, on a CPU
# subset: dense fine-tune, NNCF movement importance, search space, super-network (NNCF BootstrapNAS
# elastic width, sandwich rule, distillation), NSGA-II search, Pareto front on the GLUE dev split.
# Prints each run's table; the README's EFTNAS table comes from these runs.
#
#   TASKS="sst2 mrpc rte cola" OMP_NUM_THREADS=1 bash scripts/eftnas_glue.sh
#
# Settings (environment): OUT (runs folder, default out/eftnas), DATA (default ../shared/data),
# TRAIN_SAMPLES, FINETUNE_STEPS, MOVEMENT_STEPS, SUPERNET_STEPS, POPULATION, GENERATIONS, DEVICE.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/eftnas}"
DATA="${DATA:-../shared/data}"
for task in ${TASKS:-sst2}; do
    start=$(date +%s)
    HF_HUB_OFFLINE=1 .venv/bin/python -m explorer eftnas --model minilm --task "$task" --data-dir "$DATA" \
        --out "$OUT/minilm-$task" --overwrite --train-samples "${TRAIN_SAMPLES:-4000}" --eval-samples 0 \
        --search-samples "${SEARCH_SAMPLES:-400}" --finetune-steps "${FINETUNE_STEPS:-400}" \
        --movement-steps "${MOVEMENT_STEPS:-300}" --supernet-steps "${SUPERNET_STEPS:-600}" \
        --population "${POPULATION:-16}" --generations "${GENERATIONS:-8}" --device "${DEVICE:-cpu}"
    echo "$task: $(( $(date +%s) - start )) s wall"
done
