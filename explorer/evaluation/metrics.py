"""Quality metrics for text-to-text tasks, each with its direction.

Every metric returns a float in percent, as the T5 and NASH papers report
them: accuracy and F1 in [0, 100], MCC, Pearson and Spearman in [-100, 100],
ROUGE F-measures in [0, 100]. ``HIGHER_IS_BETTER`` says for every metric name
whether a larger value is better, so Pareto code never hard-codes a direction.

Sources:
- Classification metrics follow T5's ``t5/evaluation/metrics.py``
  (``f1_score_with_invalid``: a prediction that is not a label counts as the
  wrong label), computed with scikit-learn.
- Correlations use ``scipy.stats.pearsonr`` / ``spearmanr`` as the GLUE
  reference evaluation does.
- ROUGE-1/2/L/Lsum F1 with Porter stemming through Google's ``rouge_score``
  package, the setting of NASH (Ko et al., 2023) Sec. 5; rougeLsum on
  newline-separated sentences as in the Hugging Face summarization examples.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

INVALID_LABEL = -1
"""Class id given to a prediction that does not parse into a label."""

HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "mcc": True,
    "f1": True,
    "pearson": True,
    "spearman": True,
    "rouge1": True,
    "rouge2": True,
    "rougeL": True,
    "rougeLsum": True,
}

ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL", "rougeLsum")

# A sentence ends at ".", "!" or "?" followed by whitespace, or at a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")


def _check_lengths(y_true: Sequence, y_pred: Sequence) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(
            f"{len(y_pred)} predictions for {len(y_true)} references: the lists must have the same length."
        )
    if len(y_true) == 0:
        raise ValueError("No examples to score: the lists of predictions and references are empty.")


def _wrong_where_invalid(y_true: Sequence[int], y_pred: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Replace invalid binary predictions by the opposite of the gold label.

    Args:
        y_true: (N,) gold class ids in {0, 1}.
        y_pred: (N,) predicted class ids; anything but 0 or 1 is invalid.

    Returns:
        (y_true, y_pred) as int arrays of shape (N,), y_pred in {0, 1}.

    Source: T5 ``f1_score_with_invalid`` (t5/evaluation/metrics.py).
    """
    true = np.asarray(y_true, dtype=np.int64)
    pred = np.asarray(y_pred, dtype=np.int64).copy()
    invalid = (pred != 0) & (pred != 1)
    pred[invalid] = 1 - true[invalid]
    return true, pred


def accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    """Percentage of predictions equal to the gold label, in [0, 100].

    Raises:
        ValueError: if the lists differ in length or are empty.
    """
    _check_lengths(y_true, y_pred)
    return 100.0 * sum(int(t == p) for t, p in zip(y_true, y_pred)) / len(y_true)


def mcc(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Matthews correlation coefficient of a binary task, x100, in [-100, 100].

    Invalid predictions (not 0 or 1) count as the wrong class. A constant
    prediction gives 0 (scikit-learn's convention).

    Raises:
        ValueError: if the lists differ in length or are empty.
    """
    from sklearn.metrics import matthews_corrcoef

    _check_lengths(y_true, y_pred)
    true, pred = _wrong_where_invalid(y_true, y_pred)
    return 100.0 * float(matthews_corrcoef(true, pred))


def f1(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """F1 of the positive class (label 1) of a binary task, x100, in [0, 100].

    Invalid predictions (not 0 or 1) count as the wrong class. No positive
    prediction and no positive label gives 0.

    Raises:
        ValueError: if the lists differ in length or are empty.
    """
    from sklearn.metrics import f1_score

    _check_lengths(y_true, y_pred)
    true, pred = _wrong_where_invalid(y_true, y_pred)
    return 100.0 * float(f1_score(true, pred, pos_label=1, zero_division=0.0))


def _correlation(kind: str, y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    from scipy.stats import pearsonr, spearmanr

    _check_lengths(y_true, y_pred)
    true = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64)
    if len(true) < 2 or np.ptp(true) == 0 or np.ptp(pred) == 0:
        return 0.0
    value = (pearsonr if kind == "pearson" else spearmanr)(true, pred)[0]
    return 0.0 if math.isnan(value) else 100.0 * float(value)


def pearson(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Pearson correlation x100, in [-100, 100]; 0 when either side is constant.

    Raises:
        ValueError: if the lists differ in length or are empty.
    """
    return _correlation("pearson", y_true, y_pred)


def spearman(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Spearman rank correlation x100, in [-100, 100]; 0 when either side is constant.

    Raises:
        ValueError: if the lists differ in length or are empty.
    """
    return _correlation("spearman", y_true, y_pred)


def split_sentences(text: str) -> str:
    """One sentence per line, for rougeLsum.

    A sentence ends at ``.``, ``!`` or ``?`` followed by whitespace, or at a
    line break (regex ``(?<=[.!?])\\s+|\\s*\\n\\s*``). A simple stand-in for
    ``nltk.sent_tokenize`` that needs no downloaded model.

    Args:
        text: any text.

    Returns:
        The sentences joined with ``"\\n"``, empty pieces dropped.
    """
    return "\n".join(part for part in _SENTENCE_END.split(text.strip()) if part)


def rouge_per_example(predictions: Sequence[str], references: Sequence[str]) -> dict[str, list[float]]:
    """ROUGE-1/2/L/Lsum F-measure of each pair, in percent (the terms :func:`rouge` averages; a
    paired bootstrap resamples them).

    Each pair is scored with ``rouge_score.rouge_scorer.RougeScorer(
    ["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)`` after both texts go through
    :func:`split_sentences`. Identical texts score 100, texts with no common token 0.

    Returns:
        {"rouge1", "rouge2", "rougeL", "rougeLsum"} -> (N,) floats in [0, 100].

    Raises:
        ValueError: if the lists differ in length or are empty.
    """
    from rouge_score import rouge_scorer

    _check_lengths(references, predictions)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    out: dict[str, list[float]] = {name: [] for name in ROUGE_TYPES}
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(split_sentences(reference), split_sentences(prediction))
        for name in ROUGE_TYPES:
            out[name].append(100.0 * scores[name].fmeasure)
    return out


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L/Lsum F-measure with Porter stemming, in percent: the plain mean over pairs
    of :func:`rouge_per_example` (no bootstrap).

    Args:
        predictions: (N,) generated summaries.
        references: (N,) reference summaries.

    Returns:
        {"rouge1", "rouge2", "rougeL", "rougeLsum"} -> float in [0, 100].

    Raises:
        ValueError: if the lists differ in length or are empty.
    """
    return {name: float(np.mean(values)) for name, values in rouge_per_example(predictions, references).items()}


def mean(y_true: Sequence, y_pred: Sequence[float]) -> float:
    """The mean of per-example scores ``y_pred`` (``y_true`` unused): the statistic of a paired
    bootstrap over a decomposable metric such as ROUGE (:func:`rouge_per_example`)."""
    return float(np.mean(y_pred))


def paired_bootstrap(metric, y_true: Sequence, pred_a: Sequence, pred_b: Sequence, *, resamples: int = 1000,
                     confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """A paired bootstrap interval of ``metric(y_true, pred_b) - metric(y_true, pred_a)``: the same
    resampled examples score both models (``scipy.stats.bootstrap`` with ``paired=True``,
    percentile interval), so the interval reflects only how the two models differ on them.

    Args:
        metric: A metric of this module (e.g. :func:`accuracy`, :func:`mcc`, :func:`pearson`).
        y_true, pred_a, pred_b: Labels and the two models' predictions, one per example.
        resamples: Bootstrap resamples; ``confidence``: the interval's level.

    Returns:
        ``{"diff", "low", "high", "n", "confidence"}`` in the metric's units (points); the difference
        is real at that level when the interval excludes 0.

    Raises:
        ValueError: If the lists differ in length or are empty.
    """
    from scipy.stats import bootstrap

    _check_lengths(y_true, pred_a)
    _check_lengths(y_true, pred_b)
    y, a, b = (np.asarray(v) for v in (y_true, pred_a, pred_b))

    def statistic(yy, aa, bb):
        return metric(list(yy), list(bb)) - metric(list(yy), list(aa))

    result = bootstrap((y, a, b), statistic, paired=True, vectorized=False, n_resamples=resamples,
                       confidence_level=confidence, method="percentile", random_state=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return {"diff": round(statistic(y, a, b), 2), "low": round(float(low), 2), "high": round(float(high), 2),
            "n": len(y), "confidence": confidence}
