"""Fine-tuning: dense task fine-tuning and post-pruning recovery fine-tuning.

Both run on the transformers ``Seq2SeqTrainer`` through the repository's one training path
(``pruning.training``; ``accelerate launch`` scales them to several GPUs unchanged), on CPU or CUDA. Dense fine-tuning is cached by
model, task, data and settings, so a second request reuses it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from explorer.data.splits import held_out_split, load_split
from explorer.data.tasks import Example, get_task
from explorer.evaluation.latency import machine_description
from explorer.evaluation.scoring import compute_metrics
from explorer.models.loading import LoadedModel, configure_bert2bert, load_model
from explorer.paths import cache_root, settings_hash, slug
from pruning.atomic import atomic_directory

Progress = Callable[[float, str], None]
DONE_FILE = "finetune.json"


@dataclass(frozen=True)
class FinetuneSettings:
    """Hyper-parameters of one fine-tuning run."""

    max_steps: int = 300  # optimizer steps
    batch_size: int = 16  # examples per step and device
    learning_rate: float = 1e-4  # AdamW peak learning rate, linear decay
    warmup_ratio: float = 0.05  # fraction of steps with linear warm-up
    weight_decay: float = 0.01
    train_samples: int | None = None  # use the first N training examples (None: all)
    max_source_tokens: int | None = None  # None: the task's default
    max_target_tokens: int | None = None  # None: the task's default
    seed: int = 0
    # Learning curve of the dense fine-tune (``pruning.training.LearningCurve``): the main metric on
    # ``curve_samples`` held-out examples every ``curve_every`` steps (0: no curve); ``keep_best`` ends
    # with the best point's weights; ``patience`` > 0 stops after that many points without a new best.
    curve_every: int = 0
    curve_samples: int = 200
    keep_best: bool = False
    patience: int = 0

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("Fine-tuning needs max_steps >= 1, batch_size >= 1 and a positive learning rate.")
        if self.curve_every < 0 or self.curve_samples < 1 or self.patience < 0:
            raise ValueError("curve_every and patience must be >= 0 and curve_samples >= 1.")
        if (self.keep_best or self.patience) and not self.curve_every:
            raise ValueError("Keeping the best weights or stopping on patience needs a learning curve: set curve_every.")

    def key(self) -> dict:
        """The settings that name a cache entry: every field, except the learning-curve fields at their
        defaults (they were added later; a fine-tune without a curve keeps its earlier cache entry)."""
        data = asdict(self)
        for name in ("curve_every", "curve_samples", "keep_best", "patience"):
            if data[name] == FinetuneSettings.__dataclass_fields__[name].default:
                del data[name]
        return data


def training_examples(task: str, settings: FinetuneSettings, data_dir: str | None) -> tuple[list[Example],
                                                                                            list[Example] | None]:
    """``(training examples, learning-curve examples or None)`` of a fine-tune.

    With a learning curve, its examples are never reported ones: the first ``curve_samples`` of the
    validation split when the task reports on test (SAMSum, XSum, rotten_tomatoes), else (GLUE, which
    reports on dev) ``curve_samples`` training examples held out by a fixed permutation
    (``tasks.held_out_split``), which are then not trained on. ``train_samples`` limits the rest.

    Raises:
        ValueError: For unusable data (see ``tasks.load_split``).
    """
    spec = get_task(task)
    if not settings.curve_every:
        return load_split(task, "train", data_dir=data_dir, limit=settings.train_samples), None
    if spec.eval_split == "test":
        train = load_split(task, "train", data_dir=data_dir, limit=settings.train_samples)
        held = load_split(task, "validation", data_dir=data_dir, limit=settings.curve_samples)
    else:
        train, held = held_out_split(spec, data_dir, settings.curve_samples)
        train = train[:settings.train_samples] if settings.train_samples is not None else train
    return train, held


def steps_for_epochs(task: str, epochs: float, batch_size: int, *, data_dir: str | None = None,
                     curve_samples: int = 0) -> int:
    """Optimizer steps of ``epochs`` passes over the training split (less ``curve_samples`` held-out
    examples for tasks that report on validation), at ``batch_size`` examples per step.

    Raises:
        ValueError: For epochs <= 0 or batch_size < 1.
    """
    if epochs <= 0 or batch_size < 1:
        raise ValueError(f"Epochs must be positive and the batch size at least 1; got {epochs}, {batch_size}.")
    n = len(load_split(task, "train", data_dir=data_dir))
    if curve_samples and get_task(task).eval_split != "test":
        n -= curve_samples
    return max(1, math.ceil(epochs * n / batch_size))


def curve_measure(loaded: LoadedModel, task: str, examples: list[Example], device: str = "cpu",
                  batch_size: int = 32) -> Callable[[], dict]:
    """The learning-curve function of a seq2seq fine-tune: greedy generation on ``examples``, scored
    with the task's main metric; returns ``{"value": metric, "distinct_outputs": n, "eligible": bool}``
    (``n``: how many different texts it wrote: a summarizer that writes one sentence for every input
    has 1). A point that writes one text while the references hold several is not eligible to be
    kept as the best (a constant "equivalent" scores F1 ~81 on MRPC, above a real model early on)."""
    from explorer.evaluation.generation import generate_texts

    spec = get_task(task)

    def measure() -> dict:
        predictions = generate_texts(loaded.model, loaded.tokenizer, [e.source for e in examples],
                                     max_source_tokens=spec.max_source_tokens, max_new_tokens=spec.max_target_tokens,
                                     batch_size=batch_size, device=device)
        value = compute_metrics(spec, predictions, examples)[spec.main_metric]
        distinct = len(set(predictions))
        return {"value": round(value, 4), "distinct_outputs": distinct,
                "eligible": distinct > 1 or len({e.target for e in examples}) <= 1}

    return measure


def resolve_device(device: str) -> str:
    """``"cpu"`` or ``"cuda"``; ``"auto"`` picks CUDA when present.

    Raises:
        ValueError: For an unknown device or CUDA requested without a GPU.
    """
    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"Unknown device {device!r}; use cpu, cuda or auto.")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but no GPU is available here; use --device cpu.")
    return device


def tokenize_examples(tokenizer, examples: list[Example], max_source_tokens: int, max_target_tokens: int) -> list[dict]:
    """Token ids for training: ``input_ids`` and ``labels`` per example (a list of rows; training
    goes through :func:`seq2seq_dataset`, which tokenizes once and caches).

    For BERT-style tokenizers the target's leading [CLS] is dropped, since decoding
    starts from [CLS] (``decoder_start_token_id``) and the labels must be the tokens
    that follow it, ending with [SEP].
    """
    batch = _encode(tokenizer, max_source_tokens, max_target_tokens)(
        {"source": [e.source for e in examples], "target": [e.target for e in examples]})
    return [dict(zip(batch, values)) for values in zip(*batch.values())]


def _encode(tokenizer, max_source_tokens: int, max_target_tokens: int):
    cls = getattr(tokenizer, "cls_token_id", None)

    def encode(batch: dict) -> dict:
        sources = tokenizer(batch["source"], max_length=max_source_tokens, truncation=True)
        targets = tokenizer(text_target=batch["target"], max_length=max_target_tokens, truncation=True)
        labels = [ids[1:] if cls is not None and ids and ids[0] == cls else ids for ids in targets["input_ids"]]
        return {"input_ids": sources["input_ids"], "attention_mask": [[1] * len(ids) for ids in sources["input_ids"]],
                "labels": labels}

    return encode


def seq2seq_dataset(tokenizer, examples: list[Example], max_source_tokens: int, max_target_tokens: int):
    """The training examples tokenized once (``pruning.training.tokenized_dataset``: a batched
    ``Dataset.map`` cached under the project cache by a fingerprint of the examples, tokenizer and
    lengths), with a ``length`` column for length-grouped batches.

    Raises:
        ValueError: If there are no examples.
    """
    from pruning import training

    records = [{"source": e.source, "target": e.target} for e in examples]
    key = training.fingerprint(records, getattr(tokenizer, "name_or_path", ""), len(tokenizer), max_source_tokens,
                               max_target_tokens)
    return training.tokenized_dataset(records, _encode(tokenizer, max_source_tokens, max_target_tokens), key=key,
                                      cache_dir=cache_root() / "tokenized")


def finetune(loaded: LoadedModel, examples: list[Example], settings: FinetuneSettings, *, task: str,
             device: str = "cpu", progress: Progress | None = None, label: str = "fine-tune",
             checkpoint_dir: str | os.PathLike | None = None, save_steps: int = 500,
             curve: Callable[[], float | dict] | None = None) -> dict:
    """Fine-tune ``loaded.model`` in place on ``examples`` with ``Seq2SeqTrainer`` on the one
    training path (``pruning.training``: tokenized once, length-grouped batches padded per batch,
    every core).

    Args:
        loaded: Model and tokenizer (dense or pruned; pruned models train as they are).
        examples: Training examples (source, target).
        settings: Hyper-parameters.
        task: Task name (for default lengths).
        device: ``cpu`` or ``cuda``.
        progress: Optional ``progress(fraction, message)``.
        checkpoint_dir: Keep a resumable checkpoint every ``save_steps`` steps there, and continue
            from the last one found (a run killed part-way resumes; None: no checkpoints).
        curve: With ``settings.curve_every``: the learning-curve function (e.g. :func:`curve_measure`),
            run every ``curve_every`` steps and at the end (``pruning.training.LearningCurve``, with
            ``settings.keep_best`` and ``settings.patience``).

    Returns:
        A summary: steps run, final training loss, wall seconds, device, the checkpoint resumed from, the
        machine (:func:`explorer.evaluation.latency.machine_description`: where it can be made again bit for bit);
        with a curve also ``curve`` ([[step, value], ...]), ``curve_details``, ``kept_step`` and
        ``stopped_early``.

    Raises:
        ValueError: If there are no examples.
    """
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer

    from pruning import training

    if not examples:
        raise ValueError("No training examples to fine-tune on.")
    spec = get_task(task)
    device = resolve_device(device)
    data = seq2seq_dataset(loaded.tokenizer, examples, settings.max_source_tokens or spec.max_source_tokens,
                           settings.max_target_tokens or spec.max_target_tokens)
    start = time.perf_counter()
    with training.output_folder(checkpoint_dir, "explorer-train-") as (tmp, resume):
        curve_run = None
        if curve is not None and settings.curve_every:
            curve_run = training.LearningCurve(loaded.model, curve, every=settings.curve_every,
                                               keep_best=settings.keep_best, patience=settings.patience,
                                               state_dir=checkpoint_dir)
            curve_run.restore(resume)
        args = training.training_arguments(
            tmp, max_steps=settings.max_steps, batch_size=settings.batch_size, learning_rate=settings.learning_rate,
            warmup_ratio=settings.warmup_ratio, weight_decay=settings.weight_decay, seed=settings.seed, device=device,
            seq2seq=True, save_steps=save_steps if checkpoint_dir else None)
        collator = DataCollatorForSeq2Seq(loaded.tokenizer, model=loaded.model, label_pad_token_id=-100)
        trainer = training.quiet(Seq2SeqTrainer(
            model=loaded.model, args=args, train_dataset=data, data_collator=training.DropColumns(collator),
            callbacks=([curve_run.callback(tmp)] if curve_run else [])
            + ([training.progress_callback(progress, label)] if progress else [])))
        result = trainer.train(resume_from_checkpoint=resume)
        steps = trainer.state.global_step
    summary = {"steps": steps, "train_loss": float(result.training_loss),
               "wall_s": round(time.perf_counter() - start, 1), "device": device, "examples": len(examples),
               "resumed_from": Path(resume).name if resume else None, "machine": machine_description(device)}
    if curve_run is not None:
        found = curve_run.finish(steps)
        summary.update(curve=found["curve"], curve_details=found["details"], kept_step=found["kept_step"],
                       stopped_early=found["stopped_early"])
    loaded.model.to("cpu").eval()
    return summary


def dense_cache_dir(model_spec: str, task: str, data_dir: str | None, settings: FinetuneSettings) -> Path:
    """Cache folder of a dense fine-tuned model, keyed by model, task, data and settings."""
    key = settings_hash({"model": model_spec, "task": task, "data": str(Path(data_dir).resolve()) if data_dir else None,
                         "settings": settings.key()})
    return cache_root() / "finetuned" / f"{slug(model_spec)}__{slug(task)}__{key}"


def cached_dense_finetune(model_spec: str, task: str, settings: FinetuneSettings, *, data_dir: str | None = None,
                          device: str = "cpu", progress: Progress | None = None,
                          save_steps: int = 500) -> tuple[LoadedModel, dict]:
    """The dense model fine-tuned on ``task``: from the cache, or trained now and cached.

    The folder is written atomically (temporary sibling, then rename), so an
    interrupted fine-tune is never reused as finished; its Trainer checkpoints
    (``.<folder>.checkpoints``, every ``save_steps`` steps) let the next request with the same
    settings continue from the last one instead of starting over, with the weights of an uninterrupted run
    (``tests/test_learning_curve.py`` kills one part-way and checks them to 1e-6). ``save_steps`` is not part
    of the cache key.

    Returns:
        ``(loaded model, summary)``; the summary has ``cached: True`` on a cache hit.
    """
    folder = dense_cache_dir(model_spec, task, data_dir, settings)
    if (folder / DONE_FILE).exists():
        loaded = load_model(str(folder))
        summary = json.loads((folder / DONE_FILE).read_text())
        loaded.random_weights = summary.get("random_weights", False)
        return loaded, dict(summary, cached=True, path=str(folder))
    loaded = load_model(model_spec)
    examples, held = training_examples(task, settings, data_dir)
    checkpoints = folder.parent / f".{folder.name}.checkpoints"
    curve = curve_measure(loaded, task, held, device) if held else None
    summary = finetune(loaded, examples, settings, task=task, device=device, progress=progress, label="dense fine-tune",
                       checkpoint_dir=checkpoints, save_steps=save_steps, curve=curve)
    summary.update(model=model_spec, task=task, settings=asdict(settings), random_weights=loaded.random_weights)
    from accelerate import PartialState

    state = PartialState()  # under `accelerate launch`, only the main process writes the cache
    if state.is_main_process:
        with atomic_directory(folder) as tmp:
            loaded.model.save_pretrained(tmp)
            loaded.tokenizer.save_pretrained(tmp)
            (tmp / DONE_FILE).write_text(json.dumps(summary, indent=1))
        shutil.rmtree(checkpoints, ignore_errors=True)
    state.wait_for_everyone()
    if loaded.family == "bert2bert":
        configure_bert2bert(loaded.model, loaded.tokenizer)
    loaded.spec = str(folder)
    return loaded, dict(summary, cached=False, path=str(folder))
