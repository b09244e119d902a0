"""Training throughput of every trainer: the previous code path against the one training path
(``pruning.training``), timed alternately in the same process (paired rounds, median), as a table.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_training.py            # about 10 minutes on 2 cores

Trainers and data (real inputs from ../shared/data):
- classifier fine-tune: MiniLM-L6 + classification head on SST-2 (EFTNAS's dense fine-tune), batch 32;
- seq2seq fine-tune: MiniLM2MiniLM on SAMSum and on rotten_tomatoes (the offline default), batch 16
  (``explorer.training.finetune.finetune``, also the recovery fine-tune);
- gate training (learned NASH), NNCF movement sparsity, the EFTNAS super-network: the same trainers
  with the previous sampler (random order) and the new one (length-grouped).

Each measurement trains exactly one mega-batch of the length-grouped sampler (see ``megabatch``) from a
subset of the training split: 8,000 SST-2 sentences (50 steps), 640 SAMSum dialogues (10 steps), 1,280
rotten_tomatoes snippets (20 steps), 4,000 SST-2 sentences for movement and the super-network (31 steps).

"previous" is the code of commit 228cb58 (main before the training path), reproduced below for the
two fine-tunes: per-call tokenization into a list, ``Dataset.from_list``, a random sampler, padding
per batch. "new" is the code in the repository. Only ``Trainer.train`` is timed (model loading and
tokenization are not, so the cache of tokenized datasets does not flatter the new path); examples/s
counts optimizer steps x batch size, tokens/s the real (non-padding) input tokens of the batches,
"padding" the share of padded positions in the batches. Each round trains both paths from the same
weights for the same number of steps; the speed-up is the median of the per-round ratios. "new + bf16"
adds CPU bf16 autocast, to decide by measurement whether it should be on (it is not, by default).
Keep other jobs off the machine while it runs (the numbers are times).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CI", "true")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
TIMES: list[float] = []
TOKENS = {"real": 0, "padded": 0}


def instrument():
    """Time every ``Trainer.train`` and count real and padded input tokens of every collated batch."""
    import transformers
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding

    train = transformers.Trainer.train

    @functools.wraps(train)
    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return train(self, *args, **kwargs)
        finally:
            TIMES.append(time.perf_counter() - start)

    transformers.Trainer.train = timed
    for cls in (DataCollatorWithPadding, DataCollatorForSeq2Seq):
        call = cls.__call__

        def counting(self, features, *args, _call=call, **kwargs):
            batch = _call(self, features, *args, **kwargs)
            TOKENS["real"] += int(batch["attention_mask"].sum())
            TOKENS["padded"] += batch["attention_mask"].numel()
            return batch

        cls.__call__ = counting


@contextlib.contextmanager
def previous_sampler():
    """The training path with the previous random sampler (for the trainers whose only other change
    is the shared arguments)."""
    from pruning import training

    original = training.training_arguments
    training.training_arguments = functools.partial(original, group_by_length=False)
    try:
        yield
    finally:
        training.training_arguments = original


def measure(run, steps: int, batch: int) -> dict:
    TIMES.clear()
    TOKENS.update(real=0, padded=0)
    run()
    seconds = sum(TIMES)
    return {"s": seconds, "ex_s": steps * batch / seconds, "tok_s": TOKENS["real"] / seconds,
            "padding": 1 - TOKENS["real"] / max(TOKENS["padded"], 1)}


# -- the previous code paths (commit 228cb58), for the two fine-tunes ---------------------------

def previous_classifier_finetune(model, tokenizer, rows, steps, batch, seed):
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, max_steps=steps, per_device_train_batch_size=batch,
                                 learning_rate=5e-5, warmup_steps=int(0.1 * steps), weight_decay=0.01,
                                 save_strategy="no", report_to=[], seed=seed, use_cpu=True, disable_tqdm=True,
                                 dataloader_num_workers=0, logging_steps=max(1, steps // 10))
        _quiet(Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                       data_collator=DataCollatorWithPadding(tokenizer))).train()


def previous_seq2seq_finetune(loaded, rows, steps, batch, seed):
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    with tempfile.TemporaryDirectory() as tmp:
        args = Seq2SeqTrainingArguments(
            output_dir=tmp, max_steps=steps, per_device_train_batch_size=batch, learning_rate=1e-4,
            warmup_steps=int(0.05 * steps), weight_decay=0.01, lr_scheduler_type="linear",
            logging_steps=max(1, steps // 20), save_strategy="no", report_to=[], seed=seed, use_cpu=True,
            disable_tqdm=True, dataloader_num_workers=0, remove_unused_columns=False)
        _quiet(Seq2SeqTrainer(model=loaded.model, args=args, train_dataset=Dataset.from_list(rows),
                              data_collator=DataCollatorForSeq2Seq(loaded.tokenizer, model=loaded.model,
                                                                   label_pad_token_id=-100))).train()


def _quiet(trainer):
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # as the previous fine-tune did; printing is not what is timed
    return trainer


# -- the benchmarks ------------------------------------------------------------------------------

def classifier_bench(steps: int, rounds: int, examples: int):
    from explorer.training.classifier import finetune_classifier, training_dataset
    from explorer.models.classifier import load_classifier
    from explorer.evaluation.classify import tokenize
    from explorer.data.splits import load_split

    train = load_split("sst2", "train", DATA, limit=examples)
    model, tokenizer, _ = load_classifier("minilm", 2)
    rows = tokenize(tokenizer, train, 128)
    data = training_dataset(tokenizer, train, 128)
    start = {k: v.clone() for k, v in model.state_dict().items()}

    def fresh():
        model.load_state_dict(start)
        return model

    paths = {
        "previous": lambda seed: previous_classifier_finetune(fresh(), tokenizer, rows, steps, 32, seed),
        "new": lambda seed: finetune_classifier(fresh(), tokenizer, data, max_steps=steps, batch_size=32, seed=seed),
        "new + bf16": lambda seed: _bf16(lambda: finetune_classifier(fresh(), tokenizer, data, max_steps=steps,
                                                                     batch_size=32, seed=seed)),
    }
    return run_rounds(f"classifier fine-tune (MiniLM-L6, SST-2, batch 32, {steps} steps)", paths, steps, 32, rounds)


def seq2seq_bench(task: str, steps: int, rounds: int, examples: int):
    from explorer.training.finetune import FinetuneSettings, finetune, tokenize_examples
    from explorer.models.loading import load_model
    from explorer.data.tasks import get_task
    from explorer.data.splits import load_split

    spec = get_task(task)
    train = load_split(task, "train", DATA if task != "rotten_tomatoes" else None, limit=examples)
    loaded = load_model("minilm2minilm")
    rows = tokenize_examples(loaded.tokenizer, train, spec.max_source_tokens, spec.max_target_tokens)
    start = {k: v.clone() for k, v in loaded.model.state_dict().items()}

    def fresh():
        loaded.model.load_state_dict(start)
        return loaded

    paths = {
        "previous": lambda seed: previous_seq2seq_finetune(fresh(), rows, steps, 16, seed),
        "new": lambda seed: finetune(fresh(), train, FinetuneSettings(max_steps=steps, batch_size=16, seed=seed),
                                     task=task, device="cpu"),
        "new + bf16": lambda seed: _bf16(lambda: finetune(
            fresh(), train, FinetuneSettings(max_steps=steps, batch_size=16, seed=seed), task=task, device="cpu")),
    }
    return run_rounds(f"seq2seq fine-tune (MiniLM2MiniLM, {task}, batch 16, {steps} steps)", paths, steps, 16, rounds)


def _bf16(run):
    from pruning import training

    original = training.training_arguments
    training.training_arguments = functools.partial(original, bf16=True)
    try:
        return run()
    finally:
        training.training_arguments = original


def gates_bench(steps: int, rounds: int, examples: int):
    from explorer.training.gates import LearnedSettings, train_gates
    from explorer.models.loading import load_model
    from explorer.data.splits import load_split

    train = load_split("samsum", "train", DATA, limit=examples)
    dense = load_model("minilm2minilm")
    settings = LearnedSettings(target_sparsity=0.3, max_steps=steps, batch_size=16)

    def run(seed):
        train_gates(dense, train, settings, task="samsum", kept_decoder_layers=(0, 2, 5), device="cpu")

    paths = {"previous": lambda seed: _previous(lambda: run(seed)), "new": run}
    return run_rounds(f"gate training (learned NASH, MiniLM2MiniLM, SAMSum, batch 16, {steps} steps)", paths,
                      steps, 16, rounds)


def _previous(run):
    with previous_sampler():
        return run()


def nas_bench(steps: int, rounds: int, examples: int):
    from explorer.models.classifier import load_classifier
    from explorer.training.classifier import training_dataset
    from explorer.data.splits import load_split
    from nas import generate_search_space, reorder_by_importance
    from nas.movement import movement_importance
    from nas.supernet import SupernetSettings, SuperNetwork, train_supernetwork

    train = load_split("sst2", "train", DATA, limit=examples)
    model, tokenizer, _ = load_classifier("minilm", 2)
    data = training_dataset(tokenizer, train, 128)
    layers = model.config.num_hidden_layers
    heads = [torch.rand(model.config.num_attention_heads) for _ in range(layers)]
    neurons = [torch.rand(model.config.intermediate_size) for _ in range(layers)]
    space = generate_search_space(heads, neurons, hidden=model.config.hidden_size,
                                  head_dim=model.config.hidden_size // model.config.num_attention_heads,
                                  targets=[0.3, 0.5, 0.7], seq_len=128)
    reordered, _, _ = reorder_by_importance(model, heads, neurons)

    def movement(seed):
        movement_importance(model, data, tokenizer=tokenizer, max_steps=steps, batch_size=32, seed=seed)

    def supernet(seed):
        net = SuperNetwork(reordered, space)
        train_supernetwork(net, model, data, tokenizer=tokenizer, settings=SupernetSettings(max_steps=steps, seed=seed))

    return [run_rounds(f"NNCF movement sparsity (MiniLM-L6, SST-2, batch 32, {steps} steps)",
                       {"previous": lambda s: _previous(lambda: movement(s)), "new": movement}, steps, 32, rounds),
            run_rounds(f"EFTNAS super-network (MiniLM-L6, SST-2, batch 32, {steps} steps)",
                       {"previous": lambda s: _previous(lambda: supernet(s)), "new": supernet}, steps, 32, rounds)]


def run_rounds(name: str, paths: dict, steps: int, batch: int, rounds: int) -> dict:
    results = {label: [] for label in paths}
    for r in range(rounds):
        for label, run in paths.items():  # alternate: previous, new, ... in every round
            results[label].append(measure(lambda: run(r), steps, batch))
            print(f"  {name} round {r + 1} {label}: {results[label][-1]['ex_s']:.1f} ex/s", file=sys.stderr, flush=True)
    return {"name": name, "results": results}


def megabatch(examples: int, batch: int) -> int:
    """Steps of one mega-batch of transformers' ``LengthGroupedSampler`` (min(n / 4B, 50) batches,
    sorted longest first): timing whole mega-batches is fair to both paths, while a shorter window
    would see only the new path's longest batches."""
    return max(1, min(examples // (batch * 4), 50))


def table(benches: list[dict]) -> str:
    lines = ["| trainer | path | examples/s | tokens/s | padding | speed-up vs previous (median of rounds) |",
             "|---|---|---|---|---|---|"]
    for bench in benches:
        prev = bench["results"]["previous"]
        for label, runs in bench["results"].items():
            ratios = [p["s"] / r["s"] for p, r in zip(prev, runs)]
            lines.append(f"| {bench['name']} | {label} | {statistics.median(r['ex_s'] for r in runs):.1f} | "
                         f"{statistics.median(r['tok_s'] for r in runs):.0f} | "
                         f"{100 * statistics.median(r['padding'] for r in runs):.0f}% | "
                         f"{'' if label == 'previous' else f'{statistics.median(ratios):.2f}x'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pause-pid", type=int, nargs="*", default=[],
                        help="processes to stop (SIGSTOP) while timing and continue afterwards (a background run)")
    parser.add_argument("--only", nargs="*", default=["classifier", "seq2seq", "gates", "nas"],
                        choices=["classifier", "seq2seq", "gates", "nas"])
    args = parser.parse_args()
    instrument()
    from explorer.evaluation.latency import paused

    with paused(args.pause_pid):
        run_all(args)


def run_all(args) -> None:
    from explorer.evaluation.latency import device_description

    benches = []
    if "classifier" in args.only:
        benches.append(classifier_bench(megabatch(8000, 32), args.rounds, 8000))
    if "seq2seq" in args.only:
        benches.append(seq2seq_bench("samsum", megabatch(640, 16), args.rounds, 640))
        benches.append(seq2seq_bench("rotten_tomatoes", megabatch(1280, 16), args.rounds, 1280))
    if "gates" in args.only:
        benches.append(gates_bench(megabatch(640, 16), args.rounds, 640))
    if "nas" in args.only:
        benches += nas_bench(megabatch(4000, 32), args.rounds, 4000)
    print(f"\n{device_description('cpu')}, torch {torch.__version__}, {args.rounds} paired rounds, "
          f"{time.strftime('%Y-%m-%d')}\n")
    print(table(benches))


if __name__ == "__main__":
    main()
