"""The league table of explanation methods: every method scored on one model."""

from __future__ import annotations

import numpy as np
import pytest

from attnexplain.errors import InvalidInputError
from attnexplain.experiments.league import METRICS, default_methods
from attnexplain.experiments.registry import get_experiment
from attnexplain.runner import RunResult, parse_plan, run_plan

PLAN = {
    "name": "league",
    "datasets": [{"name": "synthetic", "options": {"n": 600, "seed": 3}}],
    "models": [{"encoder": "lstm", "hidden_size": 32}],
    "seeds": [1],
    "split": "test",
    "max_instances": 24,
    "train": {"epochs": 3, "embeddings": "random", "embed_dim": 32},
    "experiments": [{"name": "league.methods"}],
}


@pytest.fixture(scope="module")
def league(tmp_path_factory) -> RunResult:
    return run_plan(parse_plan(PLAN), tmp_path_factory.mktemp("league"), progress=False)


def test_every_method_gets_a_row_per_instance_and_the_references_agree_with_themselves(league):
    table = league.results(0)
    methods = default_methods()
    assert sorted(table["method"].unique()) == sorted(methods)
    assert (table.groupby("method").size() == 24).all()
    gradient = table[table["method"] == "jw-gradient"]
    np.testing.assert_allclose(gradient["spearman_gradient"], 1.0)
    np.testing.assert_allclose(gradient["kendall_gradient"], 1.0)
    loo = table[table["method"] == "leave-one-out"]
    np.testing.assert_allclose(loo["spearman_loo"], 1.0)


def test_plausibility_is_scored_against_the_planted_tokens(league):
    summary = league.summary(0).set_index("method")
    assert set(METRICS) <= set(summary.columns)
    # a trained BiLSTM's gradient finds the planted tokens far better than chance (the
    # planted words are a few of 30-60)
    assert summary.loc["jw-gradient", "auprc"] > 0.6
    assert summary["auprc"].notna().all() and (summary["count"] == 24).all()


def test_unknown_methods_are_refused():
    experiment = get_experiment("league.methods")
    with pytest.raises(InvalidInputError, match="unknown: \\['shap-magic'\\]"):
        experiment.resolve({"methods": ["attention", "shap-magic"]})
