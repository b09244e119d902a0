#!/usr/bin/env bash
# NASH's tables on real weights: MiniLM2MiniLM (MiniLM-L6 encoder and decoder, real pretrained
# weights from the offline package) fine-tuned with every training example of each task, then
# every method at the same two budgets with the same training after the dense fine-tune:
#   training-free NASH   Taylor importance, then GATE_STEPS + RECOVERY_STEPS recovery steps
#   learned NASH         hard-concrete encoder gates + distillation: GATE_STEPS, then RECOVERY_STEPS
#   learned, no distill  the same without distillation
#   decoder-only         the decoder shortened, the encoder whole: GATE_STEPS + RECOVERY_STEPS recovery
#   CoFi                 every decoder layer kept, gates on encoder and decoder widths, at the sparsity
#                        whose speed-up matches learned NASH's within 5% (scripts/cofi_match.py)
#   dense-trained        the control: the dense model itself (nothing removed) given the same GATE_STEPS +
#                        RECOVERY_STEPS of training as every method, once per task, so that a method's gain
#                        over dense that is only more training shows (scripts/nash_tables.py compares with it)
# After a task's runs, scripts/nash_retime.py times all of them again in one process (alternating rounds
# against the dense model), so that methods compare at equal footing.
# Budgets (decoder layers kept of 6 : encoder sparsity): 3:0.3 and 1:0.5. Quality on the whole
# evaluation split (GLUE dev, SAMSum test, rotten_tomatoes test), each run with a paired bootstrap
# interval against dense (scripts/nash_tables.py adds the one against training-free NASH); latency
# at 256 in / 64 out and at the task's median lengths.
#
# The dense fine-tune has a learning curve (the main metric on 200 held-out examples every
# CURVE_EVERY steps: SAMSum validation dialogues; for GLUE, training examples held out of training,
# never the dev set) and keeps its best point; it stops after PATIENCE_<TASK> points without a new best.
#
#   nohup setsid bash scripts/nash_tables.sh > out/nash-tables.log 2>&1 &     # many hours on 2 CPU cores
#   # or one job per core, each taking the tasks the other does not hold (together 1.19-1.34x more training
#   # steps per minute than one two-thread job: scripts/bench_jobs.py):
#   OMP_NUM_THREADS=1 TASKS="rte mrpc stsb" nohup setsid bash scripts/nash_tables.sh > out/nash-a.log 2>&1 &
#   OMP_NUM_THREADS=1 TASKS="cola sst2 samsum rte" nohup setsid bash scripts/nash_tables.sh > out/nash-b.log 2>&1 &
#
# Resumable: run it again and every finished run is kept, an unfinished one continues from its last
# stage or checkpoint, the dense fine-tune from its checkpoints (prune --resume); on a new machine the shipped
# runs are restored first (below). TASKS picks tasks
# (default: rte mrpc stsb cola rotten_tomatoes sst2 samsum), BUDGETS ("3:0.3 1:0.5"), METHODS
# ("dense-trained training-free learned learned-nodistill decoder-only cofi"); OUT (out/nash), DATA (../shared/data),
# DEVICE (cpu), PAUSE_PIDS (background jobs stopped while re-timing), RESTORE and SHIP (below). Per task (environment): EPOCHS_<TASK>, GATE_STEPS_<TASK>, RECOVERY_STEPS_<TASK>,
# BATCH_<TASK>, LR_<TASK>, CURVE_EVERY_<TASK>, NEW_DENSE_<TASK> (below); TRAIN_SAMPLES / EVAL_SAMPLES limit the data (pilots only).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/nash}"
DATA="${DATA:-../shared/data}"
# Dense epochs: SST-2 one pass (67k examples), the small tasks five with the best point kept, SAMSum two
# (1,842 steps of 16 dialogues: about 3 h on one core of an AMD EPYC, the issue's budget; the curve stops it earlier
# when ROUGE-L on 200 validation dialogues stops improving).
declare -A EPOCHS=([rte]=5 [mrpc]=5 [stsb]=5 [cola]=5 [rotten_tomatoes]=3 [sst2]=1 [samsum]=2)
declare -A BATCH=([rte]=32 [mrpc]=32 [stsb]=32 [cola]=32 [rotten_tomatoes]=32 [sst2]=32 [samsum]=16)
declare -A LR=([rte]=1e-4 [mrpc]=1e-4 [stsb]=1e-4 [cola]=1e-4 [rotten_tomatoes]=1e-4 [sst2]=1e-4 [samsum]=2e-4)
declare -A CURVE=([rte]=40 [mrpc]=60 [stsb]=90 [cola]=130 [rotten_tomatoes]=100 [sst2]=250 [samsum]=200)
declare -A GATES=([rte]=400 [mrpc]=400 [stsb]=400 [cola]=400 [rotten_tomatoes]=400 [sst2]=600 [samsum]=600)
declare -A RECOVERY=([rte]=200 [mrpc]=200 [stsb]=200 [cola]=200 [rotten_tomatoes]=200 [sst2]=300 [samsum]=300)
# Patience: curve points without a new best before the dense fine-tune stops (0: never; the best point is kept).
# SAMSum never stops early: its curve sits on a plateau of one generic summary for the first few hundred steps
# (ROUGE-L ~11 with 1-2 distinct outputs on 200 dialogues), which patience would take for convergence.
declare -A PATIENCE=([rte]=4 [mrpc]=4 [stsb]=4 [cola]=4 [rotten_tomatoes]=4 [sst2]=4 [samsum]=0)
# Several jobs may run this script at once (e.g. one per CPU core with OMP_NUM_THREADS=1 and different TASKS
# orders): each task is held by one job at a time (a lock per task; a job skips a task another holds), each
# job registers its process group in $OUT/.jobs, and every timing (re-timing, CoFi matching) takes the lock
# $OUT/.timing.lock and stops the other registered jobs meanwhile. Run-time speed-ups of runs trained beside
# another job are superseded by the task's re-timing.
mkdir -p "$OUT/.jobs"
me=$(ps -o pgid= $$ | tr -d ' ')
touch "$OUT/.jobs/$me"
trap 'rm -f "$OUT/.jobs/$me"' EXIT
timing=(--lock "$OUT/.timing.lock" --pause-registry "$OUT/.jobs")
# A new machine holds none of the runs already shipped (assets/reference_runs_nash_<task>): their results come
# back first (metrics, plans, predictions, CoFi matching records; no weights), so that they count as finished and
# only what is missing trains. The re-timing and the CoFi matching time a restored run as its architecture, rebuilt
# from its plan.json (explorer/evaluation/timing_models.py: equal shapes time the same). A task's dense fine-tune
# is made again where a missing run needs it (seed 0, the same settings).
# RESTORE=0: don't (a task's table made again from start to end in its own OUT, e.g. SAMSum on a new dense
# fine-tune: with SHIP=0 or SHIP=redo, nothing of it reaches the shipped tables until it is complete and shipped on
# purpose). RESTORE=redo: bring back instead the runs such a table staged in assets/redo/ (SHIP=redo, below); they
# count only if the dense fine-tune made again here is bit-identical (seeded, same threads and CPU; NEW_DENSE_<TASK>=1).
if [ "${RESTORE:-1}" = 1 ]; then
    HF_HUB_OFFLINE=1 flock "$OUT/.ship.lock" .venv/bin/python scripts/nash_tables.py "$OUT" --restore
elif [ "${RESTORE:-1}" = redo ]; then
    HF_HUB_OFFLINE=1 flock "$OUT/.ship.lock" .venv/bin/python scripts/nash_tables.py "$OUT" --restore --redo
fi
# Results (no weights) of every finished run go to assets/reference_runs_nash_<task> as soon as the run ends
# (scripts/nash_tables.py --ship --task, that task only), so that a machine lost mid-table loses weights, not
# results. SHIP=0: don't. SHIP=redo: stage them in assets/redo/ instead (a table made again: --ship --redo), for
# the commit that keeps them until the whole table replaces the shipped one (nash_tables.py --ship --replace).
ship() {
    local how=()
    case "${SHIP:-1}" in 1) ;; redo) how=(--redo) ;; *) return 0 ;; esac
    if ! HF_HUB_OFFLINE=1 flock "$OUT/.ship.lock" .venv/bin/python scripts/nash_tables.py "$OUT" --ship "${how[@]}" --task "$task" > /dev/null; then
        echo "== shipping the finished runs failed (the runs are kept in $OUT)" >&2
        # Staging refuses a table made again whose runs come from two dense fine-tunes (the one made again on this
        # machine is not the staged runs' own) or that lacks a staged run: every further run would be wasted.
        if [ "${SHIP:-1}" = redo ]; then echo "== $task: stopped; nash_tables.py says why above" >&2; exit 3; fi
    fi
}
# The same after each CoFi try (a CPU hour each): the command cofi_match.py --after-try runs, so that a search
# cut off by a lost machine keeps its finished tries and its record. Staging that fails (SHIP=redo) stops it.
ship_command() {
    local how=()
    case "${SHIP:-1}" in 1) ;; redo) how=(--redo) ;; *) return 0 ;; esac
    printf '%q ' env HF_HUB_OFFLINE=1 flock "$OUT/.ship.lock" .venv/bin/python scripts/nash_tables.py "$OUT" --ship \
        "${how[@]}" --task "$task"
    if [ "${SHIP:-1}" = redo ]; then echo "> /dev/null"; else echo "> /dev/null || true"; fi
}
for task in ${TASKS:-rte mrpc stsb cola rotten_tomatoes sst2 samsum}; do
    exec {task_lock}>"$OUT/.$task.lock"
    if ! flock -n "$task_lock"; then echo "== $task: another job holds it, skipped" >&2; exec {task_lock}>&-; continue; fi
    upper=${task^^}
    var() { local name="$1_$upper"; echo "${!name:-$2}"; }
    gate=$(var GATE_STEPS "${GATES[$task]}"); recovery=$(var RECOVERY_STEPS "${RECOVERY[$task]}")
    both=$((gate + recovery))
    data=(--data-dir "$DATA"); [ "$task" = rotten_tomatoes ] && data=()
    common=(--model minilm2minilm --task "$task" "${data[@]}" --device "${DEVICE:-cpu}"
            --finetune-epochs "$(var EPOCHS "${EPOCHS[$task]}")" --batch-size "$(var BATCH "${BATCH[$task]}")"
            --learning-rate "$(var LR "${LR[$task]}")" --curve-every "$(var CURVE_EVERY "${CURVE[$task]}")"
            --keep-best --patience "$(var PATIENCE "${PATIENCE[$task]}")" --eval-samples "${EVAL_SAMPLES:-0}" --calibration-samples 256
            --input-tokens 256 --new-tokens 64 --repeats 5 --save-steps 100 --resume)
    [ -n "${TRAIN_SAMPLES:-}" ] && common+=(--train-samples "$TRAIN_SAMPLES")
    # Runs restored from shipped results were pruned from a dense fine-tune that stayed on the machine that made
    # them; one made again here (same seed and settings) was another model while the decoder's new cross-attention
    # was unseeded (every one shipped before 2026-12-03; MRPC's on 2026-12-02: curve 83.7 74.4 78.4 against 83.5
    # 83.6 86.0), and since then is bit-identical only at the same thread count on the same CPU. So such a task
    # trains nothing new unless NEW_DENSE_<TASK>=1 (nash_tables.py keeps runs of another dense model apart, and
    # staging refuses them); its re-timing still runs.
    status=$(HF_HUB_OFFLINE=1 .venv/bin/python scripts/nash_tables.py "$OUT/$task" --dense-status 2>/dev/null || echo none)
    train=1
    if [ "$status" = absent ] || [ "$status" = different ]; then
        if [ "$(var NEW_DENSE 0)" = 1 ]; then
            echo "== $task: its shipped runs' dense fine-tune is $status here; NEW_DENSE_$upper=1: new runs train from a new one (kept apart in the tables)" >&2
        else
            echo "== $task: its shipped runs' dense fine-tune is $status here; nothing new trains (NEW_DENSE_$upper=1 overrides)" >&2
            train=0
        fi
    fi
    budgets=(${BUDGETS:-3:0.3 1:0.5}); first_budget=${budgets[0]}
    layers=$(HF_HUB_OFFLINE=1 .venv/bin/python -c "from explorer.models.loading import peek_decoder_layers as p; print(p('minilm2minilm'))")
    for budget in "${budgets[@]}"; do
        k=${budget%%:*}; s=${budget##*:}
        [ "$train" = 1 ] || break
        for method in ${METHODS:-dense-trained training-free learned learned-nodistill decoder-only cofi}; do
            out="$OUT/$task/$method-k$k-s$s"
            case "$method" in
                dense-trained) [ "$budget" = "$first_budget" ] || continue  # one control per task, not per budget
                               out="$OUT/$task/dense-trained-k$layers-s0"
                               args=(--method decoder-only --encoder-sparsity 0 --decoder-layers "$layers"
                                     --recovery-steps "$both") ;;
                training-free) args=(--method nash-training-free --encoder-sparsity "$s" --recovery-steps "$both") ;;
                learned) args=(--method nash-learned --encoder-sparsity "$s" --gate-steps "$gate" --recovery-steps "$recovery") ;;
                learned-nodistill) args=(--method nash-learned --no-distill --encoder-sparsity "$s" --gate-steps "$gate"
                                         --recovery-steps "$recovery") ;;
                decoder-only) out="$OUT/$task/decoder-only-k$k-s0"
                              args=(--method decoder-only --encoder-sparsity 0 --recovery-steps "$both") ;;
                cofi) [ -f "$OUT/$task/learned-k$k-s$s/metrics.json" ] || { echo "== $task cofi k$k s$s: no learned run to match" >&2; continue; }
                      echo "== $task: CoFi matched to learned-k$k-s$s" >&2
                      after=(); hook=$(ship_command); [ -z "$hook" ] || after=(--after-try "$hook")
                      HF_HUB_OFFLINE=1 .venv/bin/python scripts/cofi_match.py "$OUT/$task/learned-k$k-s$s" --out "$OUT/$task" \
                          "${timing[@]}" "${after[@]}" --pause-pid ${PAUSE_PIDS:-}
                      ship
                      continue ;;
                *) echo "unknown method $method" >&2; exit 2 ;;
            esac
            if [ -f "$out/metrics.json" ]; then echo "== $task ${out##*/}: finished earlier ($out)" >&2; continue; fi
            echo "== $task ${out##*/} -> $out ($(date -u +%H:%M))" >&2
            start=$(date +%s)
            HF_HUB_OFFLINE=1 .venv/bin/python -m explorer prune "${common[@]}" --decoder-layers "$k" "${args[@]}" --out "$out"
            echo "== $task ${out##*/}: $(( $(date +%s) - start )) s wall" >&2
            ship
        done
    done
    # every run of the task timed again together, in alternating rounds (PAUSE_PIDS: jobs to stop meanwhile)
    echo "== $task: re-timing every run together" >&2
    HF_HUB_OFFLINE=1 .venv/bin/python scripts/nash_retime.py "$OUT/$task" "${timing[@]}" --pause-pid ${PAUSE_PIDS:-}
    ship
    exec {task_lock}>&-
done
