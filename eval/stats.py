"""How sure a score is: bootstrap intervals over test examples, and paired intervals for the
difference between two models scored on the same examples (scipy's bootstrap, percentile)."""

from __future__ import annotations

import numpy as np
from scipy.stats import bootstrap

RESAMPLES = 1000
LEVEL = 0.95


def _metric(task_type: str):
    """The metric as a vectorised function of per-example count columns (see
    ``compress.scoring.example_counts``)."""
    if task_type == "classification":
        return lambda correct, axis=-1: correct.mean(axis=axis)
    if task_type == "qa":  # columns EM and F1 per question; the score is the mean F1
        return lambda em, f1, axis=-1: f1.mean(axis=axis)

    def f1(tp, pred, gold, axis=-1):
        denom = pred.sum(axis=axis) + gold.sum(axis=axis)
        return np.divide(2 * tp.sum(axis=axis), denom, out=np.zeros_like(denom), where=denom > 0)

    return f1


def _columns(counts: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(np.ascontiguousarray(counts[:, i]) for i in range(counts.shape[1]))


def _interval(columns: tuple[np.ndarray, ...], statistic, seed: int) -> list[float]:
    """Percentile interval of ``statistic`` with all columns resampled by the same indices."""
    if len(columns[0]) < 2:
        return [float("nan"), float("nan")]
    result = bootstrap(
        columns,
        statistic,
        paired=True,
        vectorized=True,
        n_resamples=RESAMPLES,
        confidence_level=LEVEL,
        method="percentile",
        random_state=seed,
    )
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def score_interval(task_type: str, counts: np.ndarray, seed: int = 0) -> list[float]:
    """95% bootstrap interval of the metric over the examples."""
    return _interval(_columns(counts), _metric(task_type), seed)


def paired_delta(
    task_type: str, counts: np.ndarray, reference: np.ndarray, seed: int = 0
) -> tuple[float, list[float]]:
    """The metric of ``counts`` minus that of ``reference`` (same examples, same order) and its
    95% paired bootstrap interval: both are resampled with the same example indices."""
    if counts.shape != reference.shape:
        raise ValueError("a paired difference needs both models scored on the same examples")
    metric, k = _metric(task_type), counts.shape[1]

    def delta(*columns, axis=-1):
        return metric(*columns[:k], axis=axis) - metric(*columns[k:], axis=axis)

    columns = _columns(counts) + _columns(reference)
    return float(delta(*columns)), _interval(columns, delta, seed)


def within_noise(interval: list[float]) -> bool:
    """A difference whose interval contains 0 is not a finding."""
    return bool(interval[0] <= 0 <= interval[1])
