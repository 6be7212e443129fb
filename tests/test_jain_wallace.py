"""Jain & Wallace experiments on small real models (classic trained on the planted task, a
tiny random BERT)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from attnexplain import TrainConfig, load_checkpoint, train
from attnexplain.data import collate
from attnexplain.errors import InvalidInputError
from attnexplain.experiments import jain_wallace as jw
from attnexplain.experiments.paper_numbers import beside_paper, summary_quantities
from attnexplain.experiments.site_attention import attention_bin
from attnexplain.hooks import capture
from attnexplain.metrics import tvd
from attnexplain.models.checkpoint import at_site_layer
from tests.tiny_transformers import tiny_bert_checkpoint

QUICK = TrainConfig(epochs=1, embeddings="random", embed_dim=16, seed=1)
FAST_ADVERSARY = {"steps": 60, "adversaries": 3, "lr": 0.05}


@pytest.fixture(scope="module")
def classic(synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("jw") / "lstm"
    train(synthetic, out, {"encoder": "lstm", "hidden_size": 16}, QUICK, progress=False)
    return load_checkpoint(out)


@pytest.fixture(scope="module")
def frame(synthetic):
    return synthetic.test.iloc[:48]


@pytest.fixture(scope="module")
def tiny_bert():
    return tiny_bert_checkpoint()


def test_permuting_uniform_attention_changes_nothing(synthetic, frame, tmp_path):
    train(
        synthetic,
        tmp_path,
        {"encoder": "lstm", "hidden_size": 16, "attention_mode": "uniform"},
        QUICK,
        progress=False,
    )
    df = jw.run_permutation(load_checkpoint(tmp_path), frame, {"permutations": 20}, progress=False)
    assert len(df) == len(frame)
    # equal weights in another order: only the summation order of the context changes
    assert df["median_output_change"].max() < 1e-6 and df["mean_output_change"].max() < 1e-6


def test_permutation_moves_a_learned_model_and_summarises_by_bin(classic, frame):
    df = jw.run_permutation(classic, frame, {"permutations": 30}, progress=False)
    assert df["instance"].tolist() == list(range(len(frame)))
    assert (df["median_output_change"] >= 0).all() and df["median_output_change"].max() > 0
    summary = jw.summarise_permutation(df)
    overall = summary.iloc[-1]
    per_class = summary[(summary["predicted_class"] != "all")]
    per_bin = summary[(summary["predicted_class"] == "all") & (summary["bin"] != "all")]
    assert per_class["count"].sum() == per_bin["count"].sum() == overall["count"] == len(frame)
    assert overall["median"] == df["median_output_change"].median()
    binned = df.groupby(attention_bin(df["max_attention"]), observed=True)["median_output_change"]
    assert per_bin["median"].tolist() == binned.median().tolist()
    assert (summary["median_low"] <= summary["median"]).all()
    assert (summary["median"] <= summary["median_high"]).all()
    assert jw.figure_permutation(df).axes


def test_every_reported_adversary_respects_eps(classic, frame):
    subset = frame.iloc[:16]
    df = jw.run_adversarial(classic, subset, FAST_ADVERSARY, progress=False)
    eps = df["eps_report"].iloc[0]
    sequences = classic.pipeline.encode_split(subset)
    for row in df.itertuples():
        changes, distances = np.array(row.adversary_output_change), np.array(row.adversary_jsd)
        within = changes <= eps
        assert row.adversaries_within_eps == within.sum()
        assert row.eps_max_jsd == pytest.approx(max([0.0, *distances[within]]))
        # re-decode the stored adversaries from scratch: their outputs moved as reported
        batch = collate([sequences[row.instance]])
        weights = torch.tensor(row.adversaries, dtype=torch.float32)
        with torch.no_grad():
            own = classic.model.probabilities(classic.model.forward_batch(batch))
            moved = tvd(
                classic.model.probabilities(
                    classic.model(
                        batch.token_ids.expand(len(weights), -1),
                        batch.lengths.expand(len(weights)),
                        batch.content_mask.expand(len(weights), -1),
                        attention=weights,
                    )
                ),
                own,
            )
        assert np.allclose(moved.numpy(), changes, atol=1e-5)
        assert (moved[torch.from_numpy(within)] <= eps + 1e-6).all()
    assert df["eps_max_jsd"].between(0, np.log(2)).all() and df["eps_max_jsd"].max() > 0.1
    summary = jw.summarise_adversarial(df)
    assert set(summary.columns) >= {"median_eps_max_jsd", "share_at_least_0.5"}
    overall = summary[summary["predicted_class"] == "all"].iloc[0]
    assert overall["count"] == len(df)
    assert overall["median_eps_max_jsd"] == pytest.approx(df["eps_max_jsd"].median())
    assert overall["median_eps_max_jsd_low"] <= overall["median_eps_max_jsd"]
    assert overall["median_eps_max_jsd"] <= overall["median_eps_max_jsd_high"]
    assert jw.figure_adversarial(df).axes


def test_correlation_reports_tau_per_method_and_class(classic, frame):
    df = jw.run_correlation(classic, frame.iloc[:24], progress=False)
    for method in ("jw-gradient", "leave-one-out"):
        tau = df[f"tau_{method}"].dropna()
        assert len(tau) > 0 and tau.between(-1, 1).all()
    summary = jw.summarise_correlation(df)
    assert set(summary["method"]) == {"jw-gradient", "leave-one-out"}
    overall = summary["predicted_class"] == "all"
    assert (summary["count"] + summary["undefined"])[~overall].sum() == 2 * 24
    assert (summary["count"] + summary["undefined"])[overall].tolist() == [24, 24]
    # every mean lies in its bootstrap interval; the overall row is the mean over instances
    assert (summary["mean_tau_low"] <= summary["mean_tau"]).all()
    assert (summary["mean_tau"] <= summary["mean_tau_high"]).all()
    assert (summary["mean_tau_low"] < summary["mean_tau_high"]).all()
    gradient = summary[overall & (summary["method"] == "jw-gradient")].iloc[0]
    assert gradient["mean_tau"] == pytest.approx(df["tau_jw-gradient"].mean())
    assert jw.figure_correlation(df).axes


def test_experiments_run_on_a_transformer(tiny_bert, frame):
    subset = frame.iloc[:6]
    permuted = jw.run_permutation(tiny_bert, subset, {"permutations": 8}, progress=False)
    adversarial = jw.run_adversarial(
        tiny_bert, subset, {**FAST_ADVERSARY, "steps": 5}, progress=False
    )
    assert len(permuted) == len(adversarial) == 6
    assert np.array(adversarial["adversaries"].iloc[0]).shape[:2] == (3, 4)  # K, heads


def test_experiments_read_the_site_layer_they_are_given(tiny_bert, frame, classic):
    subset = frame.iloc[:6]
    first = at_site_layer(tiny_bert, 0)
    batch = collate(tiny_bert.pipeline.encode_split(subset))
    with capture(tiny_bert.model.model) as cache:
        tiny_bert.model.forward_batch(batch)
    state = first.model.encode_batch(batch)
    # the [CLS] row of layer 0, all heads
    assert torch.allclose(first.model.attention(state), cache["layers.0.attn.pattern"][:, :, 0])
    default = jw.run_permutation(tiny_bert, subset, {"permutations": 8}, progress=False)
    layer0 = jw.run_permutation(first, subset, {"permutations": 8}, progress=False)
    assert not np.allclose(default["max_attention"], layer0["max_attention"])
    with pytest.raises(InvalidInputError, match="one attention site"):
        at_site_layer(classic, 0)


def test_babi_is_put_beside_the_papers_one_number_over_all_instances():
    # J&W's bAbI rows are means over all instances: the summary's row of class "all" (computed
    # from the instances), never a per-class row
    summary = pd.DataFrame(
        {
            "dataset": "babi-2",
            "model": "lstm-additive",
            "seed": 10,
            "method": "jw-gradient",
            "predicted_class": ["garden", "kitchen", "all"],
            "mean_tau": [0.2, 0.5, 0.275],
            "mean_tau_low": [0.15, 0.4, 0.25],
            "mean_tau_high": [0.25, 0.6, 0.3],
            "sig_frac": [0.5, 1.0, 0.625],
            "count": [30, 10, 40],
        }
    )
    table = beside_paper(summary_quantities("jain_wallace.correlation", summary))
    assert table["quantity"].tolist() == ["tau jw-gradient"]  # J&W give no bAbI Sig. Frac.
    row = table.iloc[0]
    assert (row["paper_dataset"], row["predicted_class"], row["paper"]) == ("bAbI 2", "all", 0.17)
    assert (row["ours"], row["ours_low"], row["ours_high"], row["count"]) == (0.275, 0.25, 0.3, 40)


def test_summaries_are_put_beside_the_papers_numbers_by_class_order():
    summary = pd.DataFrame(
        {
            "dataset": ["imdb", "imdb", "rt-sentences", "tweets"],
            "model": ["lstm-additive"] * 3 + ["average-additive"],
            "seed": 10,
            "method": "jw-gradient",
            "predicted_class": ["positive", "negative", "negative", "negative"],
            "mean_tau": [0.5, 0.3, 0.4, 0.9],
            "sig_frac": 1.0,
            "count": 7,
        }
    )
    table = beside_paper(summary_quantities("jain_wallace.correlation", summary))
    taus = table[table["quantity"] == "tau jw-gradient"]
    # IMDB class 1 (positive) .37, class 0 .37; SST class 0 .40; tweets has no paper value
    assert taus["paper_dataset"].tolist() == ["IMDB", "IMDB", "SST"]
    assert taus["paper"].tolist() == [0.37, 0.37, 0.40]
    assert np.allclose(taus["difference"], [0.13, -0.07, 0.0])
    sig = table[table["quantity"] == "sig. frac. jw-gradient"]
    assert sig["paper"].tolist() == [0.99, 1.0, 0.59]
