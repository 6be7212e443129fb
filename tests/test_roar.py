"""ROAR: retraining without each method's top words, on the planted task; a wordpiece
model's scores summed per word and its texts cut by whole words."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from attnexplain import load_checkpoint, load_dataset, train
from attnexplain.data.text import tokenize
from attnexplain.errors import InvalidInputError
from attnexplain.experiments.needs import trained_checkpoint_dir
from attnexplain.experiments.registry import get_experiment
from attnexplain.experiments.roar import (
    check_retrainable,
    random_scorer,
    removal_counts,
    remove_top,
    retrain_without,
)
from attnexplain.models.hf import HFClassifier
from attnexplain.models.train import TrainConfig, evaluate
from attnexplain.runner import parse_plan, run_plan
from attnexplain.runner.store import RunStore
from tests.tiny_transformers import tiny_bert_checkpoint
from tests.user_models import data_frame, wordpiece_folder

RECIPE = TrainConfig(epochs=4, embeddings="random", embed_dim=32)


def planted_scorer(batch, frame) -> torch.Tensor:
    """An oracle: 1 at the planted tokens of each row, 0 elsewhere."""
    scores = torch.zeros(batch.content_mask.shape)
    for row, index in enumerate(batch.index.tolist()):
        flags = torch.tensor(frame["rationale"].iloc[index], dtype=torch.float)
        scores[row, batch.content_mask[row]] = flags
    return scores


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    dataset = load_dataset("synthetic", n=800, seed=3)
    folder = tmp_path_factory.mktemp("base")
    train(dataset, folder, {"encoder": "average", "hidden_size": 32}, RECIPE, progress=False)
    return load_checkpoint(folder), dataset


def test_removal_counts_by_hand():
    lengths = torch.tensor([1, 2, 8, 10, 30])
    assert removal_counts(lengths, 30).tolist() == [0, 1, 3, 3, 9]
    assert removal_counts(lengths, 90).tolist() == [0, 1, 7, 9, 27]


def test_remove_top_removes_the_top_tokens_and_keeps_the_order_of_the_rest(planted):
    checkpoint, dataset = planted
    frame = dataset.test.head(5)
    cut = remove_top(checkpoint, frame, planted_scorer, 30, 64)
    for tokens, flags, kept in zip(frame["tokens"], frame["rationale"], cut["tokens"], strict=True):
        count = int(removal_counts(torch.tensor([len(tokens)]), 30))
        # the planted tokens score 1; ties among the zeros go to the earlier position
        zeros = [i for i, flag in enumerate(flags) if not flag][: count - sum(flags)]
        removed = {i for i, flag in enumerate(flags) if flag} | set(zeros)
        assert kept == [token for i, token in enumerate(tokens) if i not in removed]
    assert cut["text"].tolist() == [" ".join(tokens) for tokens in cut["tokens"]]
    first = remove_top(checkpoint, frame, random_scorer(checkpoint, 1), 30, 64)
    again = remove_top(checkpoint, frame, random_scorer(checkpoint, 1), 30, 64)
    other = remove_top(checkpoint, frame, random_scorer(checkpoint, 2), 30, 64)
    assert first["tokens"].tolist() == again["tokens"].tolist() != other["tokens"].tolist()
    assert [len(flags) for flags in first["rationale"]] == first["tokens"].map(len).tolist()


# scores by hand, per content wordpiece, of texts in tiny_bert_checkpoint's syllables:
# bako = ba ##ko, mubati = mu ##ba ##ti; ' is a word of its own ([UNK])
HAND = {
    "bako ti mubati ko": [0.1, 0.1, 0.3, 0.15, 0.15, 0.15, 0.2],
    "ba'ko mu": [0.1, 0.9, 0.2, 0.3],
}


def hand_scorer(batch, frame) -> torch.Tensor:
    scores = torch.zeros(batch.content_mask.shape)
    for row, index in enumerate(batch.index.tolist()):
        scores[row, batch.content_mask[row]] = torch.tensor(HAND[frame["text"].iloc[index]])
    return scores


def wordpiece_frame(texts) -> pd.DataFrame:
    texts = list(texts)
    return pd.DataFrame({"text": texts, "tokens": [tokenize(t) for t in texts], "label": 0})


@pytest.mark.parametrize(
    ("percent", "expected"),
    [
        # words bako 0.2, ti 0.3, mubati 0.45 (no piece above 0.15), ko 0.2; ' 0.9, mu 0.3
        (25, ["bako ti ko", "ba ko mu"]),  # 1 of 4 words; "ba" and "ko" stay apart
        (50, ["bako ko", "ba ko"]),  # 2 of 4 (by pieces: ti and ko, the 0.3 and the 0.2)
        (90, ["ko", "ba"]),  # 3 of 4; ties go to the earlier word
    ],
)
def test_remove_top_sums_wordpieces_per_word_and_cuts_whole_words(percent, expected):
    checkpoint = tiny_bert_checkpoint()
    pipeline = checkpoint.pipeline
    frame = wordpiece_frame(HAND)
    cut = remove_top(checkpoint, frame, hand_scorer, percent, 64)
    assert cut["text"].tolist() == expected
    # the pipeline encodes the cut text: the kept words' pieces, in order, and nothing else
    assert [pipeline.decode(ids)[1:-1] for ids in pipeline.encode_split(cut)] == [
        [piece for word in text.split() for piece in pipeline.decode(pipeline.encode(word))[1:-1]]
        for text in expected
    ]
    assert cut["tokens"].tolist() == [tokenize(text) for text in expected]


def test_random_removal_picks_words_not_wordpieces():
    """A word of four wordpieces beside one of one, half the words removed: the long word goes
    in about half the rows (drawing per piece would take it far more often)."""
    checkpoint = tiny_bert_checkpoint()
    frame = wordpiece_frame(["mubatiko ba"] * 400)
    cut = remove_top(checkpoint, frame, random_scorer(checkpoint, 0), 50, 64)
    assert set(cut["text"]) == {"mubatiko", "ba"}
    assert 0.42 < (cut["text"] == "ba").mean() < 0.58
    again = remove_top(checkpoint, frame, random_scorer(checkpoint, 0), 50, 64)
    assert cut["text"].tolist() == again["text"].tolist()


def test_roar_refuses_what_it_cannot_cut_or_retrain_and_names_the_fix():
    checkpoint = tiny_bert_checkpoint()  # no recorded training: a model imported as it is
    frame = wordpiece_frame(HAND)
    with pytest.raises(InvalidInputError, match=r"does not record how.*finetune: true"):
        check_retrainable(checkpoint, frame)
    pairs = frame.assign(text_pair="ko")
    with pytest.raises(InvalidInputError, match=r"text-pair model.*pretrained: minilm"):
        check_retrainable(checkpoint, pairs)


def test_removing_the_planted_tokens_drops_accuracy_to_chance_and_random_removal_does_not(
    planted, tmp_path
):
    checkpoint, dataset = planted
    assert evaluate(checkpoint.model, checkpoint.pipeline, dataset.test)["accuracy"] > 0.9
    accuracy = {}
    for name, scorer in (("planted", planted_scorer), ("random", random_scorer(checkpoint, 0))):
        model, cut = retrain_without(checkpoint, dataset, scorer, 30, tmp_path / name)
        accuracy[name] = evaluate(model.model, model.pipeline, cut.test)["accuracy"]
    assert accuracy["planted"] < 0.62  # chance: 0.5 (every planted token is gone at 30%)
    assert accuracy["random"] > 0.75


def test_roar_curve_runs_each_retraining_as_a_cached_unit(tmp_path):
    plan = parse_plan(
        {
            "name": "roar",
            "datasets": [{"name": "synthetic", "options": {"n": 400, "seed": 3}}],
            "models": [{"encoder": "average", "hidden_size": 16}],
            "seeds": [1],
            "split": "test",
            "max_instances": 30,
            "train": {"epochs": 2, "embeddings": "random", "embed_dim": 16},
            "experiments": [
                {"name": "roar.curve", "params": {"methods": ["attention"], "percents": [50]}}
            ],
        }
    )
    first = run_plan(plan, tmp_path, progress=False)
    kinds = sorted(unit.experiment for unit in first.units if hasattr(unit, "experiment"))
    assert kinds == ["roar.curve", "roar.retrain", "roar.retrain"]
    table = first.results(0)
    assert sorted(table["method"].unique()) == ["attention", "random"]
    assert (table.groupby("method").size() == 30).all()
    summary = first.summary(0)
    assert {"accuracy", "accuracy_low", "accuracy_high"} <= set(summary.columns)
    again = run_plan(plan, tmp_path, progress=False)
    assert again.ran == []  # every unit, the retrained models included, came from the cache


def test_roar_refuses_unknown_methods_and_percents():
    curve = get_experiment("roar.curve")
    with pytest.raises(InvalidInputError, match="registered method or 'random'"):
        curve.resolve({"methods": ["shap-magic"]})
    with pytest.raises(InvalidInputError, match="percent must lie in"):
        curve.resolve({"percents": [100]})


def test_roar_retrains_a_fine_tuned_wordpiece_transformer_as_cached_units(tmp_path):
    """A user's tiny random-init BERT with a wordpiece tokenizer, fine-tuned by the plan: ROAR
    fine-tunes it again from the same folder on the cut texts (MiniLM: the slow test)."""
    path = tmp_path / "planted.csv"
    data_frame(n=120).to_csv(path, index=False)
    folder = wordpiece_folder(tmp_path / "models", data_frame(n=120))
    plan = parse_plan(
        {
            "name": "roar-bert",
            "datasets": [{"file": str(path), "fractions": [0.6, 0.2, 0.2]}],
            "models": [{"hf": str(folder), "finetune": True}],
            "seeds": [1],
            "split": "test",
            "max_instances": 12,
            "finetune": {"epochs": 1},
            "experiments": [
                {"name": "roar.curve", "params": {"methods": ["attention"], "percents": [50]}}
            ],
        }
    )
    first = run_plan(plan, tmp_path / "run", progress=False)
    retrains = [u for u in first.units if getattr(u, "experiment", None) == "roar.retrain"]
    assert len(retrains) == 2
    table = first.results(0)
    assert sorted(table["method"].unique()) == ["attention", "random"]
    assert (table.groupby("method").size() == 12).all()
    store = RunStore(tmp_path / "run")
    for unit in retrains:
        retrained = load_checkpoint(trained_checkpoint_dir(store.work_dir(unit.key)))
        assert isinstance(retrained.model, HFClassifier)
        assert retrained.metadata["request"]["pretrained"] == str(folder)
    again = run_plan(plan, tmp_path / "run", progress=False)
    assert again.ran == []


@pytest.mark.slow
def test_roar_retrains_minilm_on_rt_sentences(tmp_path):
    plan = parse_plan(
        {
            "name": "roar-minilm",
            "datasets": [
                {"name": "rt-sentences", "max_rows": {"train": 192, "dev": 64, "test": 64}}
            ],
            "models": [{"pretrained": "minilm"}],
            "seeds": [10],
            "split": "test",
            "max_instances": 32,
            "finetune": {"epochs": 1},
            "experiments": [
                {"name": "roar.curve", "params": {"methods": ["attention"], "percents": [50]}}
            ],
        }
    )
    result = run_plan(plan, tmp_path, progress=False)
    table = result.results(0)
    assert (table.groupby("method").size() == 32).all()
    assert table["correct"].isin([0.0, 1.0]).all()
