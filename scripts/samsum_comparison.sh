#!/usr/bin/env bash
# The SAMSum method comparison (README, "Methods compared on SAMSum"): MiniLM2MiniLM (real pretrained
# weights, offline), one dense fine-tune (cached; the same as scripts/real_input_samsum.sh), then at one
# budget (1 of 6 decoder layers, encoder sparsity 0.5) each method with the same number of training
# steps after the dense fine-tune:
#   nash-learned (gates + distillation), nash-learned without distillation: GATE_STEPS gate steps,
#       then RECOVERY_STEPS final fine-tune steps;
#   nash-learned with learned decoder layers (decoder layer gates, target 1 - k/L);
#   nash-training-free and decoder-only: GATE_STEPS + RECOVERY_STEPS recovery steps;
#   cofi-S (e.g. cofi-0.5): CoFi at sparsity S over encoder and decoder, every decoder layer kept
#       (CoFi narrows them instead), GATE_STEPS gate steps then RECOVERY_STEPS final fine-tune steps;
#       several S so that one lands near NASH's latency ("CoFi at the same end-to-end latency").
# ROUGE on the first EVAL_SAMPLES SAMSum test dialogues; timing at 256 input / 64 new tokens.
# Runs that already have metrics.json in $WORK are kept (delete them to redo); RUNS picks a subset.
# Then metrics.json and plan.json of every run are copied to assets/reference_runs_samsum/ with a
# provenance.json, and the table is printed.
#   bash scripts/samsum_comparison.sh    # both cores (the shipped 2026-11-21 run was pinned to one); superseded by scripts/nash_tables.sh
#   DEVICE=cuda GATE_STEPS=2000 RECOVERY_STEPS=2000 EVAL_SAMPLES=819 FINETUNE_STEPS=5000 bash scripts/samsum_comparison.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE="${DEVICE:-cpu}"
DATA="${DATA:-../shared/data/SAMSum}"
WORK="${WORK:-out/samsum-compare}"
DEST="${DEST:-assets/reference_runs_samsum}"
GATE_STEPS="${GATE_STEPS:-50}"
RECOVERY_STEPS="${RECOVERY_STEPS:-50}"
EVAL_SAMPLES="${EVAL_SAMPLES:-100}"
K="${K:-1}"
S="${S:-0.5}"
RUNS="${RUNS:-learned training-free decoder-only learned-nodistill learned-decoder cofi-0.5 cofi-0.8}"
DECODER_LAYERS="${DECODER_LAYERS:-6}"  # L of MiniLM2MiniLM: what CoFi keeps
common=(--model minilm2minilm --task samsum --data-dir "$DATA" --decoder-layers "$K"
        --finetune-steps "${FINETUNE_STEPS:-500}" --batch-size 8 --learning-rate 3e-4 --calibration-samples 64
        --eval-samples "$EVAL_SAMPLES" --input-tokens 256 --new-tokens 64 --repeats 5 --device "$DEVICE" --overwrite)
both=$((GATE_STEPS + RECOVERY_STEPS))
for run in $RUNS; do
    out="$WORK/minilm2minilm__samsum__${run}-k${K}-s${S}"
    [[ "$run" == cofi-* ]] && out="$WORK/minilm2minilm__samsum__cofi-k${DECODER_LAYERS}-s${run#cofi-}"
    [ -f "$out/metrics.json" ] && { echo "== $run: kept $out" >&2; continue; }
    echo "== $run -> $out" >&2
    case "$run" in
        learned) args=(--method nash-learned --encoder-sparsity "$S" --gate-steps "$GATE_STEPS" --recovery-steps "$RECOVERY_STEPS") ;;
        learned-nodistill) args=(--method nash-learned --no-distill --encoder-sparsity "$S" --gate-steps "$GATE_STEPS" --recovery-steps "$RECOVERY_STEPS") ;;
        learned-decoder) args=(--method nash-learned --layer-selection learned --encoder-sparsity "$S" --gate-steps "$GATE_STEPS" --recovery-steps "$RECOVERY_STEPS") ;;
        training-free) args=(--method nash-training-free --encoder-sparsity "$S" --recovery-steps "$both") ;;
        decoder-only) args=(--method decoder-only --encoder-sparsity 0 --recovery-steps "$both") ;;
        cofi-*) args=(--method cofi --decoder-layers "$DECODER_LAYERS" --encoder-sparsity "${run#cofi-}"
                      --gate-steps "$GATE_STEPS" --recovery-steps "$RECOVERY_STEPS") ;;
        *) echo "unknown run $run" >&2; exit 2 ;;
    esac
    HF_HUB_OFFLINE=1 .venv/bin/python -m explorer prune "${common[@]}" "${args[@]}" --out "$out"
done
bash scripts/ship_runs.sh "$WORK" "$DEST" "$DEVICE" "DEVICE=$DEVICE bash scripts/samsum_comparison.sh"
.venv/bin/python scripts/comparison_table.py "$DEST"
