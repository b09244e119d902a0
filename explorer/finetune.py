"""Fine-tuning: dense task fine-tuning and post-pruning recovery fine-tuning.

Both run on the transformers ``Seq2SeqTrainer`` through the repository's one training path
(``pruning.training``; ``accelerate launch`` scales them to several GPUs unchanged), on CPU or CUDA. Dense fine-tuning is cached by
model, task, data and settings, so a second request reuses it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pruning.atomic import atomic_directory

from .models import LoadedModel, configure_bert2bert, load_model
from .paths import cache_root, settings_hash, slug
from .tasks import Example, get_task, load_split

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

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("Fine-tuning needs max_steps >= 1, batch_size >= 1 and a positive learning rate.")


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
             checkpoint_dir: str | os.PathLike | None = None, save_steps: int = 500) -> dict:
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

    Returns:
        A summary: steps, final training loss, wall seconds, device, the checkpoint resumed from.

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
        args = training.training_arguments(
            tmp, max_steps=settings.max_steps, batch_size=settings.batch_size, learning_rate=settings.learning_rate,
            warmup_ratio=settings.warmup_ratio, weight_decay=settings.weight_decay, seed=settings.seed, device=device,
            seq2seq=True, save_steps=save_steps if checkpoint_dir else None)
        collator = DataCollatorForSeq2Seq(loaded.tokenizer, model=loaded.model, label_pad_token_id=-100)
        trainer = training.quiet(Seq2SeqTrainer(
            model=loaded.model, args=args, train_dataset=data, data_collator=training.DropColumns(collator),
            callbacks=[training.progress_callback(progress, label)] if progress else None))
        result = trainer.train(resume_from_checkpoint=resume)
    loaded.model.to("cpu").eval()
    return {"steps": settings.max_steps, "train_loss": float(result.training_loss),
            "wall_s": round(time.perf_counter() - start, 1), "device": device, "examples": len(examples),
            "resumed_from": Path(resume).name if resume else None}


def dense_cache_dir(model_spec: str, task: str, data_dir: str | None, settings: FinetuneSettings) -> Path:
    """Cache folder of a dense fine-tuned model, keyed by model, task, data and settings."""
    key = settings_hash({"model": model_spec, "task": task, "data": str(Path(data_dir).resolve()) if data_dir else None,
                         "settings": asdict(settings)})
    return cache_root() / "finetuned" / f"{slug(model_spec)}__{slug(task)}__{key}"


def cached_dense_finetune(model_spec: str, task: str, settings: FinetuneSettings, *, data_dir: str | None = None,
                          device: str = "cpu", progress: Progress | None = None) -> tuple[LoadedModel, dict]:
    """The dense model fine-tuned on ``task``: from the cache, or trained now and cached.

    The folder is written atomically (temporary sibling, then rename), so an
    interrupted fine-tune is never reused as finished; its Trainer checkpoints
    (``.<folder>.checkpoints``, every 500 steps) let the next request with the same
    settings continue from the last one instead of starting over.

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
    examples = load_split(task, "train", data_dir=data_dir, limit=settings.train_samples)
    checkpoints = folder.parent / f".{folder.name}.checkpoints"
    summary = finetune(loaded, examples, settings, task=task, device=device, progress=progress, label="dense fine-tune",
                       checkpoint_dir=checkpoints)
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
