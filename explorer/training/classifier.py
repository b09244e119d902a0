"""Fine-tuning a classifier (or regression head) on the one training path (``pruning.training``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from explorer.data.tasks import Example
from explorer.evaluation.classify import example_label

Progress = Callable[[float, str], None]


def training_dataset(tokenizer, examples: list[Example], max_tokens: int, *, regression: bool = False,
                     cache_dir: str | os.PathLike | None = None):
    """The training examples tokenized once (``pruning.training.tokenized_dataset``: a batched
    ``Dataset.map`` cached under a fingerprint of the examples and the tokenizer) with a ``length``
    column for length-grouped batches.

    Raises:
        ValueError: For no examples, or one without input texts or label.
    """
    from pruning import training

    records = [{"a": ex.texts[0], "b": ex.texts[1] if len(ex.texts) > 1 else None,
                "labels": example_label(ex, i, regression)} for i, ex in enumerate(examples)]
    pairs = any(r["b"] is not None for r in records)

    def encode(batch: dict) -> dict:
        encoded = tokenizer(batch["a"], batch["b"] if pairs else None, truncation=True, max_length=max_tokens)
        return {**{k: list(v) for k, v in encoded.items()}, "labels": batch["labels"]}

    key = training.fingerprint(records, getattr(tokenizer, "name_or_path", ""), len(tokenizer), max_tokens, regression)
    return training.tokenized_dataset(records, encode, key=key, cache_dir=cache_dir)


def finetune_classifier(model, tokenizer, train_data, *, max_steps: int, batch_size: int = 32,
                        learning_rate: float = 5e-5, seed: int = 0, device: str = "cpu",
                        progress: Progress | None = None, checkpoint_dir: str | os.PathLike | None = None,
                        save_steps: int = 500, curve: Callable[[], float] | None = None,
                        curve_every: int | None = None, keep_best: bool = False) -> dict:
    """Fine-tune a classifier (or regression head) in place on the repository's one training path
    (``pruning.training``): AdamW, 10% linear warm-up then linear decay, weight decay 0.01,
    length-grouped batches padded per batch, every core.

    Args:
        model: A ``*ForSequenceClassification``.
        tokenizer: For padding.
        train_data: Tokenized rows or a Dataset (:func:`training_dataset`).
        max_steps: Optimizer steps.
        checkpoint_dir: Keep a checkpoint every ``save_steps`` steps there and continue from the
            last one found.
        curve: A function of the model's current quality on held-out examples (higher is better;
            e.g. the search metric), called every ``curve_every`` steps and at the end: the learning
            curve, to show convergence.
        keep_best: End with the weights of the best point of ``curve`` (early stopping on the
            held-out examples; they are never the reported ones).

    Returns:
        Steps, final training loss, wall seconds, the step resumed from, the learning curve
        (``[[step, value], ...]``) and the step whose weights were kept.
    """
    from transformers import DataCollatorWithPadding, Trainer

    from pruning import training

    start = time.perf_counter()
    with training.output_folder(checkpoint_dir, "explorer-classifier-ft-") as (out, resume):
        curve_run = None
        if curve is not None:
            curve_run = training.LearningCurve(model, curve, every=curve_every or max_steps, keep_best=keep_best,
                                               state_dir=checkpoint_dir)
            curve_run.restore(resume)
        args = training.training_arguments(out, max_steps=max_steps, batch_size=batch_size, learning_rate=learning_rate,
                                           warmup_ratio=0.1, weight_decay=0.01, seed=seed, device=device,
                                           save_steps=save_steps if checkpoint_dir else None)
        callbacks = ([curve_run.callback(out)] if curve_run else []) + \
            ([training.progress_callback(progress, "dense fine-tune")] if progress else [])
        trainer = training.quiet(Trainer(model=model, args=args, train_dataset=training.as_dataset(train_data),
                                         data_collator=training.DropColumns(DataCollatorWithPadding(tokenizer)),
                                         callbacks=callbacks))
        result = trainer.train(resume_from_checkpoint=resume)
    model.cpu().eval()
    found = curve_run.finish(max_steps) if curve_run else {"curve": [], "kept_step": max_steps}
    return {"steps": max_steps, "train_loss": round(float(result.training_loss), 4),
            "wall_s": round(time.perf_counter() - start, 1), "resumed_from": Path(resume).name if resume else None,
            "learning_rate": learning_rate, "curve": found["curve"], "kept_step": found["kept_step"]}
