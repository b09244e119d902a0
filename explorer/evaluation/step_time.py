"""How long one training step of a model on a task takes here, measured: what the Prune tab's
training-time estimate rests on.

Two measurements, both on what the run will really do:

1. **Tokens per batch** from the task's real training examples: up to ``SAMPLE`` of them are
   tokenized with the model's tokenizer at the fine-tune's maximum lengths, and batched as the
   Trainer batches them (``group_by_length``: transformers' ``LengthGroupedSampler`` sorts
   mega-batches of 50 batches by length, so a batch holds examples of similar length, padded to the
   longest). The result is the mean padded source and target length of a batch. (The estimate this
   replaces used the task's *maximum* lengths, 15x too long for rotten_tomatoes.)
2. **Seconds per step** of that shape: forward, backward and an AdamW step of a copy of the model
   on a batch of the mean padded shape, timed with ``torch.utils.benchmark`` after a warm-up step.

Both are kept by (model, task, batch size, lengths, data, device, torch version): in memory, and in
``<cache>/step_times.json`` so that the next session's estimate is instant (a model folder that
changes under the same path keeps its old measurement: delete the file to measure again).
"""

from __future__ import annotations

import copy
import json
import statistics
from dataclasses import asdict, dataclass

SAMPLE = 256  # training examples tokenized to learn the batch shape
_CACHE: dict[tuple, StepTime] = {}


@dataclass(frozen=True)
class StepTime:
    """A measured training step.

    Attributes:
        seconds: Wall seconds of one training step (forward, backward, optimizer) at the shape below.
        source_tokens: Mean padded source length of a batch (tokens).
        target_tokens: Mean padded target length of a batch (tokens).
        batch_size: Examples per step.
        examples: Training examples the shape was measured on.
    """

    seconds: float
    source_tokens: float
    target_tokens: float
    batch_size: int
    examples: int


def padded_lengths(lengths: list[tuple[int, int]], batch_size: int) -> tuple[float, float]:
    """Mean padded (source, target) length of a batch when ``lengths`` (source, target tokens per
    example, in the data's order) are batched by ``group_by_length``: mega-batches of 50 batches,
    each sorted by source length, cut into batches padded to their longest source and target.

    Raises:
        ValueError: For no examples or a batch size below 1.
    """
    if not lengths or batch_size < 1:
        raise ValueError("Padded lengths need at least one example and a batch size of at least 1.")
    mega = 50 * batch_size
    sources, targets = [], []
    for start in range(0, len(lengths), mega):
        group = sorted(lengths[start:start + mega], key=lambda st: st[0], reverse=True)
        for b in range(0, len(group), batch_size):
            batch = group[b:b + batch_size]
            sources.append(max(s for s, _ in batch))
            targets.append(max(t for _, t in batch))
    return statistics.fmean(sources), statistics.fmean(targets)


def measure_step_time(model_spec: str, task: str, *, batch_size: int, max_source_tokens: int | None = None,
                      max_target_tokens: int | None = None, data_dir: str | None = None,
                      device: str = "cpu") -> StepTime:
    """Seconds of one dense fine-tuning step of ``model_spec`` on ``task`` here (see the module
    docstring); kept in memory and in the cache (see the module docstring).

    Raises:
        ValueError: For an unknown model or task, or a task without training examples here.
    """
    import torch
    from torch.utils import benchmark

    from explorer.data.splits import load_split
    from explorer.data.tasks import get_task
    from explorer.models.loading import load_model
    from explorer.training.finetune import tokenize_examples

    from explorer.paths import cache_root
    from pruning.atomic import atomic_write_text

    spec = get_task(task)
    key = (model_spec, task, batch_size, max_source_tokens, max_target_tokens, data_dir, device, torch.__version__)
    if key in _CACHE:
        return _CACHE[key]
    stored_file = cache_root() / "step_times.json"
    try:
        stored = json.loads(stored_file.read_text()) if stored_file.is_file() else {}
    except (OSError, ValueError):
        stored = {}  # a damaged file is measured over
    if json.dumps(key) in stored:
        try:
            _CACHE[key] = StepTime(**stored[json.dumps(key)])
            return _CACHE[key]
        except TypeError:
            pass
    loaded = load_model(model_spec)
    examples = load_split(task, "train", data_dir=data_dir, limit=SAMPLE)
    if not examples:
        raise ValueError(f"No training examples of {task} to measure a step on.")
    rows = tokenize_examples(loaded.tokenizer, examples, max_source_tokens or spec.max_source_tokens,
                             max_target_tokens or spec.max_target_tokens)
    source, target = padded_lengths([(len(r["input_ids"]), len(r["labels"])) for r in rows], batch_size)
    model = copy.deepcopy(loaded.model).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    vocab = min(len(loaded.tokenizer), model.get_output_embeddings().weight.shape[0])
    generator = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(5, vocab, (batch_size, max(1, round(source))), generator=generator),
             "labels": torch.randint(5, vocab, (batch_size, max(1, round(target))), generator=generator)}
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    batch = {k: v.to(device) for k, v in batch.items()}

    def step():
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: allocations, the optimizer's state
    timer = benchmark.Timer(stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads())
    seconds = timer.timeit(2).median
    result = StepTime(seconds=seconds, source_tokens=source, target_tokens=target, batch_size=batch_size,
                      examples=len(rows))
    _CACHE[key] = result
    stored[json.dumps(key)] = asdict(result)
    try:
        atomic_write_text(stored_file, json.dumps(stored, indent=1))
    except OSError:
        pass  # a read-only cache only costs the next session a measurement
    return result
