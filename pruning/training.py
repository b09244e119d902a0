"""The one training path every trainer in this repository uses: the dense fine-tunes (seq2seq and
classifier), recovery, NASH / CoFi gate training, NNCF movement sparsity and the EFTNAS
super-network.

It sits at the bottom of the layers (beside surgery) so that ``pruning``, ``nas`` and ``explorer``
can all use it. It is a thin layer over the transformers ``Trainer`` (so ``accelerate launch`` and
several GPUs come free) that fixes, in one place, what makes training on a small CPU efficient:

- **Tokenize once.** :func:`tokenized_dataset` runs a ``datasets.Dataset.map`` whose result is cached
  on disk under a fingerprint of the examples and the tokenization settings, and adds a ``length``
  column (input tokens per example).
- **Pad little.** Batches are padded to their longest member (the collators) and examples of similar
  length are batched together (``group_by_length``: transformers' ``LengthGroupedSampler`` sorts
  mega-batches of 50 batches by the ``length`` column). On SST-2 (13 tokens on average, up to 66)
  this roughly halves the padded tokens per batch.
- **Use every core.** The thread count is torch's default (all cores); nothing here pins it.
- **CPU mixed precision only where measured.** ``bf16`` autocast is off by default:
  ``scripts/bench_training.py`` measures it on the machine at hand.
- **One progress / cancel callback** (:class:`ProgressCallback`: fraction, loss, ETA; a progress
  function that raises stops training within one step) and **checkpoints** for resumable runs
  (:func:`last_checkpoint`).
- **One distillation loss** (:func:`distillation_loss`).
- **One learning curve** (:class:`LearningCurve`: quality on held-out examples every N steps, keep
  the best weights, stop on patience, resumable).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

Progress = Callable[[float, str], None]
LENGTH = "length"  # the column group_by_length reads
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def training_arguments(output_dir: str | os.PathLike, *, max_steps: int, batch_size: int, learning_rate: float,
                       warmup_ratio: float = 0.0, weight_decay: float = 0.0, scheduler: str = "linear",
                       seed: int = 0, device: str = "cpu", group_by_length: bool = True, bf16: bool = False,
                       save_steps: int | None = None, seq2seq: bool = False, logging_steps: int | None = None):
    """The ``TrainingArguments`` (or ``Seq2SeqTrainingArguments``) of every trainer here.

    Args:
        output_dir: Where the Trainer writes checkpoints (only with ``save_steps``).
        max_steps: Optimizer steps.
        batch_size: Examples per step and device.
        learning_rate: Peak learning rate of AdamW; ``scheduler`` ("linear" or "constant") after
            ``warmup_ratio`` x ``max_steps`` steps of linear warm-up.
        group_by_length: Batch examples of similar length together (needs a ``length`` column, see
            :func:`tokenized_dataset`).
        bf16: CPU / CUDA bf16 autocast (off unless measured faster, see the module docstring).
        save_steps: Save a resumable checkpoint (model, optimizer, scheduler, RNG, step) every this
            many steps, keeping the last one; None: no checkpoints.
        seq2seq: ``Seq2SeqTrainingArguments`` instead.

    Raises:
        ValueError: For ``max_steps`` or ``batch_size`` below 1, or a non-positive learning rate.
    """
    from transformers import Seq2SeqTrainingArguments, TrainingArguments

    if max_steps < 1 or batch_size < 1 or learning_rate <= 0:
        raise ValueError(f"Training needs max_steps >= 1, batch_size >= 1 and a positive learning rate; got "
                         f"{max_steps}, {batch_size}, {learning_rate}.")
    cls = Seq2SeqTrainingArguments if seq2seq else TrainingArguments
    saving = {"save_strategy": "steps", "save_steps": save_steps, "save_total_limit": 1} if save_steps else \
        {"save_strategy": "no"}
    return cls(output_dir=str(output_dir), max_steps=max_steps, per_device_train_batch_size=batch_size,
               learning_rate=learning_rate, warmup_steps=int(warmup_ratio * max_steps), weight_decay=weight_decay,
               lr_scheduler_type=scheduler, logging_steps=logging_steps or max(1, max_steps // 20), report_to=[],
               seed=seed, data_seed=seed, use_cpu=device == "cpu", disable_tqdm=True, dataloader_num_workers=0,
               remove_unused_columns=False, length_column_name=LENGTH,
               train_sampling_strategy="group_by_length" if group_by_length else "random",
               bf16=bf16, **saving)


def last_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest complete ``checkpoint-<step>`` folder in ``output_dir`` (None if there is none)."""
    folder = Path(output_dir)
    found = [(int(m.group(1)), p) for p in (folder.iterdir() if folder.is_dir() else ())
             if (m := CHECKPOINT.match(p.name)) and (p / "trainer_state.json").is_file()]
    return str(max(found)[1]) if found else None


@contextlib.contextmanager
def output_folder(checkpoint_dir: str | os.PathLike | None, prefix: str):
    """``(folder, checkpoint to resume from)`` for a Trainer run: ``checkpoint_dir`` and its newest
    checkpoint (None if there is none yet), or a temporary folder (removed afterwards) and None."""
    if checkpoint_dir is not None:
        yield str(checkpoint_dir), last_checkpoint(checkpoint_dir)
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield tmp, None


class DropColumns:
    """A collator wrapper that drops columns the model must not see (``length``) before collating."""

    def __init__(self, collator, drop: Sequence[str] = (LENGTH,)):
        self.collator, self.drop = collator, tuple(drop)

    def __call__(self, features: list[dict]) -> dict:
        return self.collator([{k: v for k, v in f.items() if k not in self.drop} for f in features])


def fingerprint(*parts) -> str:
    """A short stable hash of JSON-able parts (examples, settings), for dataset caches."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def tokenized_dataset(records: list[dict], tokenize: Callable[[dict], dict], *, key: str,
                      cache_dir: str | os.PathLike | None = None):
    """Tokenize ``records`` once with ``datasets.Dataset.map`` (batched) and add a ``length`` column.

    Args:
        records: Plain rows (e.g. ``{"source": ..., "target": ...}``); all with the same keys.
        tokenize: A batched map function: a dict of lists -> a dict of lists (token ids, labels).
        key: A fingerprint of the records and of everything ``tokenize`` depends on (tokenizer,
            lengths); see :func:`fingerprint`. Equal keys reuse the cached result.
        cache_dir: Where the Arrow cache file goes; None keeps the result in memory only.

    Returns:
        A ``datasets.Dataset`` with the tokenized columns and ``length`` (tokens of ``input_ids``).

    Raises:
        ValueError: For no records.
    """
    from datasets import Dataset

    if not records:
        raise ValueError("No examples to tokenize.")
    raw = Dataset.from_list(records)

    def mapped(batch: dict) -> dict:
        out = tokenize(batch)
        out[LENGTH] = [len(ids) for ids in out["input_ids"]]
        return out

    kwargs = {"batched": True, "remove_columns": raw.column_names, "new_fingerprint": key}
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        kwargs["cache_file_name"] = str(Path(cache_dir) / f"tokenized-{key}.arrow")
    return raw.map(mapped, **kwargs)


def as_dataset(data):
    """A ``datasets.Dataset`` with a ``length`` column from tokenized rows (a list of dicts with
    ``input_ids``) or a Dataset (returned as it is when it has the column)."""
    from datasets import Dataset

    if isinstance(data, Dataset):
        if LENGTH in data.column_names:
            return data
        return data.map(lambda b: {LENGTH: [len(x) for x in b["input_ids"]]}, batched=True)
    if not data:
        raise ValueError("No training examples.")
    return Dataset.from_list([dict(row, **{LENGTH: len(row["input_ids"])}) for row in data])


class ProgressCallback:
    """A ``TrainerCallback`` that reports ``progress(fraction, message)`` after every optimizer step:
    ``"<label>: step s/N, loss x, ETA m:ss"`` plus ``describe()`` when given. A progress function that
    raises (a cancelled run) stops training within one step.

    Built lazily as a ``transformers.TrainerCallback`` subclass by :func:`progress_callback`.
    """


def progress_callback(progress: Progress, label: str, describe: Callable[[], str] | None = None,
                      first_step: int = 0):
    """The :class:`ProgressCallback` for ``progress``; ``first_step`` is the step a resumed run starts
    from (so the ETA counts only this run's steps)."""
    from transformers import TrainerCallback

    class Callback(TrainerCallback, ProgressCallback):
        def __init__(self):
            self.loss: float | None = None
            self.start = time.perf_counter()
            self.first = first_step

        def on_train_begin(self, args, state, control, **kwargs):
            self.start, self.first = time.perf_counter(), state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.loss = (logs or {}).get("loss", self.loss)

        def on_step_end(self, args, state, control, **kwargs):
            done = state.global_step - self.first
            left = (time.perf_counter() - self.start) / max(done, 1) * (state.max_steps - state.global_step)
            text = f"{label}: step {state.global_step}/{state.max_steps}"
            if self.loss is not None:
                text += f", loss {self.loss:.3f}"
            if describe is not None:
                text += f", {describe()}"
            text += f", ETA {int(left // 60)}:{int(left % 60):02d}"
            progress(state.global_step / max(state.max_steps, 1), text)

    return Callback()


class LearningCurve:
    """A learning curve on held-out examples, with optional keep-best (early stopping) and patience,
    that survives a resumed run.

    ``measure()`` is called every ``every`` optimizer steps (model in eval mode) and once at the end;
    it returns the quality (higher is better) or a dict with ``"value"`` and anything else worth
    recording (e.g. how many distinct outputs a summarizer writes). With ``keep_best`` the weights
    of the best point are kept (in memory and, with ``state_dir``, in ``best.safetensors``) and
    restored by :meth:`finish`; with ``patience`` = p > 0 training stops after p points without a
    new best. A point whose dict says ``"eligible": False`` (e.g. a classifier that writes one label
    for every example, whose F1 on a skewed task can beat every real model's) is recorded but is
    never the best; when no point is eligible the latest one counts as best. The points so far are saved in every Trainer checkpoint (``curve.json``) so that
    :meth:`restore` continues a killed run where its checkpoint left off.

    Use::

        curve = LearningCurve(model, measure, every=500, keep_best=True, state_dir=checkpoint_dir)
        curve.restore(resume_checkpoint)               # before trainer.train
        trainer = Trainer(..., callbacks=[curve.callback(output_dir), ...])
        trainer.train(resume_from_checkpoint=resume_checkpoint)
        summary = curve.finish(trainer.state.global_step)   # {"curve", "details", "kept_step", "stopped_early"}
    """

    BEST = "best.safetensors"
    POINTS = "curve.json"

    def __init__(self, model: torch.nn.Module, measure: Callable[[], float | dict], *, every: int,
                 keep_best: bool = False, patience: int = 0, state_dir: str | os.PathLike | None = None):
        if every < 1:
            raise ValueError(f"A learning curve needs every >= 1 steps, got {every}.")
        self.model, self.measure, self.every = model, measure, every
        self.keep_best, self.patience = keep_best, patience
        self.best_file = Path(state_dir) / self.BEST if state_dir is not None else None
        self.points: list[list[float]] = []  # [[step, value], ...]
        self.details: list[dict] = []  # {"step": s, **extras} when measure returns a dict
        self.best_state: dict | None = None
        self.stopped_early = False

    def _best_index(self) -> int:
        values = [p[1] for p in self.points]
        ineligible = {d["step"] for d in self.details if d.get("eligible") is False}
        candidates = [i for i, p in enumerate(self.points) if p[0] not in ineligible]
        if not candidates:
            return len(values) - 1
        return max(candidates, key=lambda i: (values[i], i))  # the latest of equal bests

    def observe(self, step: int) -> None:
        """Measure at ``step`` and keep the weights if it is the best point so far."""
        training_mode = self.model.training
        self.model.eval()
        result = self.measure()
        self.model.train(training_mode)
        value = float(result["value"] if isinstance(result, dict) else result)
        self.points.append([step, value])
        if isinstance(result, dict):
            self.details.append({"step": step, **{k: v for k, v in result.items() if k != "value"}})
        if self.keep_best and self._best_index() == len(self.points) - 1:
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            if self.best_file is not None:
                from safetensors.torch import save_file

                self.best_file.parent.mkdir(parents=True, exist_ok=True)
                save_file(self.best_state, str(self.best_file), metadata={"step": str(step)})

    def restore(self, checkpoint: str | os.PathLike | None) -> None:
        """Continue from a Trainer checkpoint: the points saved with it and, with keep-best, the best
        weights (only when they are from a step the checkpoint had reached)."""
        if not checkpoint or not (Path(checkpoint) / self.POINTS).is_file():
            return
        saved = json.loads((Path(checkpoint) / self.POINTS).read_text())
        if isinstance(saved, list):  # written before the details were recorded: the points alone
            saved = {"points": saved}
        self.points, self.details = saved["points"], saved.get("details", [])
        if self.keep_best and self.points and self.best_file is not None and self.best_file.is_file():
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(self.best_file), "pt") as f:
                step = int((f.metadata() or {}).get("step", -1))
            if step == self.points[self._best_index()][0]:
                self.best_state = load_file(str(self.best_file))

    def callback(self, output_dir: str | os.PathLike):
        """The ``TrainerCallback`` that measures every ``every`` steps, stops on patience, and saves the
        points into each checkpoint the Trainer writes under ``output_dir``."""
        from transformers import TrainerCallback

        curve = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step % curve.every or state.global_step >= state.max_steps:
                    return
                curve.observe(state.global_step)
                if curve.patience and len(curve.points) - 1 - curve._best_index() >= curve.patience:
                    curve.stopped_early = True
                    control.should_training_stop = True

            def on_save(self, args, state, control, **kwargs):
                folder = Path(output_dir) / f"checkpoint-{state.global_step}"
                if folder.is_dir():
                    (folder / curve.POINTS).write_text(json.dumps({"points": curve.points, "details": curve.details}))

        return Callback()

    def finish(self, final_step: int) -> dict:
        """Measure at ``final_step`` (unless just measured there), restore the best weights when
        keeping the best, and return ``{"curve", "details", "kept_step", "stopped_early"}``."""
        if not self.points or self.points[-1][0] != final_step:
            self.observe(final_step)
        kept = final_step
        if self.keep_best:
            best_step = self.points[self._best_index()][0]
            if best_step != final_step and self.best_state is not None:
                self.model.load_state_dict(self.best_state)
                kept = best_step
        self.model.eval()
        return {"curve": self.points, "details": self.details, "kept_step": kept, "stopped_early": self.stopped_early}


def quiet(trainer):
    """Remove the Trainer's printing callback (progress goes through :func:`progress_callback`)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """Knowledge distillation (Hinton et al., 2015): T^2 x KL(softmax(teacher / T) || softmax(student / T)),
    averaged over rows; for one output (regression) the squared error to the teacher instead.

    Args:
        student_logits, teacher_logits: (N, C) (rows: examples or target tokens); the teacher is detached.
        temperature: T > 0.

    Returns:
        A scalar tensor.
    """
    teacher_logits = teacher_logits.detach()
    if student_logits.shape[-1] == 1:
        return F.mse_loss(student_logits.float(), teacher_logits.float())
    t = temperature
    return F.kl_div(F.log_softmax(student_logits.float() / t, dim=-1), F.log_softmax(teacher_logits.float() / t, dim=-1),
                    log_target=True, reduction="batchmean") * t * t


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None, *,
                      ce_weight: float = 0.1, temperature: float = 2.0) -> torch.Tensor:
    """``ce_weight`` x task loss + (1 - ``ce_weight``) x :func:`kd_loss` (EFTNAS, Sec. 4: 0.1 and
    T = 2). The task loss is cross-entropy to class ids, or for one output (regression, STS-B) the
    squared error to the scores.

    Args:
        student_logits, teacher_logits: (B, C), C = 1 for regression.
        labels: (B,) class ids or float scores, or None (then the loss is the distillation term alone).

    Returns:
        A scalar tensor.
    """
    kd = kd_loss(student_logits, teacher_logits, temperature)
    if labels is None:
        return kd
    if student_logits.shape[-1] == 1:
        task = F.mse_loss(student_logits.float().squeeze(-1), labels.float())
    else:
        task = F.cross_entropy(student_logits.float(), labels)
    return ce_weight * task + (1.0 - ce_weight) * kd
