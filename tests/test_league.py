"""The league table of explanation methods: every method scored on one model."""

from __future__ import annotations

import numpy as np
import pytest

from attnexplain.errors import InvalidInputError
from attnexplain.experiments.league import default_methods, league_metrics
from attnexplain.experiments.registry import get_experiment
from attnexplain.measures import list_measures
from attnexplain.runner import RunResult, parse_plan, run_plan

PLAN = {
    "name": "league",
    "datasets": [{"name": "synthetic", "options": {"n": 600, "seed": 3}}],
    "models": [{"encoder": "lstm", "hidden_size": 32}],
    "seeds": [1],
    "split": "test",
    "max_instances": 24,
    "train": {"epochs": 3, "embeddings": "random", "embed_dim": 32},
    # every registered measure (the default is the cheap ones, DEFAULT_MEASURES)
    "experiments": [{"name": "league.methods", "params": {"measures": list_measures()}}],
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
    assert set(league_metrics(list_measures())) <= set(summary.columns)
    # a trained BiLSTM's gradient finds the planted tokens far better than chance (the
    # planted words are a few of 30-60)
    assert summary.loc["jw-gradient", "auprc"] > 0.6
    assert summary["auprc"].notna().all() and (summary["count"] == 24).all()


def test_unknown_methods_are_refused():
    experiment = get_experiment("league.methods")
    with pytest.raises(InvalidInputError, match="unknown: \\['shap-magic'\\]"):
        experiment.resolve({"methods": ["attention", "shap-magic"]})


@pytest.mark.large
def test_wordpieces_take_the_planted_flag_of_their_word(synthetic):
    from transformers import AutoTokenizer

    from attnexplain.data import collate
    from attnexplain.experiments.league import rationale_tensor
    from attnexplain.experiments.site_attention import SiteBatch
    from attnexplain.models.hf import WordpieceTokenizer, pretrained_folder

    pipeline = WordpieceTokenizer(AutoTokenizer.from_pretrained(pretrained_folder("minilm")))
    frame = synthetic.splits["test"].head(6)
    batch = collate(pipeline.encode_split(frame), framing=pipeline.framing)
    site = SiteBatch(batch, None, None, None, None, np.arange(len(frame)))
    truth = rationale_tensor(frame, site, pipeline)
    pieces = 0
    for row, (text, flags) in enumerate(zip(frame["text"], frame["rationale"], strict=True)):
        alignment = pipeline.align(text)
        expected = [0.0 if w is None else float(flags[w]) for w in alignment.word_ids]
        assert truth[row, : len(expected)].tolist() == expected
        assert truth[row, len(expected) :].sum() == 0
        pieces += len(alignment.word_ids) - 2 - len(flags)
    assert pieces > 0  # the pseudo-words are split into several wordpieces


@pytest.mark.parametrize("question_last", [False, True])
def test_a_passage_read_with_its_question_takes_its_words_flags(question_last):
    """``[CLS] question [SEP] passage [SEP]`` (MiniLM's reading of bAbI) and ``<s> passage
    question`` (a decoder's): the supporting-fact flags land on the passage's own tokens."""
    import pandas as pd

    from attnexplain.data import collate
    from attnexplain.experiments.league import rationale_tensor
    from attnexplain.experiments.site_attention import SiteBatch
    from attnexplain.models.decoder import word_tokenizer
    from attnexplain.models.hf import WordpieceTokenizer
    from tests.user_models import _tokenizer

    passage, question = "mary went to the kitchen . john moved to the office .", "where is john ?"
    words = [*passage.split(), *question.split()]
    tokenizer = word_tokenizer(words) if question_last else _tokenizer("bert", words)
    pipeline = WordpieceTokenizer(tokenizer, 64, passage_only=True, question_last=question_last)
    frame = pd.DataFrame(
        {"text": [passage], "text_pair": [question], "rationale": [[0] * 6 + [1] * 6]}
    )
    sequences = pipeline.encode_split(frame)
    batch = collate(sequences, framing=pipeline.framing)
    site = SiteBatch(batch, None, None, None, None, np.arange(1))
    truth = rationale_tensor(frame, site, pipeline)[0]
    tokens = pipeline.decode(sequences[0])
    assert [tokens[i] for i in truth.nonzero().flatten()] == passage.split()[6:]


def test_every_registered_measure_is_a_column_and_refusals_are_said(league):
    table = league.results(0)
    assert set(list_measures()) <= set(table.columns)
    erasure = table[table["method"] == "leave-one-out"]  # runs the model on other inputs
    assert len(erasure) == 24 and erasure["sensitivity-max"].isna().all()
    assert erasure["not_measured"].str.contains("sensitivity-max: .*infidelity instead").all()
    gradient = table[table["method"] == "jw-gradient"]
    assert gradient["sensitivity-max"].notna().all() and (gradient["not_measured"] == "").all()


def test_the_summary_gives_intervals_and_each_measures_rank_side_by_side(league):
    summary = league.summary(0).set_index("method")
    for measure in list_measures():
        scored = summary.dropna(subset=[measure])  # sensitivity-max refuses erasure methods
        assert len(scored) >= 10, measure
        assert (scored[f"{measure}_low"] <= scored[measure] + 1e-12).all(), measure
        assert (scored[measure] <= scored[f"{measure}_high"] + 1e-12).all(), measure
    # comprehensiveness: higher is better, so rank 1 has the largest mean
    best = summary["rank_comprehensiveness"].idxmin()
    assert summary.loc[best, "comprehensiveness"] == summary["comprehensiveness"].max()
    # sufficiency and the sanity checks: lower is better
    best = summary["rank_sufficiency"].idxmin()
    assert summary.loc[best, "sufficiency"] == summary["sufficiency"].min()
    ranks = summary["rank_randomisation-cascading"].dropna()
    assert sorted(ranks) == sorted(summary["randomisation-cascading"].dropna().rank(method="min"))


def test_a_league_unit_at_the_default_measures_keeps_the_key_it_had_before_measures_existed():
    """Finished league units of earlier runs are found again: ``measures`` at its default
    (ERASER's pair, what the league always computed) is not part of the key; naming measures
    makes new work."""
    from attnexplain.runner.units import ExperimentUnit, config_key, expand

    plan = {**PLAN, "experiments": [{"name": "league.methods"}]}
    unit = next(u for u in expand(parse_plan(plan)) if isinstance(u, ExperimentUnit))
    assert unit.params["measures"] is None and "measures" not in unit.config["params"]
    before = {**unit.config, "params": {"methods": None, "batch_size": 16}}
    assert unit.key == config_key(before)
    named = {
        **PLAN,
        "experiments": [{"name": "league.methods", "params": {"measures": ["soft-sufficiency"]}}],
    }
    other = next(u for u in expand(parse_plan(named)) if isinstance(u, ExperimentUnit))
    assert other.config["params"]["measures"] == ["soft-sufficiency"] and other.key != unit.key


def test_the_figure_sets_each_measures_ranks_beside_the_values_and_the_agreement_is_a_rho(league):
    from attnexplain.experiments.league import figure_league, measure_agreement

    table = league.results(0)
    fig = figure_league(table)
    values, ranks = fig.axes
    assert [label.get_text() for label in ranks.get_xticklabels()] == list_measures()
    assert len(ranks.get_yticklabels()) == 0 and len(values.get_yticklabels()) >= 10
    agreement = measure_agreement(table)
    assert -1 <= agreement.low <= agreement.value <= agreement.high <= 1
