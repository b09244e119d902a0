"""The pruning pipeline (every method) as one function the CLI, the UI and the tests call.

Stages (NASH, arXiv 2310.10054, Sec. 4):
    1. dense model fine-tuned on the task (cached);
    2. the encoder plan, by method: training-free Taylor importance of every encoder head and
       FFN neuron from calibration batches (``nash-training-free``), learned hard-concrete gates
       (``nash-learned``, ``explorer.learned``), none (``decoder-only``), or the CoFi baseline's
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
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from .finetune import (FinetuneSettings, cached_dense_finetune, finetune, resolve_device, tokenize_examples,
                       training_examples)
from .measure import count_macs, count_params, device_description, measure_latency
from .models import LoadedModel, peek_decoder_layers
from .quality import evaluate_quality
from .tasks import get_task, load_split, paired_interval

Progress = Callable[[float, str], None]
PREDICTIONS_FILE = "predictions.json"  # every output of the dense and the pruned model on the evaluated examples


METHODS = {
    "nash-training-free": "NASH, encoder units ranked by first-order Taylor importance (no training)",
    "nash-learned": "NASH, hard-concrete encoder gates trained under a Lagrangian sparsity target",
    "decoder-only": "decoder shortened to k layers, encoder kept whole (baseline)",
    "cofi": "CoFi (baseline): head, neuron and sublayer gates on encoder and decoder under one sparsity target, "
            "every decoder layer kept",
}


class Cancelled(Exception):
    """Raised by a progress function when the user cancels a run (see ``service.start_prune``).

    ``run_prune`` writes nothing before its last step, so a cancelled run leaves no folder;
    a cancelled dense fine-tune leaves no cache entry (both are written atomically).
    """


@dataclass(frozen=True)
class TimingSettings:
    """How latency is measured (see ``explorer.measure.measure_latency``)."""

    batch_size: int = 1
    input_tokens: int = 256  # source length, tokens
    new_tokens: int = 64  # generated tokens, forced
    num_beams: int = 1  # 1 = greedy
    repeats: int = 5
    task_lengths: bool = True  # also time at the task's median input and output lengths (task_lengths())


@dataclass(frozen=True)
class PruneSettings:
    """Everything that defines one pruning run (``method`` picks how the encoder plan is made)."""

    model: str  # model spec (see explorer.models)
    task: str  # task name (see explorer.tasks)
    encoder_sparsity: float  # fraction of encoder head + FFN parameters removed, in [0, 1)
    decoder_layers: int  # k decoder layers kept, 1 <= k <= L
    layer_selection: str = "uniform"  # uniform | low | high | learned (decoder layer gates; nash-learned only)
    data_dir: str | None = None  # local dataset folder; None: offline package or Hub
    recovery_steps: int = 0  # fine-tuning steps after pruning (0: none)
    eval_samples: int | None = 64  # first examples of the evaluation split scored (None: all of it)
    calibration_samples: int = 256  # at most this many first training examples for importance scores ...
    calibration_tokens: int = 4096  # ... and no more once their source tokens reach this (README: calibration)
    device: str = "cpu"  # cpu | cuda | auto
    num_beams: int = 1  # beams for the quality evaluation
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)  # dense fine-tuning
    timing: TimingSettings = field(default_factory=TimingSettings)
    dense_finetune: bool = True  # False: the model is already fine-tuned for the task
    method: str = "nash-training-free"  # one of METHODS
    gate_steps: int = 300  # nash-learned: gate training steps (then recovery_steps of final fine-tune)
    distill: bool = True  # nash-learned: distillation from the dense model
    save_steps: int = 500  # checkpoint interval of the recovery fine-tune (resumable runs)
    quantize: str = "none"  # none | int8: the pruned model's Linear weights in int8 (pruning.quantization, CPU)

    @classmethod
    def from_dict(cls, data: dict) -> PruneSettings:
        """The settings recorded in a run's ``metrics.json`` (``asdict`` of them) as an object.

        Raises:
            TypeError: For keys this version does not know.
        """
        data = dict(data)
        data["finetune"] = FinetuneSettings(**data.get("finetune", {}))
        data["timing"] = TimingSettings(**data.get("timing", {}))
        return cls(**data)

    def check(self) -> None:
        """Validate what can be validated without loading the model.

        Raises:
            ValueError: With a message that says what to change.
        """
        if not isinstance(self.encoder_sparsity, (int, float)) or not 0.0 <= self.encoder_sparsity < 1.0:
            raise ValueError(f"Encoder sparsity must be in [0, 1), got {self.encoder_sparsity}.")
        if self.decoder_layers < 1:
            raise ValueError(f"Decoder layers to keep must be at least 1, got {self.decoder_layers}.")
        from pruning import LAYER_SELECTIONS

        if self.layer_selection not in (*LAYER_SELECTIONS, "learned"):
            raise ValueError(f"Unknown layer selection {self.layer_selection!r}; use {', '.join(LAYER_SELECTIONS)} "
                             "or learned.")
        if self.method not in METHODS:
            raise ValueError(f"Unknown method {self.method!r}; use one of {', '.join(METHODS)}.")
        if self.method == "decoder-only" and self.encoder_sparsity:
            raise ValueError("decoder-only shortens the decoder and keeps the whole encoder: "
                             "set encoder sparsity to 0 or choose a NASH method.")
        if self.layer_selection == "learned" and self.method != "nash-learned":
            raise ValueError("Learned decoder layer selection trains decoder layer gates: choose the nash-learned "
                             "method, or uniform / low / high selection.")
        if self.method in ("nash-learned", "cofi") and self.gate_steps < 1:
            raise ValueError(f"{self.method} needs gate_steps >= 1.")
        from pruning import QUANTIZATIONS

        if self.quantize not in QUANTIZATIONS:
            raise ValueError(f"Unknown quantization {self.quantize!r}; use one of {', '.join(QUANTIZATIONS)}.")
        if self.quantize != "none" and resolve_device(self.device) != "cpu":
            raise ValueError("int8 weights run on the CPU: use --device cpu with --quantize int8.")
        if self.save_steps < 1:
            raise ValueError(f"save_steps must be at least 1, got {self.save_steps}.")
        if (self.eval_samples is not None and self.eval_samples < 1) or self.calibration_samples < 1 or self.calibration_tokens < 1 or self.recovery_steps < 0:
            raise ValueError("eval_samples, calibration_samples and calibration_tokens must be >= 1 and "
                             "recovery_steps >= 0.")
        get_task(self.task)
        resolve_device(self.device)


def calibration_examples(tokenizer, task: str, examples, max_examples: int, token_budget: int) -> list:
    """The first training examples whose source tokens (truncated as the task truncates them)
    reach ``token_budget``, at most ``max_examples`` of them and at least one.

    The Taylor scores average over tokens, so a token budget gives long-input tasks (SAMSum,
    ~160 source tokens per dialogue) and short ones (rotten_tomatoes, ~30) a similar amount of
    signal for a similar cost: 4096 tokens are ~26 dialogues or ~128 sentences.
    ``scripts/calibration_stability.py`` measures how stable the resulting plans are.
    """
    spec = get_task(task)
    chosen, tokens = [], 0
    for example in examples[:max_examples]:
        if tokens >= token_budget:
            break
        chosen.append(example)
        tokens += len(tokenizer(example.source, max_length=spec.max_source_tokens, truncation=True)["input_ids"])
    return chosen


def calibration_batches(loaded: LoadedModel, task: str, examples, batch_size: int = 8) -> list[dict]:
    """Padded tensors of (input_ids, attention_mask, labels) for importance scoring.

    Examples are batched in order of source length, so a batch pads to similar lengths
    (the scores sum over examples; padding only costs time).
    """
    from transformers import DataCollatorForSeq2Seq

    spec = get_task(task)
    rows = tokenize_examples(loaded.tokenizer, examples, spec.max_source_tokens, spec.max_target_tokens)
    rows = sorted(rows, key=lambda row: len(row["input_ids"]))
    collate = DataCollatorForSeq2Seq(loaded.tokenizer, model=loaded.model, label_pad_token_id=-100)
    batches = []
    for start in range(0, len(rows), batch_size):
        b = collate(rows[start:start + batch_size])
        batches.append({k: b[k] for k in ("input_ids", "attention_mask", "labels")})
    return batches


def _dense_identity(settings: PruneSettings, dense_summary: dict) -> dict:
    """What determines the dense model's weights: the fine-tune cache folder (immutable once
    written), else the spec, with the weight files' size and time for a local folder (random
    specs are seeded, see ``explorer.models``)."""
    if dense_summary.get("path"):
        return {"dense": dense_summary["path"], "finetune": dense_summary.get("settings")}
    spec = settings.model[len("random:"):] if settings.model.startswith("random:") else settings.model
    files = sorted(Path(spec).expanduser().glob("*.safetensors")) + sorted(Path(spec).expanduser().glob("*.bin"))
    return {"dense": settings.model, "files": [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]}


def _cached(kind: str, key: dict, suffix: str) -> Path:
    """Path of a cache entry of ``kind`` (``importance`` or ``dense_quality``) for ``key``."""
    from .paths import cache_root, settings_hash

    folder = cache_root() / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{settings_hash(key)}{suffix}"


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def cached_importance(dense: LoadedModel, settings: PruneSettings, identity: dict, calib, device: str):
    """Taylor importance of the dense model's encoder units, cached by dense model, task, data
    and calibration size: it does not depend on the budget, so every later prune of the same
    dense model at another sparsity or depth reuses it.

    Returns:
        ``(ImportanceScores, from_cache: bool)``.
    """
    import torch

    from pruning import ImportanceScores, taylor_importance

    path = _cached("importance", {**identity, "task": settings.task, "data": settings.data_dir,
                                  "calibration": settings.calibration_samples,
                                  "calibration_tokens": settings.calibration_tokens,
                                  "max_train": settings.finetune.train_samples}, ".pt")
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return ImportanceScores(saved["heads"], saved["neurons"], saved["criterion"], saved["num_examples"]), True
    scores = taylor_importance(dense.model, calibration_batches(dense, settings.task, calib), device=device)
    _write_atomic(path, lambda tmp: torch.save({"heads": scores.heads, "neurons": scores.neurons,
                                                "criterion": scores.criterion, "num_examples": scores.num_examples},
                                               tmp))
    return scores, False


def task_lengths(tokenizer, task: str, examples) -> tuple[int, int]:
    """``(input tokens, output tokens)``: the median source length (truncated as the task truncates)
    and the median reference output length of ``examples``, in tokens of ``tokenizer`` (the output
    counts the end-of-sequence token). SAMSum dialogues are about 130 tokens in and 25 out; a GLUE
    label is 1-3 tokens out, so there the encoder, not the decoder, sets the latency.

    Raises:
        ValueError: If there are no examples.
    """
    import statistics

    if not examples:
        raise ValueError("No examples to take the task's lengths from.")
    spec = get_task(task)
    sources = tokenizer([e.source for e in examples], max_length=spec.max_source_tokens, truncation=True)["input_ids"]
    targets = tokenizer(text_target=[e.target for e in examples], max_length=spec.max_target_tokens,
                        truncation=True, add_special_tokens=False)["input_ids"]
    return (max(1, int(statistics.median(len(ids) for ids in sources))),
            max(1, int(statistics.median(len(ids) for ids in targets)) + 1))


def measure_all(model, timing: TimingSettings, device: str, lengths: tuple[int, int] | None = None,
                fp32_model=None) -> dict:
    """Latency, MACs, parameters and weight bytes of one model, as a JSON-able dict; with ``lengths`` =
    (input tokens, new tokens) also ``latency_task`` and ``macs_task`` at those lengths
    (:func:`task_lengths`). For an int8 model give its fp32 original as ``fp32_model``: MACs and
    parameters are counted on it (the same products and weights, in int8), time and bytes on ``model``."""
    from pruning import weight_bytes

    counted = fp32_model if fp32_model is not None else model
    latency = measure_latency(model, batch_size=timing.batch_size, input_tokens=timing.input_tokens,
                              new_tokens=timing.new_tokens, num_beams=timing.num_beams, device=device,
                              repeats=timing.repeats)
    macs = count_macs(counted, batch_size=timing.batch_size, input_tokens=timing.input_tokens,
                      new_tokens=timing.new_tokens)
    out = {"latency": asdict(latency), "macs": macs, "params": count_params(counted),
           "weight_mb": round(weight_bytes(model) / 1e6, 2)}
    if lengths is not None:
        source, target = lengths
        out["latency_task"] = asdict(measure_latency(model, batch_size=timing.batch_size, input_tokens=source,
                                                     new_tokens=target, num_beams=timing.num_beams, device=device,
                                                     repeats=timing.repeats))
        out["macs_task"] = count_macs(counted, batch_size=timing.batch_size, input_tokens=source, new_tokens=target)
    model.to("cpu")
    counted.to("cpu")
    return out


def _make_plan(settings: PruneSettings, dense: LoadedModel, train, kept, learn_layers: bool, identity: dict,
               device: str, say: Progress, times: dict, t: float):
    """The plan and the pruned model of ``settings.method`` (importance + surgery, gate training +
    folding, or a shorter decoder); ``times`` gets the stages' wall seconds.

    Returns:
        ``(plan, pruned model, kept decoder layers, importance from cache, gate-training summary)``.
    """
    from pruning import apply_plan, keep_all_plan, plan_from_scores

    def stage(name: str, start: float) -> None:
        times[name] = round(time.perf_counter() - start, 1)

    notes = {"method": settings.method, "layer_selection": settings.layer_selection}
    importance_cached, gate_summary = False, None
    if settings.method == "nash-training-free":
        say(0.3, "importance: scoring encoder heads and FFN neurons")
        calib = calibration_examples(dense.tokenizer, settings.task, train, settings.calibration_samples,
                                     settings.calibration_tokens)
        scores, importance_cached = cached_importance(dense, settings, identity, calib, device)
        dense.model.to("cpu")
        stage("importance", t)
        t = time.perf_counter()
        say(0.4, "surgery: building the smaller model")
        plan = plan_from_scores(dense.model, scores.heads, scores.neurons, settings.encoder_sparsity, kept,
                                notes=dict(notes, importance=scores.criterion,
                                           calibration_examples=scores.num_examples))
    elif settings.method in ("nash-learned", "cofi"):
        from .learned import LearnedSettings, train_gates

        say(0.3, "gate training: encoder gates under the sparsity target")
        learned = LearnedSettings(target_sparsity=settings.encoder_sparsity, max_steps=settings.gate_steps,
                                  batch_size=settings.finetune.batch_size, learning_rate=settings.finetune.learning_rate,
                                  distill=settings.distill, seed=settings.finetune.seed,
                                  cofi=settings.method == "cofi")
        plan, pruned_model, gate_summary = train_gates(
            dense, train, learned, task=settings.task, decoder_layers=kept,
            learned_decoder_layers=settings.decoder_layers if learn_layers else None, device=device,
            progress=lambda f, m: say(0.3 + 0.15 * f, m))
        plan = replace(plan, notes=dict(plan.notes, **notes))
        kept = plan.decoder_layers
        stage("gate_training", t)
        t = time.perf_counter()
        say(0.45, "surgery: gates folded, smaller model built")
    else:  # decoder-only
        say(0.4, "surgery: shortening the decoder")
        plan = replace(keep_all_plan(dense.model), decoder_layers=tuple(kept), notes=notes)
    if settings.method not in ("nash-learned", "cofi"):
        pruned_model = apply_plan(dense.model, plan)
    stage("surgery", t)
    return plan, pruned_model, kept, importance_cached, gate_summary


def run_prune(settings: PruneSettings, out_dir: str | os.PathLike, *, overwrite: bool = False,
              progress: Progress | None = None, resume: bool = False, keep_unfinished: bool = True) -> dict:
    """Run one method end to end and write the pruned model, ``plan.json`` and ``metrics.json``
    into ``out_dir``. Under ``accelerate launch`` (several processes) every process trains, and
    only the main process evaluates, times and writes; the others return ``{"skipped": ...}``.

    Nothing is written to ``out_dir`` until everything succeeded; then the folder
    appears at once (temporary sibling + rename). Meanwhile the run works in a resumable work
    folder (``explorer.stages``): the plan and pruned model, the recovered model (with Trainer
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
    from .stages import RunFolder

    # Under `accelerate launch` / torchrun only rank 0 writes the work folder (read from the launcher's
    # environment: the distributed state is set up later, by the Trainer).
    main_process = int(os.environ.get("RANK", "0")) == 0
    work = RunFolder(out_dir, asdict(settings), resume=resume, writer=main_process)
    try:
        return _run_prune_stages(settings, out_dir, work, spec, train, examples, device, say)
    except BaseException:
        if main_process and not keep_unfinished:
            shutil.rmtree(work.path, ignore_errors=True)
        raise


def _run_prune_stages(settings: PruneSettings, out_dir: Path, work, spec, train, examples, device: str,
                      say: Progress) -> dict:
    """The stages of :func:`run_prune` (``work``: its RunFolder; only the main process's writes)."""
    from pruning import (PruningPlan, encoder_decoder_sparsity, encoder_sparsity, get_adapter, load_pruned,
                         save_pruned, select_decoder_layers)

    times: dict[str, float] = {}
    started = work.state["started"]

    def stage(name: str, start: float) -> None:
        times[name] = round(time.perf_counter() - start, 1)

    t = time.perf_counter()
    say(0.0, "dense model: loading or fine-tuning")
    if settings.dense_finetune:
        dense, dense_summary = cached_dense_finetune(settings.model, settings.task, settings.finetune,
                                                     data_dir=settings.data_dir, device=device,
                                                     progress=lambda f, m: say(0.3 * f, m))
    else:
        from .models import load_model
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
        kept, importance_cached, gate_summary = plan.decoder_layers, done["importance_cached"], done["gate_summary"]
        times.update(done["times"])
    else:
        plan, pruned_model, kept, importance_cached, gate_summary = _make_plan(
            settings, dense, train, kept, learn_layers, identity, device, say, times, t)
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
        _write_atomic(dense_key, lambda tmp: tmp.write_text(json.dumps(quality["dense"])))
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


def results_table(metrics: dict) -> str:
    """A markdown table of dense vs pruned: every quality metric, latency, MACs, parameters."""
    names = list(metrics["quality"]["dense"]["metrics"])
    rows = ["| model | " + " | ".join(names) + " | end-to-end ms | decoder ms/token | encoder ms | GMACs | params (M) |",
            "|---|" + "---|" * (len(names) + 5)]
    quantized = metrics.get("settings", {}).get("quantize", "none")
    for name in [n for n in ("dense", "pruned", "pruned_fp32") if n in metrics["quality"]]:
        q = metrics["quality"][name]["metrics"]
        m = metrics["measurements"][name]
        lat = m["latency"]
        label = {"pruned": f"pruned ({quantized})" if quantized != "none" else "pruned",
                 "pruned_fp32": "pruned (fp32)"}.get(name, name)
        rows.append(f"| {label} | " + " | ".join(f"{q[k]:.2f}" for k in names) + f" | {lat['latency_ms']:.1f} | "
                    f"{lat['decode_ms_per_token']:.2f} | {lat['encoder_ms']:.1f} | {m['macs']['gmacs']:.2f} | "
                    f"{m['params']['params_m']:.1f} |")
    q = metrics["quality"]["dense"]
    lat = metrics["measurements"]["dense"]["latency"]
    main = q["main_metric"]
    kept = metrics["quality"]["pruned"]["metrics"][main] / q["metrics"][main] * 100 if q["metrics"][main] else float("nan")
    rows.append("")
    rows.append(f"{metrics['plan_summary']}; encoder sparsity {metrics['encoder_sparsity_achieved']:.3f}; "
                f"speed-up {metrics['speedup_end_to_end']:.2f}x end to end; {kept:.1f}% of dense {main}.")
    if metrics.get("task_lengths"):
        source, target = metrics["task_lengths"]
        rows.append(f"At the task's median lengths ({source} input tokens, {target} output tokens): dense "
                    f"{metrics['measurements']['dense']['latency_task']['latency_ms']:.1f} ms, pruned "
                    f"{metrics['measurements']['pruned']['latency_task']['latency_ms']:.1f} ms, speed-up "
                    f"{metrics['speedup_task_lengths']:.2f}x.")
    if (iv := (metrics.get("intervals") or {}).get("int8_vs_fp32")):
        fp32_ms = metrics["measurements"]["pruned_fp32"]["latency"]["latency_ms"]
        rows.append(f"int8 against the same pruned model in fp32: {iv['diff']:+.2f} {main} [{iv['low']:+.2f}, "
                    f"{iv['high']:+.2f}], {fp32_ms / metrics['measurements']['pruned']['latency']['latency_ms']:.2f}x "
                    f"faster, weights {metrics['measurements']['pruned_fp32'].get('weight_mb', 0):.0f} -> "
                    f"{metrics['measurements']['pruned'].get('weight_mb', 0):.0f} MB.")
    if (iv := (metrics.get("intervals") or {}).get("vs_dense")):
        rows.append(f"Difference from dense: {iv['diff']:+.2f} {main}, 95% paired bootstrap interval "
                    f"[{iv['low']:+.2f}, {iv['high']:+.2f}] over {iv['n']} examples: "
                    + ("real (the interval excludes 0)." if iv["low"] > 0 or iv["high"] < 0 else "within noise."))
    rows.append(f"Quality on {q['num_examples']} {q['split']} examples of {metrics['task']} "
                f"({'greedy' if q['num_beams'] == 1 else str(q['num_beams']) + ' beams'}); latency: batch "
                f"{lat['batch_size']}, {lat['input_tokens']} input tokens, {lat['new_tokens']} new tokens, "
                f"{'greedy' if lat['num_beams'] == 1 else str(lat['num_beams']) + ' beams'}, on {metrics['device']}; "
                f"wall time {sum(metrics['stage_wall_s'].values()) / 60:.1f} min ({metrics['stage_wall_s']}).")
    if metrics["weights"] != "pretrained":
        rows.append("WEIGHTS ARE RANDOM: the quality columns mean nothing; only time, MACs and parameters do.")
    return "\n".join(rows)
