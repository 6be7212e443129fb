"""The uncertainty on every reported number (attnexplain.uncertainty): bootstrap intervals that
cover at their nominal rate, F1 with its interval equal to scikit-learn's F1, and the rule a
paper's number is judged by, at its edges."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from attnexplain.uncertainty import (
    agrees_with,
    bootstrap,
    f1_bootstrap,
    ordered,
    paired_f1_difference,
)


def test_intervals_cover_the_true_mean_and_median_at_about_their_nominal_rate():
    rng = np.random.default_rng(0)
    for statistic, truth in ((np.mean, 0.3), (np.median, 0.3)):
        covered = 0
        for trial in range(200):
            values = rng.normal(0.3, 0.2, size=150)
            interval = bootstrap(values, statistic, resamples=500, seed=trial)
            covered += interval.low <= truth <= interval.high
        # 95% nominal; 200 trials give a binomial sd of about 1.5 points
        assert 0.90 <= covered / 200 <= 0.99, (statistic, covered)


def test_f1_and_its_interval_match_scikit_learn():
    rng = np.random.default_rng(1)
    for classes in (2, 4):
        labels = rng.integers(classes, size=300)
        predicted = np.where(rng.random(300) < 0.7, labels, rng.integers(classes, size=300))
        average = "binary" if classes == 2 else "macro"
        expected = f1_score(labels, predicted, average=average, zero_division=0)
        interval = f1_bootstrap(labels, predicted, classes)
        assert interval.value == pytest.approx(expected)
        assert interval.low < expected < interval.high
        # one resample by hand: the vectorised F1 is scikit-learn's on those rows
        rows = np.random.default_rng(0).integers(0, 300, 300)
        again = f1_bootstrap(labels[rows], predicted[rows], classes)
        assert again.value == pytest.approx(
            f1_score(labels[rows], predicted[rows], average=average, zero_division=0)
        )


@pytest.mark.parametrize(
    ("paper", "spread", "allowance", "holds"),
    [
        (0.41, 0.0, 0.0, True),  # inside the interval itself
        (0.451, 0.0, 0.0, False),  # just above it
        (0.451, 0.01, 0.0, True),  # ... inside once widened by the seeds' spread
        (0.451, 0.0, 0.01, True),  # ... or by a stand-in's allowance
        (0.461, 0.005, 0.005, False),  # just outside both widenings together
        (0.459, 0.005, 0.005, True),  # just inside them
        (0.3489, 0.0, 0.0, False),  # below the interval
        (0.35, float("nan"), 0.0, True),  # one seed: no spread, the edge itself counts
    ],
)
def test_a_paper_number_agrees_inside_the_widened_interval_only(paper, spread, allowance, holds):
    assert agrees_with(paper, 0.35, 0.45, spread, allowance) is holds


def test_an_ordering_passes_its_paired_test_only_when_the_difference_is_clear():
    rng = np.random.default_rng(2)
    shared = rng.normal(0, 1, 200)  # instance difficulty both measures share
    smaller = shared + rng.normal(0, 0.1, 200)
    passes, difference = ordered(smaller, smaller + 0.05)
    assert passes and difference.low > 0
    # a lead smaller than the noise: not shown
    passes, difference = ordered(smaller, smaller + rng.normal(0.005, 0.2, 200))
    assert not passes and difference.low <= 0 <= difference.high
    # the reverse ordering fails
    assert not ordered(smaller + 0.05, smaller)[0]


def test_a_paired_f1_difference_is_the_difference_of_the_two_f1s():
    rng = np.random.default_rng(3)
    labels = rng.integers(3, size=400)
    good = np.where(rng.random(400) < 0.8, labels, rng.integers(3, size=400))
    poor = np.where(rng.random(400) < 0.5, labels, rng.integers(3, size=400))
    difference = paired_f1_difference(labels, good, poor, 3)
    expected = f1_score(labels, good, average="macro") - f1_score(labels, poor, average="macro")
    assert difference.value == pytest.approx(expected)
    assert 0 < difference.low < expected < difference.high
    # a model against itself: exactly no difference on every resample
    same = paired_f1_difference(labels, good, good, 3)
    assert same.low == same.high == 0
