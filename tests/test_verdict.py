"""The verdict's intervals and words: bootstrap intervals that cover at their nominal rate, and
answers that change exactly at the stated thresholds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attnexplain.experiments import verdict as v
from attnexplain.uncertainty import bootstrap, paired_difference


def test_bootstrap_intervals_cover_the_true_mean_at_about_their_nominal_rate():
    rng = np.random.default_rng(7)
    hits = 0
    for trial in range(300):
        interval = bootstrap(rng.normal(0.3, 1.0, 80), resamples=500, seed=trial)
        hits += interval.low <= 0.3 <= interval.high
    assert 0.90 <= hits / 300 <= 0.98


def test_nans_are_left_out_and_an_empty_sample_is_nan():
    interval = bootstrap([0.2, np.nan, 0.4])
    assert interval.count == 2 and np.isclose(interval.value, 0.3)
    assert 0.2 <= interval.low <= interval.high <= 0.4
    assert np.isnan(bootstrap([np.nan]).value) and bootstrap([]).count == 0


def test_a_paired_difference_excludes_zero_only_when_the_measures_differ():
    rng = np.random.default_rng(0)
    base = rng.normal(0.0, 1.0, 200)
    assert paired_difference(base + 0.2, base).low > 0  # same instances, a clear shift
    assert paired_difference(base + rng.normal(0, 0.01, 200), base).low <= 0


def _correlation(tau: float) -> pd.DataFrame:
    return pd.DataFrame({"tau_jw-gradient": [tau] * 10, "tau_leave-one-out": [tau - 0.1] * 10})


def test_agreement_turns_weak_moderate_strong_at_its_thresholds():
    assert v.agreement(_correlation(0.2999))[0] == "weak"
    assert v.agreement(_correlation(0.3001))[0] == "moderate"
    assert v.agreement(_correlation(0.6001))[0] == "strong"


def test_adversarial_and_permutation_answers_follow_their_scales():
    share = pd.DataFrame({"eps_max_jsd": [0.6] * 5 + [0.1] * 5, "eps_report": 0.05})
    assert v.adversarial(share)[0] == "fragile"  # 50%: at the threshold
    assert v.adversarial(share.assign(eps_max_jsd=[0.6] + [0.1] * 9))[0] == "robust"
    moves = pd.DataFrame({"median_output_change": [0.04] * 9 + [0.5]})
    assert v.permutation(moves)[0] == "hardly moves"


def test_the_most_faithful_method_is_tied_when_its_lead_is_within_noise():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.1, 40)
    rows = pd.DataFrame(
        {
            "instance": np.tile(np.arange(40), 3),
            "method": np.repeat(["alti", "attention", "saliency"], 40),
            "comprehensiveness": np.concatenate([0.5 + noise, 0.2 + noise, 0.49 + noise[::-1]]),
        }
    )
    answer, statement, interval = v.most_faithful(rows)
    assert answer == "alti (tied with saliency)"
    assert "raw attention ranks 3 of 3" in statement and interval.count == 40
    clear = rows[rows["method"] != "saliency"]
    assert v.most_faithful(clear)[0] == "alti"


def _league_rows(measures: dict[str, list[float]], instances: int = 60) -> pd.DataFrame:
    """A per-instance league table: per measure, each method's mean (noise .05 around it)."""
    rng = np.random.default_rng(0)
    methods = ["attention", "gradient", "loo", "norm"]
    rows = []
    for index, method in enumerate(methods):
        part = {"instance": np.arange(instances), "method": method, "unsupported": ""}
        part["spearman_gradient"] = rng.normal(0.3, 0.1, instances)
        for name, means in measures.items():
            part[name] = rng.normal(means[index], 0.05, instances)
        rows.append(pd.DataFrame(part))
    return pd.concat(rows, ignore_index=True)


def test_the_measures_agree_when_they_rank_the_methods_alike_and_not_when_reversed():
    alike = _league_rows(
        {
            "comprehensiveness": [0.1, 0.4, 0.3, 0.2],
            "sufficiency": [0.4, 0.1, 0.2, 0.3],
            "soft-sufficiency": [0.4, 0.1, 0.2, 0.3],
        }
    )
    word, statement, interval = v.measures_agree(alike)
    assert word == "alike" and interval.value == 1.0  # sufficiency: lower is better
    assert "comprehensiveness: gradient" in statement and "raw attention ranks 4, 4, 4" in statement
    reversed_ = _league_rows(
        {"comprehensiveness": [0.1, 0.4, 0.3, 0.2], "soft-comprehensiveness": [0.4, 0.1, 0.2, 0.3]}
    )
    word, _, interval = v.measures_agree(reversed_)
    assert word == "unlike" and interval.value == -1.0 and interval.high < 0
    eraser = {"comprehensiveness": [0.1, 0.4, 0.3, 0.2], "sufficiency": [0.4, 0.1, 0.2, 0.3]}
    assert v.measures_agree(_league_rows(eraser)) is None  # the default league's pair


def test_measure_agreement_refuses_a_method_listed_twice_for_one_instance():
    from attnexplain.experiments.league import measure_agreement

    rows = _league_rows({"comprehensiveness": [0.1, 0.4, 0.3, 0.2], "sufficiency": [0] * 4})
    doubled = pd.concat([rows, rows.head(1)], ignore_index=True)
    with pytest.raises(ValueError, match="duplicate"):
        measure_agreement(doubled)


def test_a_method_fails_a_sanity_check_when_most_of_its_ranking_survives():
    # attention's similarity to its scores on the destroyed model .9, the others .1-.3
    rows = _league_rows(
        {"comprehensiveness": [0.1] * 4, "data-randomisation": [0.9, 0.1, 0.3, 0.2]}
    )
    word, statement, interval = v.sanity_checks(rows)
    assert word == "attention fails data-randomisation" and interval.low > 0.5
    assert "data-randomisation: attention." in statement
    near = _league_rows(
        {"comprehensiveness": [0.1] * 4, "data-randomisation": [0.5, 0.1, 0.3, 0.2]}
    )
    assert v.sanity_checks(near)[0] == "attention passes"  # .5 inside its interval: not above
    assert v.sanity_checks(_league_rows({"comprehensiveness": [0.1] * 4})) is None
