"""Serrano & Smith experiments: exact cases on hand-set classic models, and both experiments
through the registry on a trained classic model and a tiny random BERT."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from attnexplain import TrainConfig, load_checkpoint, train
from attnexplain.data.text import SPECIAL_TOKENS, TextPipeline, Vocabulary, tokenize
from attnexplain.errors import InvalidInputError
from attnexplain.experiments import get_experiment
from attnexplain.experiments import serrano_smith as ss
from attnexplain.models.checkpoint import Checkpoint
from attnexplain.models.classic import ClassicConfig, ClassicModel
from tests.tiny_transformers import tiny_bert_checkpoint

QUICK = TrainConfig(epochs=1, embeddings="random", embed_dim=16, seed=1)
ZERO_TOP_COLUMNS = [
    "count",
    "undefined",
    "mean_jsd_top",
    "mean_jsd_random",
    "flip_rate_top",
    "flip_rate_random",
    "share_top_larger",
]
FLIP_FRACTION_COLUMNS = ["ordering", "median_fraction", "never_flipped", "flipped", "count"]
WORDS = ["ba", "ko", "zz"]  # "zz" is the planted word


def hand_set_checkpoint(attention_mode: str = "learned") -> Checkpoint:
    """An average-encoder dot-attention model, H = 2, set by hand: "zz" has h ~ (1, 1) and
    takes almost all attention (score 14 vs 0); other words have h[1] < 0. The decision
    (sign of h[1] of the context) is positive while "zz" is attended and negative once it is
    removed, so the planted token alone decides the label."""
    vocab = Vocabulary([*SPECIAL_TOKENS, *WORDS])
    config = ClassicConfig(
        vocab_size=len(vocab),
        encoder="average",
        attention="dot",
        embed_dim=2,
        hidden_size=2,
        attention_mode=attention_mode,
    )
    model = ClassicModel(config).eval()
    embeddings = {"ba": [0.0, -3.0], "ko": [0.5, -2.0], "zz": [3.0, 3.0]}
    with torch.no_grad():
        model.embedding.weight.zero_()
        for word, vector in embeddings.items():
            model.embedding.weight[vocab.stoi[word]] = torch.tensor(vector)
        model.encoder.projection.weight.copy_(torch.eye(2))
        model.encoder.projection.bias.zero_()
        if model.scorer is not None:
            model.scorer.vector.weight.copy_(torch.tensor([[20.0, 0.0]]))
        model.decoder.weight.copy_(torch.tensor([[0.0, 1.0]]))
        model.decoder.bias.zero_()
    return Checkpoint(model, TextPipeline(vocab), ["class0", "class1"])


def text_frame(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {"text": texts, "label": [0] * len(texts), "tokens": [tokenize(t) for t in texts]}
    )


PLANTED = text_frame(
    [
        "zz ba",
        "ba zz ko",
        "ko ba ba zz",
        "ba ko zz ba ko",
        "zz ba ba ba ko ko ba",
        "ba ba ko ko ba ba ko zz ba ko",
        "zz",
    ]
)


@pytest.fixture(scope="module")
def classic(synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("ss") / "lstm"
    train(synthetic, out, {"encoder": "lstm", "hidden_size": 16}, QUICK, progress=False)
    return load_checkpoint(out)


@pytest.fixture(scope="module")
def tiny_bert():
    return tiny_bert_checkpoint()


def test_flip_fraction_is_one_over_n_when_one_planted_token_decides_the_label():
    checkpoint = hand_set_checkpoint()
    df = ss.run_flip_fraction(checkpoint, PLANTED, progress=False)
    n = df["items"].to_numpy()
    assert n.tolist() == [2, 3, 4, 5, 7, 10, 1]
    assert (df["predicted"] == 1).all()  # "zz" attended: positive
    several = n >= 2
    for ordering in ("attention", "gradient", "gradient_x_attention"):
        # "zz" comes first in each order; removing it alone flips the decision
        assert df[f"fraction_{ordering}"].to_numpy()[several].tolist() == (1 / n[several]).tolist()
        assert not df[f"never_flipped_{ordering}"].to_numpy()[several].any()
    # one item: nothing can be removed with one left, so it never flips
    last = df.iloc[-1]
    assert math.isnan(last["fraction_attention"]) and last["never_flipped_attention"]
    # random order: the flip comes when "zz" goes, at its random rank, unless it comes last
    removed = (df["fraction_random"] * df["items"]).dropna().to_numpy()
    assert np.allclose(removed, np.round(removed)) and (removed >= 1).all()
    assert (df["never_flipped_random"] == df["fraction_random"].isna()).all()
    summary = ss.summarise_flip_fraction(df).set_index("ordering")
    assert summary.loc["attention", "never_flipped"] == pytest.approx(1 / 7)
    assert summary.loc["attention", "median_fraction"] == pytest.approx(np.median(1 / n[several]))


def test_zeroing_the_planted_top_item_flips_and_a_random_one_does_not():
    df = ss.run_zero_top(hand_set_checkpoint(), PLANTED, progress=False)
    defined = df.iloc[:-1]
    assert defined["flipped_top"].all() and not defined["flipped_random"].any()
    assert (defined["jsd_top"] > defined["jsd_random"]).all()
    assert (defined["attention_difference"] > 0.99).all()
    assert (defined["top_item"] != defined["random_item"]).all()
    assert pd.isna(df.iloc[-1]["flipped_top"]) and math.isnan(df.iloc[-1]["jsd_top"])
    summary = ss.summarise_zero_top(df)
    assert summary.columns.tolist() == ZERO_TOP_COLUMNS
    row = summary.iloc[0]
    assert (row["count"], row["undefined"]) == (6, 1)
    assert (row["flip_rate_top"], row["flip_rate_random"], row["share_top_larger"]) == (1, 0, 1)


def test_zeroing_the_top_of_a_uniform_attention_equals_zeroing_a_random_item():
    # uniform attention over exchangeable items: the top item is no different from any other
    frame = text_frame(["ba ba", "ko ko ko", "ba ba ba ba ba", "ko ko ko ko ko ko ko ko"])
    df = ss.run_zero_top(hand_set_checkpoint("uniform"), frame, progress=False)
    assert (df["attention_difference"] == 0).all()
    assert np.allclose(df["jsd_top"], df["jsd_random"], atol=1e-7)
    assert (df["flipped_top"] == df["flipped_random"]).all()
    assert (df["top_item"] != df["random_item"]).all()


def test_fraction_at_flip_counts_only_removals_that_leave_an_item():
    flipped = torch.tensor([[False, True, True], [False, False, True], [False, False, False]])
    fraction = ss.fraction_at_flip(flipped, torch.tensor([4, 3, 4]))
    # row 1: its flip needs all 3 items removed, which leaves none
    assert fraction[0] == 2 / 4 and fraction[1:].isnan().all()
    removed = ss.removal_masks(
        torch.tensor([[0.1, 0.5, 0.2, 0.0]]), torch.tensor([[True, True, True, False]])
    )
    assert removed.tolist() == [[[False, True, False, False], [False, True, True, False]]]


@pytest.mark.parametrize("family", ["classic", "transformer"])
def test_both_experiments_run_through_the_registry(family, request, synthetic):
    checkpoint = request.getfixturevalue("classic" if family == "classic" else "tiny_bert")
    frame = synthetic.test.iloc[:12]
    for name, columns in (
        ("serrano_smith.zero_top", ZERO_TOP_COLUMNS),
        ("serrano_smith.flip_fraction", FLIP_FRACTION_COLUMNS),
    ):
        experiment = get_experiment(name)
        params = experiment.resolve({"batch_size": 5})
        df = experiment.run_unit(checkpoint, frame, params, False, None)
        assert df["instance"].tolist() == list(range(len(frame)))
        again = experiment.run_unit(checkpoint, frame, params, False, None)
        pd.testing.assert_frame_equal(df, again)  # seeded: deterministic
        summary = experiment.summary(df)
        assert summary.columns.tolist() == columns
        assert experiment.figure(df).axes
    fractions = df.filter(like="fraction_")
    assert ((fractions > 0) & (fractions < 1) | fractions.isna()).all().all()
    assert summary["ordering"].tolist() == list(ss.ORDERINGS)


def test_flip_fraction_rejects_unknown_orderings_and_methods():
    experiment = get_experiment("serrano_smith.flip_fraction")
    with pytest.raises(InvalidInputError, match="orderings must be distinct"):
        experiment.resolve({"orderings": ["attention", "alphabetical"]})
    with pytest.raises(InvalidInputError, match="orderings must be distinct"):
        experiment.resolve({"orderings": []})
    with pytest.raises(Exception, match="unknown attribution method"):
        experiment.resolve({"gradient_method": "nope"})


def test_a_batch_of_one_item_texts_never_flips():
    df = ss.run_flip_fraction(hand_set_checkpoint(), text_frame(["zz", "ba"]), progress=False)
    assert df.filter(like="never_flipped_").all().all()
    assert df.filter(like="fraction_").isna().all().all()
