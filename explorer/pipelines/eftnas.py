"""EFTNAS end to end for a BERT-style classifier (the product around ``nas/``): load, fine-tune the
dense model, movement importance, search space, reordering, super-network training, NSGA-II search,
and the Pareto front of subnetworks measured (metric, MACs at sequence length 128, latency).

A finished EFTNAS run is a folder::

    dense/              the fine-tuned dense classifier (Hugging Face folder)
    supernet/           the trained super-network: reordered weights + search_space.json + supernet.json
    importance.json     per-layer head and FFN-neuron importance (movement sparsity)
    search_space.json   the generated search space
    front.json          the Pareto front: each subnetwork's widths, MACs, search and evaluation metric, latency
    stages.json         each stage's record and wall time, and when the run was resumed (explorer.runs.stages)
    eftnas.json         settings, dense results and learning curve, wall times per stage, device

It is built stage by stage in a resumable work folder beside it (``explorer.runs.stages``): a killed
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
from dataclasses import asdict
from pathlib import Path

import torch

from explorer.data.splits import held_out_split, load_split
from explorer.data.tasks import Example, get_task
from explorer.evaluation.classify import classifier_latency_ms, score, tokenize
from explorer.evaluation.latency import device_description
from explorer.models.classifier import load_classifier
from explorer.pipelines.eftnas_settings import EftnasSettings
from explorer.runs.eftnas_runs import FRONT_FILE, RUN_FILE, front_json
from explorer.training.classifier import finetune_classifier, training_dataset
from explorer.training.finetune import resolve_device
from nas.records import FrontPoint, RunSummary
from pruning.adapters import get_adapter
from pruning.atomic import atomic_directory, atomic_write_text

Progress = Callable[[float, str], None]


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
               resume: bool = False) -> RunSummary:
    """Run EFTNAS end to end into the run folder ``out_dir`` (see the module docstring), stage by
    stage in a resumable work folder (``explorer.runs.stages``): dense fine-tune, movement importance,
    search space, super-network (checkpoints every ``save_steps``), search, front. With ``resume``
    the finished stages of an interrupted run with the same settings are reused and a training stage
    continues from its last checkpoint; the result equals an uninterrupted run's.

    Returns:
        The run's summary, as ``eftnas.json`` holds it.

    Raises:
        ValueError: Bad settings, a task that is neither classification nor regression, a non-BERT
            model, missing data, an unfinished run without ``resume`` or with other settings.
    """
    from explorer.runs.stages import RunFolder
    from nas import encoder_macs, extract_subnetwork, generate_search_space, nsga2_search, reorder_by_importance
    from nas.search_space import SearchSpace
    from nas.supernet import (SupernetSettings, SuperNetwork, load_classifier_weights, load_supernetwork,
                              save_supernetwork, train_supernetwork)

    out_dir = Path(out_dir)
    device = resolve_device(settings.device)
    spec = get_task(settings.task)
    regression = spec.kind == "regression"
    say = progress or (lambda f, m: None)
    say(0.0, "loading model and data")
    train, search, evaluation, search_where = _splits(settings)
    # The model loads before the work folder exists, so that a model that cannot be used leaves nothing behind.
    model, tokenizer, weights = load_classifier(settings.model, 1 if regression else len(spec.label_words))
    work = RunFolder(out_dir, {**asdict(settings), "targets": list(settings.targets)}, resume=resume)
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
        return {"choices_per_layer": [len(h) * len(f) for h, f in zip(space.head_choices, space.ffn_choices)]}

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
    front = [FrontPoint.from_dict(c) for c in searched["front"]]

    # 6. the front measured on the reported split: metric, MACs, latency, parameters
    def front_stage(report):
        say(0.9, f"measuring {len(front)} subnetworks on the Pareto front")
        dense_macs = encoder_macs(space.hidden, head_dim, [space.num_heads] * len(space.head_choices),
                                  [space.ffn_dim] * len(space.head_choices), 128)
        points = []
        for c in front:
            sub, _ = extract_subnetwork(shared, list(c.head_widths), list(c.ffn_widths))
            points.append(c.measured(macs_fraction=round(c.macs / dense_macs, 4), gmacs=round(c.macs / 1e9, 4),
                                     eval=score(spec.name, sub, tokenizer, eval_rows, device=device),
                                     latency_ms=classifier_latency_ms(sub, device=device),
                                     params_m=round(sum(p.numel() for p in sub.parameters()) / 1e6, 3)).to_dict())
        dense = {"eval": finetune["eval"], "search": finetune["search"], "gmacs": round(dense_macs / 1e9, 4),
                 "macs": dense_macs, "latency_ms": classifier_latency_ms(model, device=device),
                 "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3)}
        return {"dense": dense, "front": points}

    measured = timed("front", 0.9, 1.0, front_stage)
    timings = {stage: work.done(stage)["wall_s"] for stage in STAGES}
    summary = RunSummary(
        model=settings.model, task=spec.name, weights=weights, device=device_description(device), metric=main,
        eval_split=spec.eval_split, eval_examples=len(eval_rows), dense=measured["dense"],
        front=[FrontPoint.from_dict(p) for p in measured["front"]], search_on=search_where,
        search_examples=len(search_rows), train_examples=n_train,
        settings={**asdict(settings), "targets": list(settings.targets)}, finetune=finetune, movement=movement,
        supernet=trained, evaluated=searched["evaluated"], timings_s=timings, wall_s=round(sum(timings.values()), 1),
        resumed=work.state["resumed"])
    atomic_write_text(work.path / FRONT_FILE, front_json(summary.front))
    atomic_write_text(work.path / RUN_FILE, summary.to_json())
    shutil.rmtree(work.path / "cache", ignore_errors=True)
    work.publish()
    say(1.0, "done")
    return summary


def _write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, default=str))
