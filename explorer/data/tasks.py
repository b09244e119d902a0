"""Task registry: text-to-text data and metrics for seq2seq fine-tuning and evaluation.

A task is a frozen ``TaskSpec`` (what the task is, where it comes from, how it is
scored) plus private formatting rules that turn a data row into an ``Example``
(model input text, target text, gold label).

Formats and sources:
- GLUE tasks in T5's text-to-text form (Raffel et al., 2020, "Exploring the Limits
  of Transfer Learning with a Unified Text-to-Text Transformer", Appendix D, and
  ``t5/data/preprocessors.py:glue``): ``"<task> <field1>: ... <field2>: ..."`` with
  the dataset's class names as targets, e.g. ``"mrpc sentence1: A sentence2: B"`` ->
  ``"equivalent"``; ``"mnli hypothesis: H premise: P"`` -> ``"neutral"``; STS-B
  scores rounded to the nearest 0.2 (half to even, like ``tf.round``) and written
  with one decimal, ``"3.8"``.
- Summarization: ``"summarize: <document>"`` -> reference summary (T5 Appendix D),
  scored with ROUGE-1/2/L/Lsum F1 with Porter stemming as in NASH (Ko et al., 2023), Sec. 5.
- Rotten Tomatoes / MR sentence polarity (Pang & Lee, 2005):
  ``"sentiment review: <snippet>"`` -> ``"negative"`` / ``"positive"``.

Metrics are in percent (see ``explorer.evaluation.metrics``). Nothing is loaded at import time.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from explorer.evaluation import metrics


@dataclass(frozen=True)
class Example:
    """One text-to-text example."""

    source: str  # model input text in T5 text-to-text form, e.g. "sst2 sentence: a great film"
    target: str  # target text, e.g. "positive", or the reference summary; "" when the label is hidden
    label: float | int | None = None  # class id (classification), score 0-5 (regression), None otherwise
    # The raw input fields in order, e.g. (sentence1, sentence2), for encoder classifiers (EFTNAS); not
    # part of equality, which stays that of the text-to-text example.
    texts: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class TaskSpec:
    """What a task is, where its data lives on the Hub, and how it is scored."""

    name: str  # registry key, e.g. "samsum", "sst2", "rotten_tomatoes"
    kind: str  # "summarization" | "classification" | "regression"
    hub_id: str  # Hub dataset id, e.g. "nyu-mll/glue"
    hub_config: str | None  # Hub config, e.g. "sst2"; None when the dataset has one
    eval_split: str  # split quality is reported on: "test" (summarization, rotten_tomatoes) or "validation" (GLUE)
    main_metric: str  # key of compute_metrics' result used for ranking, e.g. "rougeL", "accuracy", "mcc"
    higher_is_better: dict[str, bool]  # direction of every metric compute_metrics returns
    max_source_tokens: int  # input truncation length, tokens
    max_target_tokens: int  # target / generation length, tokens
    label_words: tuple[str, ...] = ()  # classification targets in label-id order, e.g. ("negative", "positive")


@dataclass(frozen=True)
class _Format:
    """How rows of a task's files become Examples (private to this module)."""

    prefix: str  # first word(s) of the source, e.g. "mrpc", "summarize:"
    inputs: tuple[tuple[str, str], ...]  # (name written in the source or "", canonical field), in source order
    target: str | None  # canonical field of the reference text (summarization); None: target from the label
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # canonical field -> names in files
    folders: tuple[str, ...] = ()  # local folder names, e.g. ("SST-2",)
    headerless: tuple[str, ...] = ()  # TSV columns when the file has no header (GLUE CoLA)
    hub_splits: dict[str, str] = field(default_factory=dict)  # our split -> Hub split, when they differ

    def names(self, canonical: str) -> tuple[str, ...]:
        return self.aliases.get(canonical, (canonical,))

    def fields(self) -> tuple[str, ...]:
        canonical = [name for _, name in self.inputs] + [self.target or "label"]
        return tuple(canonical)


_REGISTRY: dict[str, tuple[TaskSpec, _Format]] = {}


def _register(spec: TaskSpec, fmt: _Format) -> None:
    assert spec.main_metric in spec.higher_is_better, spec
    _REGISTRY[spec.name] = (spec, fmt)


def _summarization(name: str, hub_id: str, config: str | None, document: str, summary: str,
                   target_tokens: int, folder: str, summary_aliases: tuple[str, ...] = ()) -> None:
    rouge = {metric: metrics.HIGHER_IS_BETTER[metric] for metric in metrics.ROUGE_TYPES}
    spec = TaskSpec(name, "summarization", hub_id, config, "test", "rougeL", rouge, 512, target_tokens)
    aliases = {summary: summary_aliases} if summary_aliases else {}
    _register(spec, _Format("summarize:", (("", document),), summary, aliases, (folder,)))


def _glue(config: str, inputs: tuple[tuple[str, str], ...], label_words: tuple[str, ...], metric_names: tuple[str, ...],
          folder: str, aliases: dict[str, tuple[str, ...]] | None = None, headerless: tuple[str, ...] = (),
          hub_splits: dict[str, str] | None = None) -> None:
    kind = "classification" if label_words else "regression"
    directions = {metric: metrics.HIGHER_IS_BETTER[metric] for metric in metric_names}
    spec = TaskSpec(config, kind, "nyu-mll/glue", config, "validation", metric_names[0], directions,
                    max_source_tokens=128, max_target_tokens=8, label_words=label_words)
    _register(spec, _Format(config, inputs, None, aliases or {}, (folder,), headerless, hub_splits or {}))


_NLI = ("entailment", "not_entailment")
_summarization("samsum", "knkarthick/samsum", None, "dialogue", "summary", 64, "SAMSum")
_summarization("xsum", "EdinburghNLP/xsum", None, "document", "summary", 64, "XSum")
_summarization("cnn_dailymail", "abisee/cnn_dailymail", "3.0.0", "article", "highlights", 128, "CNN_DM",
               ("reference_tokenized", "highlights"))
_glue("sst2", (("sentence", "sentence"),), ("negative", "positive"), ("accuracy",), "SST-2")
_glue("cola", (("sentence", "sentence"),), ("unacceptable", "acceptable"), ("mcc", "accuracy"), "CoLA",
      headerless=("source", "label", "annotation", "sentence"))
_glue("mrpc", (("sentence1", "sentence1"), ("sentence2", "sentence2")), ("not_equivalent", "equivalent"),
      ("f1", "accuracy"), "MRPC",
      {"sentence1": ("sentence1", "#1 String"), "sentence2": ("sentence2", "#2 String"), "label": ("label", "Quality")})
_glue("rte", (("sentence1", "sentence1"), ("sentence2", "sentence2")), _NLI, ("accuracy",), "RTE")
_glue("qnli", (("question", "question"), ("sentence", "sentence")), _NLI, ("accuracy",), "QNLI")
_glue("stsb", (("sentence1", "sentence1"), ("sentence2", "sentence2")), (), ("pearson", "spearman"), "STS-B",
      {"label": ("label", "score")})
_glue("mnli", (("hypothesis", "hypothesis"), ("premise", "premise")), ("entailment", "neutral", "contradiction"),
      ("accuracy",), "MNLI",
      {"premise": ("premise", "sentence1"), "hypothesis": ("hypothesis", "sentence2"),
       "label": ("label", "gold_label")},
      hub_splits={"validation": "validation_matched", "test": "test_matched"})
_register(
    TaskSpec("rotten_tomatoes", "classification", "cornell-movie-review-data/rotten_tomatoes", None, "test",
             "accuracy", {"accuracy": True}, 128, 8, ("negative", "positive")),
    _Format("sentiment", (("review", "text"),), None, {"text": ("text", "sentence")}, ("rotten_tomatoes", "MR")),
)


def _normalise_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def list_tasks() -> list[str]:
    """Names of all registered tasks, sorted."""
    return sorted(_REGISTRY)


def get_task(name: str) -> TaskSpec:
    """The TaskSpec registered under ``name`` (case, "-" and "_" ignored: "SST-2" finds "sst2").

    Raises:
        ValueError: unknown name, with the closest registered name and the full list.
    """
    return _lookup(name)[0]


def _lookup(task: TaskSpec | str) -> tuple[TaskSpec, _Format]:
    if isinstance(task, TaskSpec):
        if task.name in _REGISTRY:
            return task, _REGISTRY[task.name][1]
        name = task.name
    elif isinstance(task, str):
        name = task
        if name in _REGISTRY:
            return _REGISTRY[name]
        for key, entry in _REGISTRY.items():
            if _normalise_name(key) == _normalise_name(name):
                return entry
    else:
        raise TypeError(f"task must be a task name or a TaskSpec, not {type(task).__name__}.")
    close = difflib.get_close_matches(name, list_tasks(), n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ValueError(f"Unknown task '{name}'.{hint} Available: {', '.join(list_tasks())}.")
