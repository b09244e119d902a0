"""The pruning pipeline (every method) as one function the CLI, the UI and the tests call.

Stages (NASH, arXiv 2310.10054, Sec. 4):
    1. dense model fine-tuned on the task (cached);
    2. the encoder plan, by method: training-free Taylor importance of every encoder head and
       FFN neuron from calibration batches (``nash-training-free``), learned hard-concrete gates
       (``nash-learned``, ``explorer.training.gates``), none (``decoder-only``), or the CoFi baseline's
       gates on encoder and decoder widths (``cofi``, every decoder layer kept);
    3. plan: encoder units removed to the target sparsity, k of L decoder layers kept
       (uniform / low / high, or learned by decoder layer gates);
    4. surgery: a physically smaller model;
    5. optional recovery fine-tuning of the pruned model;
    6. quality of dense and pruned models on the task's evaluation split;
    7. latency, MACs and parameters of both.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

from explorer.data.splits import load_split
from explorer.data.tasks import get_task
from explorer.evaluation.generation import evaluate_quality
from explorer.evaluation.latency import device_description
from explorer.evaluation.scoring import paired_interval
from explorer.models.loading import LoadedModel, peek_decoder_layers
from explorer.pipelines.nash_settings import PruneSettings
from explorer.pipelines.nash_steps import _cached, _dense_identity, make_plan, measure_all, task_lengths
from explorer.training.finetune import (FinetuneSettings, cached_dense_finetune, finetune, resolve_device,
                                        training_examples)
from pruning.atomic import atomic_write_text

Progress = Callable[[float, str], None]


PREDICTIONS_FILE = "predictions.json"  # every output of the dense and the pruned model on the evaluated examples


def run_prune(settings: PruneSettings, out_dir: str | os.PathLike, *, overwrite: bool = False,
              progress: Progress | None = None, resume: bool = False, keep_unfinished: bool = True) -> dict:
    """Run one method end to end and write the pruned model, ``plan.json`` and ``metrics.json``
    into ``out_dir``. Under ``accelerate launch`` (several processes) every process trains, and
    only the main process evaluates, times and writes; the others return ``{"skipped": ...}``.

    Nothing is written to ``out_dir`` until everything succeeded; then the folder
    appears at once (temporary sibling + rename). Meanwhile the run works in a resumable work
    folder (``explorer.runs.stages``): the plan and pruned model, the recovered model (with Trainer
    checkpoints every 500 steps), the evaluation and the timing are recorded as they finish, and
    ``resume`` continues an interrupted run with the same settings from there (the dense fine-tune
    resumes from its own checkpoints in the cache). ``keep_unfinished=False`` (the UI) removes the
    work folder when the run fails or is cancelled.

    Returns:
        The metrics dict written to ``metrics.json``.

    Raises:
        ValueError: Bad settings (sparsity, decoder layers, task, device), an unsupported
            model, unusable data, or a non-empty ``out_dir`` without ``overwrite``.
    """
    say = progress or (lambda fraction, message: None)
    settings.check()
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise ValueError(f"{out_dir} exists and is not empty; pass --overwrite or choose another --out.")
    device = resolve_device(settings.device)
    n_dec = peek_decoder_layers(settings.model)
    if settings.decoder_layers > n_dec:
        raise ValueError(f"The model has {n_dec} decoder layers; cannot keep {settings.decoder_layers}.")
    if settings.method == "cofi" and settings.decoder_layers != n_dec:
        raise ValueError(f"CoFi keeps every decoder layer and narrows them instead; set decoder layers to {n_dec} "
                         f"(its sparsity target covers encoder and decoder).")
    # Read the data once, before any long work, so a bad file fails at once.
    spec = get_task(settings.task)
    # The dense fine-tune's training examples (less those its learning curve holds out) train every method.
    train, _ = training_examples(settings.task, settings.finetune, settings.data_dir)
    examples = load_split(settings.task, spec.eval_split, data_dir=settings.data_dir, limit=settings.eval_samples)
    from explorer.runs.stages import RunFolder

    # Under `accelerate launch` / torchrun only rank 0 writes the work folder (read from the launcher's
    # environment: the distributed state is set up later, by the Trainer).
    main_process = int(os.environ.get("RANK", "0")) == 0
    work = RunFolder(out_dir, asdict(settings), resume=resume, writer=main_process)
    try:
        return _run_prune_stages(settings, out_dir, work, spec, train, examples, device, say)
    except BaseException:
        if main_process and (not keep_unfinished or not work.has_progress()):
            shutil.rmtree(work.path, ignore_errors=True)  # (kept only when a resumed run would use it)
        raise
    finally:
        work.release()


def _run_prune_stages(settings: PruneSettings, out_dir: Path, work, spec, train, examples, device: str,
                      say: Progress) -> dict:
    """The stages of :func:`run_prune` (``work``: its RunFolder; only the main process's writes)."""
    from pruning import (PruningPlan, encoder_decoder_sparsity, encoder_sparsity, get_adapter, load_pruned, save_pruned,
                         select_decoder_layers)

    times: dict[str, float] = {}
    started = work.state["started"]

    def stage(name: str, start: float) -> None:
        times[name] = round(time.perf_counter() - start, 1)

    t = time.perf_counter()
    say(0.0, "dense model: loading or fine-tuning")
    if settings.dense_finetune:
        dense, dense_summary = cached_dense_finetune(settings.model, settings.task, settings.finetune,
                                                     data_dir=settings.data_dir, device=device,
                                                     progress=lambda f, m: say(0.3 * f, m),
                                                     save_steps=settings.save_steps)
    else:
        from explorer.models.loading import load_model
        dense, dense_summary = load_model(settings.model), {"skipped": True}
    n_dec = get_adapter(dense.model).num_decoder_layers(dense.model)
    stage("dense", t)

    t = time.perf_counter()
    identity = _dense_identity(settings, dense_summary)
    learn_layers = settings.layer_selection == "learned"
    kept = None if learn_layers else select_decoder_layers(n_dec, settings.decoder_layers, settings.layer_selection)
    done = work.done("plan")
    if done is not None:
        say(0.45, "plan: done earlier, reused")
        pruned_model = load_pruned(work.path / "pruned")
        plan = PruningPlan.load(work.path / "pruned")
        kept, importance_cached, gate_summary = plan.kept_decoder_layers, done["importance_cached"], done["gate_summary"]
        times.update(done["times"])
    else:
        made = make_plan(settings, dense, train, kept, learn_layers=learn_layers, identity=identity, device=device,
                         say=say, checkpoint_dir=work.checkpoints("gates"))
        plan, pruned_model, kept = made.plan, made.model, made.kept_decoder_layers
        importance_cached, gate_summary = made.importance_cached, made.gate_summary
        times.update(made.times)
        if work.writer:
            save_pruned(pruned_model, plan, work.path / "pruned")
        work.finish("plan", {"importance_cached": importance_cached, "gate_summary": gate_summary,
                                 "times": dict(times)})
    pruned = LoadedModel(pruned_model, dense.tokenizer, settings.model, dense.family, dense.source,
                         dense.random_weights, pruned=True)

    recovery = None
    if settings.recovery_steps:
        t = time.perf_counter()
        done = work.done("recovery")
        if done is not None:
            say(0.7, "recovery fine-tune: done earlier, reused")
            pruned.model = load_pruned(work.path / "recovered")
            recovery = done
        else:
            rec_settings = FinetuneSettings(**dict(asdict(settings.finetune), max_steps=settings.recovery_steps))
            recovery = finetune(pruned, train, rec_settings, task=settings.task, device=device,
                                progress=lambda f, m: say(0.45 + 0.25 * f, m), label="recovery fine-tune",
                                checkpoint_dir=work.checkpoints("recovery"),
                                save_steps=settings.save_steps)
            if work.writer:
                save_pruned(pruned.model, plan, work.path / "recovered")
            recovery = work.finish("recovery", recovery)
        stage("recovery", t)
        times["recovery"] = recovery.get("wall_s", times["recovery"])

    # int8 (pruning.quantization): the pruned model is evaluated and timed quantized, and also in fp32
    # ("pruned_fp32") so that the run shows what int8 alone costs and gains; it is saved in fp32 with the
    # quantization in plan.json (load_pruned quantizes at load).
    sides = [("dense", dense), ("pruned", pruned)]
    if settings.quantize != "none":
        from pruning import quantize

        plan = replace(plan, quantization=settings.quantize)
        int8 = LoadedModel(quantize(pruned.model, settings.quantize), pruned.tokenizer, settings.model, dense.family,
                           dense.source, dense.random_weights, pruned=True)
        sides = [("dense", dense), ("pruned", int8), ("pruned_fp32", pruned)]

    from accelerate import PartialState

    if not PartialState().is_main_process:
        # Under `accelerate launch` / torchrun every process trains (the Trainer shards the batches);
        # evaluation, timing and writing the run happen once, on the main process.
        return {"skipped": "not the main process: evaluation, timing and the run folder are the main process's"}
    t = time.perf_counter()
    done = work.done("evaluation")
    quality = dict(done["quality"]) if done else {}
    say(0.7, f"evaluation on {len(examples)} {spec.eval_split} examples" + (": done earlier" if done else ""))
    dense_key = _cached("dense_quality", {**identity, "task": settings.task, "data": settings.data_dir,
                                           "split": spec.eval_split, "n": settings.eval_samples,
                                           "beams": settings.num_beams}, ".json")
    if dense_key.exists():
        cached = json.loads(dense_key.read_text())
        if "predictions" in cached:  # entries written before predictions were kept are measured again
            quality["dense"] = dict(cached, cached=True)
    for i, (name, m) in enumerate(sides):
        if name in quality:
            continue
        quality[name] = evaluate_quality(
            m.model, m.tokenizer, settings.task, examples, split=spec.eval_split, device=device,
            num_beams=settings.num_beams, progress=lambda f, msg, i=i, name=name: say(
                0.7 + 0.15 / len(sides) * (i + f), f"evaluation ({name}): {msg}"))
    if not quality["dense"].get("cached"):
        atomic_write_text(dense_key, json.dumps(quality["dense"]))
    for _, m in sides:
        m.model.to("cpu")
    stage("evaluation", t)
    if not done:
        work.finish("evaluation", {"quality": quality, "wall_s": times["evaluation"]})
    times["evaluation"] = work.done("evaluation")["wall_s"]

    t = time.perf_counter()
    done = work.done("timing")
    measured = dict(done["measured"]) if done else {}
    lengths = task_lengths(dense.tokenizer, settings.task, examples) if settings.timing.task_lengths else None
    for i, (name, m) in enumerate(sides):
        if name in measured:
            continue
        say(0.85 + 0.12 / len(sides) * i, f"timing the {name} model ({settings.timing.input_tokens} in, "
                             f"{settings.timing.new_tokens} new tokens" + (f"; and {lengths[0]} in, {lengths[1]} new "
                                                                          "tokens, the task's medians" if lengths else "")
            + f"; {settings.timing.repeats} repeats)")
        measured[name] = measure_all(m.model, settings.timing, device, lengths,
                                     fp32_model=pruned.model if name == "pruned" and settings.quantize != "none" else None)
    stage("timing", t)
    if not done:
        work.finish("timing", {"measured": measured, "wall_s": times["timing"]})
    times["timing"] = work.done("timing")["wall_s"]

    # Every output of both models (predictions.json) and the paired bootstrap interval of the
    # difference from dense; scripts/nash_tables.py adds intervals against other runs.
    predictions = {"split": spec.eval_split, "num_examples": len(examples),
                   **{name: quality[name]["predictions"] for name, _ in sides}}
    quality = {name: {k: v for k, v in side.items() if k != "predictions"} for name, side in quality.items()}
    intervals = {"vs_dense": paired_interval(spec, examples, predictions["dense"], predictions["pruned"])}
    if "pruned_fp32" in predictions:
        intervals["int8_vs_fp32"] = paired_interval(spec, examples, predictions["pruned_fp32"], predictions["pruned"])
    metrics = {
        "method": settings.method,
        "model": settings.model, "task": settings.task, "family": dense.family,
        "weights": "random (quality is meaningless)" if dense.random_weights else "pretrained",
        "settings": asdict(settings),
        "plan_summary": plan.describe(),
        "encoder_sparsity_achieved": round(encoder_sparsity(plan, dense.model), 4),
        "encoder_decoder_sparsity_achieved": round(encoder_decoder_sparsity(plan, dense.model), 4),
        "decoder_layers_kept": list(kept),
        "quality": quality, "intervals": intervals,
        "measurements": measured,
        "speedup_end_to_end": round(measured["dense"]["latency"]["latency_ms"]
                                    / measured["pruned"]["latency"]["latency_ms"], 3),
        "task_lengths": list(lengths) if lengths else None,
        "speedup_task_lengths": round(measured["dense"]["latency_task"]["latency_ms"]
                                      / measured["pruned"]["latency_task"]["latency_ms"], 3) if lengths else None,
        "device": device_description(device),
        "dense_finetune": dense_summary, "recovery_finetune": recovery, "gate_training": gate_summary,
        "stage_wall_s": times, "started": started, "resumed": work.state["resumed"],
        "cache_hits": {"dense_finetune": bool(dense_summary.get("cached")), "importance": importance_cached,
                       "dense_quality": bool(quality["dense"].get("cached"))},
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    say(0.97, f"saving to {out_dir}")
    if out_dir.exists() and out_dir.is_dir() and not any(out_dir.iterdir()):
        shutil.rmtree(out_dir)
    save_pruned(pruned.model, plan, out_dir, tokenizer=pruned.tokenizer,  # fp32 weights; plan.json says int8
                extra_files={"metrics.json": metrics, PREDICTIONS_FILE: predictions})
    shutil.rmtree(work.path, ignore_errors=True)
    say(1.0, "done")
    return metrics
