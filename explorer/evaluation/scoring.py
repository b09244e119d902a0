"""A task's metrics on generated outputs: parse each output into a label or score, score it
(``explorer.evaluation.metrics``), and the paired bootstrap interval of two models' difference.
"""

from __future__ import annotations

import math

from explorer.data.tasks import Example, TaskSpec, _lookup, get_task
from explorer.evaluation import metrics


def _parse_prediction(spec: TaskSpec, prediction: str) -> int | float:
    """Class id or score of a generated text; ``INVALID_LABEL`` (-1) when it does not parse.

    Both compare the text with its whitespace removed, because a WordPiece tokenizer (BERT2BERT
    models such as MiniLM2MiniLM) decodes around punctuation: "3.8" comes back as "3. 8" and
    "not_equivalent" as "not _ equivalent".
    Classification: exact match of the case-folded text with a label word (no label word differs
    from another only in whitespace).
    Regression: ``float`` of the text, finite; an invalid score is -1, outside the 0-5 range, as
    T5's ``string_to_float`` default (t5/data/postprocessors.py).
    """
    text = "".join(prediction.split())
    if spec.kind == "regression":
        try:
            value = float(text)
        except ValueError:
            return float(metrics.INVALID_LABEL)
        return value if math.isfinite(value) else float(metrics.INVALID_LABEL)
    words = ["".join(word.split()).casefold() for word in spec.label_words]
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


def average_interval(parts: list[tuple[TaskSpec | str, list[Example], list[str], list[str]]], *,
                     resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """The average over tasks of two models' main metrics, as NASH and GLUE report it (an unweighted
    mean of each task's main metric), with stratified bootstrap intervals of model b's average
    difference from model a (points) and of its average share of a (% of a, task by task).

    Each resample draws every task's examples with replacement within that task (the tasks are
    independent samples of different sizes; ``scipy.stats.bootstrap`` with one index sample per task,
    ``paired=False``) and scores both models on the same drawn examples of each task, so the interval
    reflects how the two models differ, not how hard the examples are.

    Args:
        parts: One ``(task, examples, predictions_a, predictions_b)`` per task: ``examples`` (N_t,),
            the two models' (N_t,) generated texts (a: the reference, e.g. dense).
        resamples: Bootstrap resamples; ``confidence``: the intervals' level; ``seed``: their RNG.

    Returns:
        ``{"tasks", "a", "b", "diff", "low", "high", "share", "share_low", "share_high", "confidence"}``:
        the averages of a and b and their difference in points with its interval, and b's average
        percentage of a with its interval (percentile method). A difference is real at that level when
        its interval excludes 0.

    Raises:
        ValueError: No tasks, lengths that differ within a task, examples without labels, or a task
            whose reference scores 0 or less on its examples (no share of it exists).
    """
    import numpy as np
    from scipy.stats import bootstrap

    if not parts:
        raise ValueError("Need at least one task to average over.")
    scorers = []
    for task, examples, predictions_a, predictions_b in parts:
        spec, _ = _lookup(task)
        if not (len(examples) == len(predictions_a) == len(predictions_b)) or not examples:
            raise ValueError(f"{spec.name}: need the same number of examples and predictions of each model, at least "
                             f"one; got {len(examples)}, {len(predictions_a)} and {len(predictions_b)}.")
        if spec.kind == "summarization":
            references = [e.target for e in examples]
            per_a = np.asarray(metrics.rouge_per_example(predictions_a, references)[spec.main_metric])
            per_b = np.asarray(metrics.rouge_per_example(predictions_b, references)[spec.main_metric])
            scorers.append(lambda idx, a=per_a, b=per_b: (float(a[idx].mean()), float(b[idx].mean())))
            continue
        if any(e.label is None for e in examples):
            raise ValueError(f"{spec.name}: every example needs a gold label for an interval; score a labelled split.")
        gold = np.asarray([e.label for e in examples])
        a = np.asarray([_parse_prediction(spec, p) for p in predictions_a])
        b = np.asarray([_parse_prediction(spec, p) for p in predictions_b])
        score = _SCORERS[spec.main_metric]
        scorers.append(lambda idx, y=gold, a=a, b=b, score=score: (score(list(y[idx]), list(a[idx])),
                                                                   score(list(y[idx]), list(b[idx]))))
    whole = [scorer(np.arange(len(part[1]))) for scorer, part in zip(scorers, parts)]
    if any(a <= 0 for a, _ in whole):
        raise ValueError("A task's reference model scores 0 or less on its examples: no share of it exists; "
                         "compare the differences in points (paired_interval) instead.")

    def summary(pairs):  # (average difference, average % of a) of per-task (a, b) scores
        return np.array([np.mean([b - a for a, b in pairs]),
                         np.mean([100 * b / a if a else np.nan for a, b in pairs])])

    def averages(*indices):
        return summary([scorer(np.asarray(idx)) for scorer, idx in zip(scorers, indices)])

    result = bootstrap(tuple(np.arange(len(part[1])) for part in parts), averages, paired=False, vectorized=False,
                       n_resamples=resamples, confidence_level=confidence, method="percentile",
                       random_state=np.random.default_rng(seed))
    (low, share_low), (high, share_high) = result.confidence_interval
    diff, share = summary(whole)
    return {"tasks": len(parts), "a": round(float(np.mean([a for a, _ in whole])), 2),
            "b": round(float(np.mean([b for _, b in whole])), 2), "diff": round(float(diff), 2),
            "low": round(float(low), 2), "high": round(float(high), 2), "share": round(float(share), 1),
            "share_low": round(float(share_low), 1), "share_high": round(float(share_high), 1),
            "confidence": confidence}
