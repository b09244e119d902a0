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
from explorer.paths import cache_root

Progress = Callable[[float, str], None]
CORPORA = ("samsum",)


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
                                     ("healing", self.heal, HEALINGS), ("corpus", self.corpus, CORPORA)):
            if value not in allowed:
                raise ValueError(f"Unknown {name} {value!r}; choose one of {', '.join(allowed)}.")
        for name in ("calibration_texts", "eval_texts", "max_tokens", "batch_size", "heal_texts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
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
    say(0.9, "timing dense and pruned")
    timing = {}
    for name, m in (("dense", model), ("pruned", pruned)):
        t = measure_lm_latency(m, input_tokens=settings.input_tokens, new_tokens=settings.new_tokens,
                               device=settings.device, repeats=settings.repeats)
        timing[name] = asdict(t)
    diff = paired_bootstrap(pooled_perplexity, dense_quality["counts"], dense_quality["nll"], nll)
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in (("dense", model), ("pruned", pruned))}
    metrics = {
        "kind": "lm", "method": f"lm-{settings.selection}", "model": settings.model, "family": dense.family,
        "task": f"lm-{settings.corpus}", "weights": "random" if dense.random_weights else "pretrained",
        "settings": asdict(settings), "plan_summary": plan.describe(), "kept_layers": list(kept),
        "layer_scores": layer_scores.tolist() if layer_scores is not None else None,
        "quality": {name: {"metrics": {"perplexity": round(pooled_perplexity(q["counts"], q["nll"]), 3)},
                           "main_metric": "perplexity", "higher_is_better": {"perplexity": False},
                           "num_examples": len(evaluation), "split": "test"}
                    for name, q in (("dense", dense_quality), ("pruned", {"nll": nll, "counts": counts}))},
        "difference_vs_dense": diff,
        "measurements": {name: {"latency": timing[name], "params": {"params_m": round(params[name] / 1e6, 2)}}
                         for name in ("dense", "pruned")},
        "speedup_decode": round(timing["dense"]["decode_ms_per_token"] / timing["pruned"]["decode_ms_per_token"], 3),
        "speedup_end_to_end": round(timing["dense"]["latency_ms"] / timing["pruned"]["latency_ms"], 3),
        "healing": healing, "per_text": {"nll": nll, "tokens": counts, "dense_nll": dense_quality["nll"]},
        "wall_s": round(time.perf_counter() - start, 1),
    }
    save_pruned(pruned, plan, out_dir, tokenizer=tokenizer, extra_files={"metrics.json": metrics})
    say(1.0, "done")
    return metrics


def _dense_losses(dense, texts: list[str], settings: LMPruneSettings) -> dict:
    """The dense model's per-text losses, computed once per model, corpus and evaluation setting and kept in
    ``<cache>/lm-dense/`` (every run of the same model compares against the same numbers)."""
    from pruning.training import fingerprint

    if dense.random_weights:
        nll, counts = text_losses(dense.model, dense.tokenizer, texts, settings.max_tokens, settings.batch_size)
        return {"nll": nll, "counts": counts}
    key = fingerprint(settings.model, settings.corpus, settings.data_dir, settings.eval_texts, settings.max_tokens,
                      texts)
    path = cache_root() / "lm-dense" / f"{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    from pruning.atomic import atomic_write_text

    nll, counts = text_losses(dense.model, dense.tokenizer, texts, settings.max_tokens, settings.batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"nll": nll, "counts": counts}))
    return {"nll": nll, "counts": counts}
