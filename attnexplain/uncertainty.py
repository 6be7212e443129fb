"""Bootstrap confidence intervals over instances: seeded, vectorised (one resampling matrix,
one reduction), cheap enough for every number a report shows; and the rule a paper's number
is judged by against ours (:func:`agrees_with`, :func:`ordered`), written out in
reports/README.md."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A statistic of per-instance values and its percentile bootstrap interval; ``count``
    the instances it rests on (NaNs left out)."""

    value: float
    low: float
    high: float
    count: int

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def bootstrap(
    values,
    statistic: Callable[..., np.ndarray] = np.mean,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> Interval:
    """``statistic`` (a numpy reduction taking ``axis``: ``np.mean``, ``np.median``) of
    ``values`` [N] with its percentile bootstrap interval at ``level``, from ``resamples``
    resamplings of the instances drawn with ``seed``. NaN values are left out; none left gives
    NaNs and count 0."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return _resampled(
        lambda rows: statistic(values[rows], axis=1), len(values), resamples, level, seed
    )


def paired_difference(
    first,
    second,
    statistic: Callable[..., np.ndarray] = np.mean,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> Interval:
    """The bootstrap interval of ``statistic(first) - statistic(second)`` for two measures of
    the same instances [N] (resampled together, so their correlation counts); instances where
    either is NaN are left out. An interval that excludes 0 says the two differ at ``level``."""
    first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
    both = ~(np.isnan(first) | np.isnan(second))
    first, second = first[both], second[both]
    return _resampled(
        lambda rows: statistic(first[rows], axis=1) - statistic(second[rows], axis=1),
        len(first),
        resamples,
        level,
        seed,
    )


def ranking_agreement(
    scores: Mapping[str, np.ndarray],
    reference: str,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> Interval:
    """How alike several measures rank the same items: the mean over the other measures of
    the Spearman rho between the items' ranking under ``reference`` and under that measure,
    each ranking by the items' mean over instances, with the bootstrap interval of
    resampling the instances (together for every measure and item).

    scores: ``{measure: [items, N]}``, oriented so that larger is better under every
    measure, NaN where a measure leaves an item's instance undefined; an item a pair of
    measures does not both define is left out of that pair's rho."""
    matrices = {name: np.asarray(values, np.float64) for name, values in scores.items()}
    first = matrices.pop(reference)

    def estimate(rows: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            base = np.nanmean(first[:, rows], axis=2)  # [items, resamples]
            rhos = [
                _spearman_columns(base, np.nanmean(m[:, rows], axis=2)) for m in matrices.values()
            ]
        return np.nanmean(rhos, axis=0) if rhos else np.full(len(rows), np.nan)

    return _resampled(estimate, first.shape[1], resamples, level, seed)


def _spearman_columns(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Spearman rho of two [items, K] tables, column by column, over the items defined in
    both throughout (NaN with fewer than 3)."""
    both = ~(np.isnan(first) | np.isnan(second)).any(axis=1)
    if both.sum() < 3:
        return np.full(first.shape[1], np.nan)
    a, b = rankdata(first[both], axis=0), rankdata(second[both], axis=0)
    a, b = a - a.mean(0), b - b.mean(0)
    return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))


def f1_bootstrap(
    labels,
    predicted,
    classes: int,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> Interval:
    """The F1 of ``predicted`` [N] against ``labels`` [N] (positive-class F1 for 2
    ``classes``, else macro F1 over the classes either holds, as scikit-learn's with
    ``zero_division=0``) with its percentile bootstrap interval over instances."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    score = _f1_of(labels, [predicted], classes)
    return _resampled(lambda rows: score(rows, 0), len(labels), resamples, level, seed)


def paired_f1_difference(
    labels,
    first,
    second,
    classes: int,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> Interval:
    """F1(``first``) - F1(``second``), two predictions [N] of the same instances against
    ``labels`` [N], with its paired bootstrap interval (both scored on each resample)."""
    labels = np.asarray(labels)
    score = _f1_of(labels, [np.asarray(first), np.asarray(second)], classes)
    return _resampled(
        lambda rows: score(rows, 0) - score(rows, 1), len(labels), resamples, level, seed
    )


def _f1_of(
    labels: np.ndarray, predictions: list[np.ndarray], classes: int
) -> Callable[[np.ndarray, int], np.ndarray]:
    """``score(rows, k)``: F1 [resamples] of ``predictions[k]`` on each row resampling
    [resamples, N], over the classes the labels or any prediction hold (macro) or class 1."""
    kinds = [1] if classes == 2 else np.union1d(labels, np.concatenate(predictions)).tolist()

    def score(rows: np.ndarray, which: int) -> np.ndarray:
        truth, guess = labels[rows], predictions[which][rows]
        per_class = []
        for kind in kinds:
            hits = ((truth == kind) & (guess == kind)).sum(1)
            wrong = (truth == kind).sum(1) + (guess == kind).sum(1) - 2 * hits
            per_class.append(np.where(hits > 0, 2 * hits / np.maximum(2 * hits + wrong, 1), 0.0))
        return np.mean(per_class, axis=0)

    return score


def interval_columns(
    name: str, values, statistic: Callable[..., np.ndarray] = np.mean, seed: int = 0
) -> dict[str, float]:
    """``{name: value, name_low: low, name_high: high}``: :func:`bootstrap`'s 95% interval of
    ``statistic`` over ``values`` [N], as a summary table's columns."""
    return columns_of(name, bootstrap(values, statistic, seed=seed))


def interval_row(
    frame, statistics: dict[str, tuple[str, Callable[..., np.ndarray]]]
) -> dict[str, float]:
    """For each ``name: (column, statistic)``, :func:`interval_columns` of
    ``statistic(frame[column])``: one summary row's values with their intervals."""
    row: dict[str, float] = {}
    for name, (column, statistic) in statistics.items():
        row |= interval_columns(name, frame[column].to_numpy(np.float64), statistic)
    return row


def columns_of(name: str, interval: Interval) -> dict[str, float]:
    """An :class:`Interval` as summary columns ``name``, ``name_low``, ``name_high``."""
    return {name: interval.value, f"{name}_low": interval.low, f"{name}_high": interval.high}


def agrees_with(paper: float, low: float, high: float, spread: float, allowance: float) -> bool:
    """Whether a paper's number lies inside our interval [``low``, ``high``] widened on each
    side by the between-seed ``spread`` (the standard deviation of our statistic across
    training seeds; 0 where one seed was trained) and the stated ``allowance`` for a
    stand-in dataset (0 where we run the paper's own data)."""
    margin = (0.0 if np.isnan(spread) else spread) + allowance
    return bool(low - margin <= paper <= high + margin)


def ordered(
    smaller,
    larger,
    statistic: Callable[..., np.ndarray] = np.mean,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> tuple[bool, Interval]:
    """A paired bootstrap test that ``statistic(larger)`` exceeds ``statistic(smaller)`` on
    the same instances [N]: it passes when the ``level`` interval of the difference lies above
    0 (one-sided at (1 - ``level``) / 2). Returns (passes, the difference's interval)."""
    difference = paired_difference(larger, smaller, statistic, resamples, level, seed)
    return bool(difference.low > 0), difference


def _resampled(
    estimate: Callable[[np.ndarray], np.ndarray],
    count: int,
    resamples: int,
    level: float,
    seed: int,
) -> Interval:
    """The interval of ``estimate(rows)`` [resamples] over row resamplings [resamples, count];
    the value is ``estimate`` of the instances as they are."""
    if count == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    rows = np.random.default_rng(seed).integers(0, count, (resamples, count))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(estimate(rows), [tail, 100 - tail])
    value = float(estimate(np.arange(count)[None])[0])
    return Interval(value, float(low), float(high), count)
