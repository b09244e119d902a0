"""The steps of a NASH prune run: calibration, cached importance, the plan of each method, and
measuring a model (latency at 256 / 64 and at the task's own lengths, MACs, parameters, bytes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from explorer.data.tasks import get_task
from explorer.evaluation.costs import count_macs, count_params
from explorer.evaluation.latency import measure_latency
from explorer.models.loading import LoadedModel
from explorer.pipelines.nash_settings import PruneSettings, TimingSettings
from explorer.training.finetune import tokenize_examples
from pruning.atomic import atomic_write

Progress = Callable[[float, str], None]


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
    specs are seeded, see ``explorer.models.loading``)."""
    if dense_summary.get("path"):
        return {"dense": dense_summary["path"], "finetune": dense_summary.get("settings")}
    spec = settings.model[len("random:"):] if settings.model.startswith("random:") else settings.model
    files = sorted(Path(spec).expanduser().glob("*.safetensors")) + sorted(Path(spec).expanduser().glob("*.bin"))
    return {"dense": settings.model, "files": [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]}


def _cached(kind: str, key: dict, suffix: str) -> Path:
    """Path of a cache entry of ``kind`` (``importance`` or ``dense_quality``) for ``key``."""
    from explorer.paths import cache_root, settings_hash

    folder = cache_root() / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{settings_hash(key)}{suffix}"


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
    atomic_write(path, lambda tmp: torch.save({"heads": scores.head_scores, "neurons": scores.neuron_scores,
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


@dataclass
class PlanResult:
    """What a planner returns: the plan, the pruned model, the kept decoder layers (indices), whether
    the importance came from the cache, the gate-training summary (gated methods), and the wall
    seconds of its stages."""

    plan: object
    model: object
    kept_decoder_layers: tuple[int, ...]
    importance_cached: bool = False
    gate_summary: dict | None = None
    times: dict = field(default_factory=dict)


def _plan_training_free(settings: PruneSettings, dense: LoadedModel, train, kept, *, identity: dict, device: str,
                        say: Progress, **_) -> PlanResult:
    """NASH without training: Taylor importance of every encoder head and FFN neuron on calibration
    batches (cached), the least important removed to the sparsity, then surgery."""
    from pruning import apply_plan, plan_from_scores

    t = time.perf_counter()
    say(0.3, "importance: scoring encoder heads and FFN neurons")
    calib = calibration_examples(dense.tokenizer, settings.task, train, settings.calibration_samples,
                                 settings.calibration_tokens)
    scores, cached = cached_importance(dense, settings, identity, calib, device)
    dense.model.to("cpu")
    times = {"importance": round(time.perf_counter() - t, 1)}
    t = time.perf_counter()
    say(0.4, "surgery: building the smaller model")
    plan = plan_from_scores(dense.model, scores.head_scores, scores.neuron_scores, settings.encoder_sparsity, kept,
                            notes=dict(_notes(settings), importance=scores.criterion,
                                       calibration_examples=scores.num_examples))
    model = apply_plan(dense.model, plan)
    times["surgery"] = round(time.perf_counter() - t, 1)
    return PlanResult(plan, model, tuple(kept), cached, None, times)


def _plan_gates(settings: PruneSettings, dense: LoadedModel, train, kept, *, device: str, say: Progress,
                learn_layers: bool, checkpoint_dir=None, **_) -> PlanResult:
    """NASH with learned hard-concrete gates (and CoFi's gates on encoder and decoder widths):
    gates trained under the Lagrangian sparsity target (``explorer.training.gates``), then folded."""
    from explorer.training.gates import LearnedSettings, train_gates

    t = time.perf_counter()
    say(0.3, "gate training: encoder gates under the sparsity target")
    learned = LearnedSettings(target_sparsity=settings.encoder_sparsity, max_steps=settings.gate_steps,
                              batch_size=settings.finetune.batch_size, learning_rate=settings.finetune.learning_rate,
                              distill=settings.distill, seed=settings.finetune.seed, cofi=settings.method == "cofi")
    plan, model, gate_summary = train_gates(
        dense, train, learned, task=settings.task, kept_decoder_layers=kept,
        learned_decoder_layers=settings.decoder_layers if learn_layers else None, device=device,
        progress=lambda f, m: say(0.3 + 0.15 * f, m), checkpoint_dir=checkpoint_dir, save_steps=settings.save_steps)
    plan = replace(plan, notes=dict(plan.notes, **_notes(settings)))
    say(0.45, "surgery: gates folded, smaller model built")
    return PlanResult(plan, model, tuple(plan.kept_decoder_layers), False, gate_summary,
                      {"gate_training": round(time.perf_counter() - t, 1), "surgery": 0.0})


def _plan_decoder_only(settings: PruneSettings, dense: LoadedModel, train, kept, *, say: Progress,
                       **_) -> PlanResult:
    """The decoder-only baseline: k of L decoder layers kept, the encoder whole."""
    from pruning import apply_plan, keep_all_plan

    t = time.perf_counter()
    say(0.4, "surgery: shortening the decoder")
    plan = replace(keep_all_plan(dense.model), kept_decoder_layers=tuple(kept), notes=_notes(settings))
    model = apply_plan(dense.model, plan)
    return PlanResult(plan, model, tuple(kept), times={"surgery": round(time.perf_counter() - t, 1)})


def _notes(settings: PruneSettings) -> dict:
    return {"method": settings.method, "layer_selection": settings.layer_selection}


# How each method of ``explorer.pipelines.methods.METHODS`` makes its plan; a new method adds a planner here.
PLANNERS: dict[str, Callable[..., PlanResult]] = {
    "nash-training-free": _plan_training_free,
    "nash-learned": _plan_gates,
    "cofi": _plan_gates,
    "decoder-only": _plan_decoder_only,
}


def make_plan(settings: PruneSettings, dense: LoadedModel, train, kept, *, learn_layers: bool, identity: dict,
              device: str, say: Progress, checkpoint_dir=None) -> PlanResult:
    """The plan and the pruned model of ``settings.method`` (:data:`PLANNERS`).

    Args:
        kept: Decoder layer indices to keep (None when decoder layer gates choose them).
        learn_layers: Decoder layers chosen by gates (``layer_selection="learned"``).
        identity: What determines the dense weights (the importance cache key).
        checkpoint_dir: Where gate training keeps resumable checkpoints (every ``settings.save_steps``
            steps; None: none).
    """
    return PLANNERS[settings.method](settings, dense, train, kept, identity=identity, device=device, say=say,
                                     learn_layers=learn_layers, checkpoint_dir=checkpoint_dir)
