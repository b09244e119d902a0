"""Pruning a decoder-only LM end to end (issue 18): depth (keep k of L layers, chosen by a selection rule),
width (FFN neurons and query heads by an importance score), optional healing, evaluation against the dense
model on held-out real text, timing, and a run folder like a NASH run's (``pruning.save_pruned`` with
``metrics.json``).

Text: SAMSum dialogues with their reference summaries, as one document each
(``"Dialogue:\\n<dialogue>\\nSummary: <summary>"``): calibration and healing texts from the training split,
evaluation texts from the test split (its first ``eval_texts``, in file order). Quality is perplexity over
every evaluation token (lower is better), with a paired bootstrap interval of the pruned-minus-dense
difference over the evaluation texts (``explorer.evaluation.metrics.paired_bootstrap``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from explorer.data.splits import load_split
from explorer.evaluation.lm_tasks import ANSWER_RULE
from explorer.paths import cache_root

Progress = Callable[[float, str], None]
CORPORA = ("samsum",)
ZERO_SHOT_TASKS = {"sst2": "validation", "rotten_tomatoes": "test"}  # task -> labelled split scored


@dataclass(frozen=True)
class LMPruneSettings:
    """What to prune and how (every field is saved in the run's ``metrics.json``).

    Attributes:
        model: An offline LM name (``smollm2-135m``, ``gemma3-270m``), a local folder or ``random:<config>``.
        layers: Decoder layers kept, in [1, L].
        selection: ``uniform``, ``block-influence`` or ``perplexity`` (``pruning.lm_importance``).
        width_sparsity: Fraction in [0, 1) of each kept layer's FFN neurons removed; the same fraction of the
            query heads of each K/V group, rounded down (SmolLM2's groups of 3 lose a head from 1/3 on).
        width_criterion: ``activation`` (Minitron) or ``taylor``.
        heal_steps: Optimizer steps of healing (0: none); ``heal``: ``lora`` or ``full``.
        calibration_texts / heal_texts / eval_texts: How many texts each use.
        max_tokens: Tokens per text (truncated).
        zero_shot_task: ``sst2`` (GLUE dev) or ``rotten_tomatoes`` (test): zero-shot accuracy by label-word
            log-likelihood on its first ``zero_shot_examples`` examples (0: skipped).
        summaries: SAMSum test dialogues summarized through the chat template and scored with ROUGE (0: skipped).
    """

    model: str = "smollm2-135m"
    layers: int = 20
    selection: str = "block-influence"
    width_sparsity: float = 0.0
    width_criterion: str = "activation"
    heal_steps: int = 0
    heal: str = "lora"
    heal_batch_size: int = 8
    heal_learning_rate: float | None = None
    corpus: str = "samsum"
    data_dir: str | None = None
    calibration_texts: int = 32
    heal_texts: int = 4000
    eval_texts: int = 200
    max_tokens: int = 256
    zero_shot_task: str = "sst2"
    zero_shot_examples: int = 872
    summaries: int = 100
    batch_size: int = 8
    input_tokens: int = 256
    new_tokens: int = 64
    repeats: int = 5
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self):
        from explorer.training.lm_heal import HEALINGS
        from pruning.lm_importance import LM_LAYER_SELECTIONS, WIDTH_CRITERIA

        if not isinstance(self.layers, int) or self.layers < 1:
            raise ValueError(f"Layers kept must be a whole number of at least 1, got {self.layers!r}.")
        if not 0.0 <= self.width_sparsity < 1.0:
            raise ValueError(f"Width sparsity must be in [0, 1), got {self.width_sparsity}.")
        for name, value, allowed in (("selection", self.selection, LM_LAYER_SELECTIONS),
                                     ("width criterion", self.width_criterion, WIDTH_CRITERIA),
                                     ("healing", self.heal, HEALINGS), ("corpus", self.corpus, CORPORA),
                                     ("zero-shot task", self.zero_shot_task, tuple(ZERO_SHOT_TASKS))):
            if value not in allowed:
                raise ValueError(f"Unknown {name} {value!r}; choose one of {', '.join(allowed)}.")
        for name in ("calibration_texts", "eval_texts", "max_tokens", "batch_size", "heal_texts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.zero_shot_examples < 0 or self.summaries < 0:
            raise ValueError("zero_shot_examples and summaries must be 0 (skip) or more.")
        if self.heal_steps < 0:
            raise ValueError(f"Healing steps must be 0 or more, got {self.heal_steps}.")


def corpus_texts(corpus: str, split: str, count: int, data_dir: str | None, offset: int = 0) -> list[str]:
    """``count`` documents of ``corpus`` from ``split`` (file order, from ``offset``).

    Raises:
        ValueError: For unreadable data or too few documents.
    """
    examples = load_split(corpus, split, data_dir=data_dir, limit=offset + count)[offset:]
    texts = [f"Dialogue:\n{(e.texts[0] if e.texts else e.source).strip()}\nSummary: {e.target.strip()}"
             for e in examples if e.target.strip()]
    if len(texts) < count:
        raise ValueError(f"{corpus} {split} has {len(texts)} usable documents from {offset}; {count} were asked for.")
    return texts


def batches(tokenizer, texts: list[str], max_tokens: int, batch_size: int) -> list[dict]:
    """Tokenized, right-padded batches of ``texts`` (each truncated to ``max_tokens``): dicts of ``input_ids``
    and ``attention_mask`` of shape (B, T)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], truncation=True, max_length=max_tokens, padding=True,
                        return_tensors="pt")
        out.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    return out


@torch.no_grad()
def text_losses(model, tokenizer, texts: list[str], max_tokens: int,
                batch_size: int = 8) -> tuple[list[float], list[int]]:
    """Per text: summed next-token cross-entropy (nats) and number of predicted tokens."""
    nll, counts = [], []
    for batch in batches(tokenizer, texts, max_tokens, batch_size):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
        targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100,
                                                   reduction="none")  # (B, T - 1)
        nll += losses.sum(1).tolist()
        counts += (targets != -100).sum(1).tolist()
    return nll, counts


def pooled_perplexity(counts, nll) -> float:
    """exp(total nats / total tokens): perplexity over every token of the texts (the bootstrap's statistic)."""
    return math.exp(sum(nll) / max(sum(counts), 1))


def run_lm_prune(settings: LMPruneSettings, out_dir: str | Path, progress: Progress | None = None) -> dict:
    """Prune, optionally heal, evaluate and time one decoder-only LM; write the run folder ``out_dir``.

    Returns:
        The run's metrics (also in ``out_dir/metrics.json``).

    Raises:
        ValueError: For bad settings (see :class:`LMPruneSettings`), more layers than the model has, an unknown
            model, or unreadable data.
    """
    from explorer.evaluation.latency import measure_lm_latency
    from explorer.evaluation.metrics import paired_bootstrap
    from explorer.models.lm import load_lm
    from explorer.training.lm_heal import heal
    from pruning import apply_plan, save_pruned
    from pruning.adapters import get_adapter
    from pruning.decoder_only import keep_query_heads_per_group, keep_top_neurons, lm_plan
    from pruning.lm_importance import select_lm_layers, width_scores

    say = progress or (lambda f, m: None)
    start = time.perf_counter()
    torch.manual_seed(settings.seed)
    say(0.0, "loading the model")
    dense = load_lm(settings.model)
    model, tokenizer = dense.model, dense.tokenizer
    adapter = get_adapter(model)
    n_layers = len(adapter.decoder_layers(model))
    if settings.layers > n_layers:
        raise ValueError(f"{settings.model} has {n_layers} decoder layers; keep at most {n_layers}.")
    calibration = corpus_texts(settings.corpus, "train", settings.calibration_texts, settings.data_dir)
    evaluation = corpus_texts(settings.corpus, "test", settings.eval_texts, settings.data_dir)
    calib = batches(tokenizer, calibration, settings.max_tokens, settings.batch_size)

    say(0.05, f"dense model: perplexity on {len(evaluation)} test texts")
    dense_quality = _dense_losses(dense, evaluation, settings)
    say(0.2, f"choosing {settings.layers} of {n_layers} layers ({settings.selection})")
    kept, layer_scores = select_lm_layers(model, settings.layers, settings.selection, calib)
    heads = neurons = None
    if settings.width_sparsity > 0:
        say(0.35, f"width importance ({settings.width_criterion})")
        head_scores, neuron_scores = width_scores(model, calib, settings.width_criterion)
        kv = model.config.num_key_value_heads
        size = model.config.num_attention_heads // kv
        per_group = size - math.floor(settings.width_sparsity * size + 1e-9)
        ffn = model.config.intermediate_size
        keep_n = max(1, round(ffn * (1 - settings.width_sparsity)))
        heads = [keep_query_heads_per_group(s, kv, per_group) for s in head_scores]
        neurons = [keep_top_neurons(s, keep_n) for s in neuron_scores]
    plan = lm_plan(model, kept, heads, neurons, notes={"selection": settings.selection,
                                                      "width_criterion": settings.width_criterion})
    pruned = apply_plan(model, plan)
    healing = None
    if settings.heal_steps:
        heal_texts = corpus_texts(settings.corpus, "train", settings.heal_texts, settings.data_dir,
                                  offset=settings.calibration_texts)  # texts the calibration did not see
        healing = heal(pruned, tokenizer, heal_texts, steps=settings.heal_steps, how=settings.heal,
                       batch_size=settings.heal_batch_size, learning_rate=settings.heal_learning_rate,
                       max_tokens=settings.max_tokens, seed=settings.seed, device=settings.device,
                       progress=lambda f, m: say(0.45 + 0.35 * f, m))
    say(0.8, "pruned model: perplexity")
    nll, counts = text_losses(pruned, tokenizer, evaluation, settings.max_tokens, settings.batch_size)
    say(0.85, "task scores: zero-shot accuracy and chat summaries")
    dense_tasks = _dense_cached(dense, settings, "tasks", lambda: task_outputs(model, tokenizer, settings))
    pruned_tasks = task_outputs(pruned, tokenizer, settings)
    say(0.9, "timing dense and pruned")
    timing = {}
    for name, m in (("dense", model), ("pruned", pruned)):
        t = measure_lm_latency(m, input_tokens=settings.input_tokens, new_tokens=settings.new_tokens,
                               device=settings.device, repeats=settings.repeats)
        timing[name] = asdict(t)
    diff = paired_bootstrap(pooled_perplexity, dense_quality["counts"], dense_quality["nll"], nll)
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in (("dense", model), ("pruned", pruned))}
    quality = {name: {"metrics": {"perplexity": round(pooled_perplexity(q["counts"], q["nll"]), 3)},
                      "main_metric": "perplexity", "higher_is_better": {"perplexity": False},
                      "num_examples": len(evaluation), "split": "test"}
               for name, q in (("dense", dense_quality), ("pruned", {"nll": nll, "counts": counts}))}
    task_differences = add_task_scores(quality, dense_tasks, pruned_tasks)
    metrics = {
        "kind": "lm", "method": f"lm-{settings.selection}", "model": settings.model, "family": dense.family,
        "task": f"lm-{settings.corpus}", "weights": "random" if dense.random_weights else "pretrained",
        "settings": asdict(settings), "plan_summary": plan.describe(), "kept_layers": list(kept),
        "layer_scores": layer_scores.tolist() if layer_scores is not None else None,
        "quality": quality, "difference_vs_dense": diff, "task_differences": task_differences,
        "measurements": {name: {"latency": timing[name], "params": {"params_m": round(params[name] / 1e6, 2)}}
                         for name in ("dense", "pruned")},
        "speedup_decode": round(timing["dense"]["decode_ms_per_token"] / timing["pruned"]["decode_ms_per_token"], 3),
        "speedup_end_to_end": round(timing["dense"]["latency_ms"] / timing["pruned"]["latency_ms"], 3),
        "healing": healing, "per_text": {"nll": nll, "tokens": counts, "dense_nll": dense_quality["nll"]},
        "task_outputs": {"dense": dense_tasks, "pruned": pruned_tasks},
        "wall_s": round(time.perf_counter() - start, 1),
    }
    save_pruned(pruned, plan, out_dir, tokenizer=tokenizer, extra_files={"metrics.json": metrics})
    say(1.0, "done")
    return metrics


def _dense_losses(dense, texts: list[str], settings: LMPruneSettings) -> dict:
    """The dense model's per-text losses (:func:`_dense_cached`)."""
    def compute():
        nll, counts = text_losses(dense.model, dense.tokenizer, texts, settings.max_tokens, settings.batch_size)
        return {"nll": nll, "counts": counts}

    return _dense_cached(dense, settings, "perplexity", compute, texts)


def _dense_cached(dense, settings: LMPruneSettings, what: str, compute: Callable[[], dict], *key) -> dict:
    """``compute()`` for the dense model, done once per model, data and evaluation setting and kept in
    ``<cache>/lm-dense/`` (every run of the same model compares against the same numbers); never kept for random
    weights."""
    from pruning.atomic import atomic_write_text
    from pruning.training import fingerprint

    if dense.random_weights:
        return compute()
    fields = {"perplexity": ("model", "corpus", "data_dir", "eval_texts", "max_tokens"),
              "tasks": ("model", "corpus", "data_dir", "zero_shot_task", "zero_shot_examples", "summaries",
                        "max_tokens")}[what]
    if what == "tasks":
        key = (*key, f"answer-rule-{ANSWER_RULE}")  # summaries scored by another rule are not reused
    name = fingerprint(*(getattr(settings, f) for f in fields), *key)
    path = cache_root() / "lm-dense" / (f"{name}.json" if what == "perplexity" else f"{what}-{name}.json")
    if path.exists():
        return json.loads(path.read_text())
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result))
    return result


def task_outputs(model, tokenizer, settings: LMPruneSettings) -> dict:
    """Per-example outputs on the zero-shot task and the chat summaries (``explorer.evaluation.lm_tasks``).

    Returns:
        ``{"zero_shot": {"task", "split", "labels", "predictions"}, "summaries": {"prompt", "references",
        "texts", "rougeL", "rouge1", "rouge2"}}``, each part absent when its count is 0.

    Raises:
        ValueError: For unreadable data.
    """
    from explorer.evaluation.lm_tasks import label_word_predictions, summarize_dialogues

    out = {}
    if settings.zero_shot_examples:
        split = ZERO_SHOT_TASKS[settings.zero_shot_task]
        data_dir = None if settings.zero_shot_task == "rotten_tomatoes" else settings.data_dir  # offline corpus
        examples = load_split(settings.zero_shot_task, split, data_dir=data_dir, limit=settings.zero_shot_examples)
        predictions = label_word_predictions(model, tokenizer, [e.texts[0] for e in examples],
                                             max_tokens=settings.max_tokens, batch_size=2 * settings.batch_size)
        out["zero_shot"] = {"task": settings.zero_shot_task, "split": split, "labels": [int(e.label) for e in examples],
                            "predictions": predictions}
    if settings.summaries:
        examples = load_split(settings.corpus, "test", data_dir=settings.data_dir, limit=settings.summaries)
        result = summarize_dialogues(model, tokenizer, [(e.texts[0] if e.texts else e.source) for e in examples],
                                     [e.target for e in examples], batch_size=settings.batch_size)
        out["summaries"] = {"prompt": result["prompt"], "references": [e.target for e in examples],
                            "answer_rule": ANSWER_RULE, "replies": result["replies"], "texts": result["summaries"],
                            **{k: [round(v, 2) for v in result["rouge"][k]] for k in ("rouge1", "rouge2", "rougeL")}}
    return out


def _rescored_summaries(block: dict) -> dict | None:
    """A summaries block of :func:`task_outputs` scored by the current ``ANSWER_RULE`` without generating again,
    or None when that needs the model. Blocks of rule 1 kept only each reply's first line; rule 2's answer of
    such a line is the same as of the whole reply unless the line is nothing but a label (then rule 2 reads the
    next line, which was not kept)."""
    from explorer.evaluation.lm_tasks import answer_line
    from explorer.evaluation.metrics import rouge_per_example

    if block.get("answer_rule", 1) == ANSWER_RULE:
        return block
    source = block.get("replies") or block["texts"]
    if "replies" not in block and any(t.strip() and not answer_line(t) for t in block["texts"]):
        return None
    texts = [answer_line(t) for t in source]
    rouge = rouge_per_example(texts, block["references"])
    return {**block, "answer_rule": ANSWER_RULE, "texts": texts,
            **{k: [round(v, 2) for v in rouge[k]] for k in ("rouge1", "rouge2", "rougeL")}}


def add_task_scores(quality: dict, dense: dict, pruned: dict) -> dict:
    """Put the task scores of :func:`task_outputs` into ``quality`` (``{"dense": ..., "pruned": ...}`` blocks of a
    run's metrics: ``zero_shot_accuracy`` and ``rougeL``, in percent, higher better) and return their paired
    bootstrap differences (pruned minus dense, points) by metric name."""
    from explorer.evaluation.metrics import accuracy, mean, paired_bootstrap

    differences = {}
    for name, outputs in (("dense", dense), ("pruned", pruned)):
        block = quality[name]
        if "zero_shot" in outputs:
            z = outputs["zero_shot"]
            block["metrics"]["zero_shot_accuracy"] = round(accuracy(z["labels"], z["predictions"]), 2)
            block["higher_is_better"]["zero_shot_accuracy"] = True
            block["zero_shot"] = {"task": z["task"], "split": z["split"], "num_examples": len(z["labels"])}
        if "summaries" in outputs:
            block["metrics"]["rougeL"] = round(mean([], outputs["summaries"]["rougeL"]), 2)
            block["higher_is_better"]["rougeL"] = True
            block["summaries"] = {"prompt": outputs["summaries"]["prompt"],
                                  "num_examples": len(outputs["summaries"]["rougeL"])}
    if "zero_shot" in dense and "zero_shot" in pruned:
        d, p = dense["zero_shot"], pruned["zero_shot"]
        differences["zero_shot_accuracy"] = paired_bootstrap(accuracy, d["labels"], d["predictions"], p["predictions"])
    if "summaries" in dense and "summaries" in pruned:
        d, p = dense["summaries"]["rougeL"], pruned["summaries"]["rougeL"]
        differences["rougeL"] = paired_bootstrap(mean, d, d, p)
    return differences


def add_tasks_to_run(run_dir: str | Path, progress: Progress | None = None) -> dict:
    """Score a finished run folder that has no task scores yet (runs made before they existed), or whose summaries
    were scored by an older ``ANSWER_RULE``: the pruned model from the folder (its stored replies when they are
    enough, :func:`_rescored_summaries`), the dense model (cached), :func:`task_outputs`, then ``metrics.json``
    rewritten atomically with them. A run that is up to date is returned unchanged.

    Raises:
        ValueError: If ``run_dir`` is not a decoder-only LM run.
    """
    from explorer.models.lm import load_lm
    from pruning import load_pruned
    from pruning.atomic import atomic_write_text

    path = Path(run_dir) / "metrics.json"
    metrics = json.loads(path.read_text())
    if metrics.get("kind") != "lm":
        raise ValueError(f"{run_dir} is not a decoder-only LM run (prune-lm).")
    stored = metrics.get("task_outputs", {}).get("pruned")
    if "task_differences" in metrics and (stored or {}).get("summaries", {}).get("answer_rule", 1) == ANSWER_RULE:
        return metrics
    known = set(LMPruneSettings.__dataclass_fields__)
    settings = LMPruneSettings(**{k: v for k, v in metrics["settings"].items() if k in known})
    say = progress or (lambda f, m: None)
    say(0.0, f"{Path(run_dir).name}: task scores")
    dense = load_lm(settings.model)
    dense_tasks = _dense_cached(dense, settings, "tasks", lambda: task_outputs(dense.model, dense.tokenizer, settings))
    summaries = _rescored_summaries(stored["summaries"]) if stored and "summaries" in stored else None
    if summaries is not None and ("zero_shot" in stored) == bool(settings.zero_shot_examples):
        pruned_tasks = {**stored, "summaries": summaries}
    else:
        pruned_tasks = task_outputs(load_pruned(run_dir), dense.tokenizer, settings)
    metrics["settings"] = asdict(settings)
    metrics["task_differences"] = add_task_scores(metrics["quality"], dense_tasks, pruned_tasks)
    metrics["task_outputs"] = {"dense": dense_tasks, "pruned": pruned_tasks}
    atomic_write_text(path, json.dumps(metrics, indent=1))
    say(1.0, "done")
    return metrics
