"""Bootstrap confidence intervals over instances: seeded, vectorised (one resampling matrix,
one reduction), cheap enough for every number a report shows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

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
