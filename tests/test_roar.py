"""ROAR: retraining without each method's top tokens, on the planted task."""

from __future__ import annotations

import pytest
import torch

from attnexplain import load_checkpoint, load_dataset, train
from attnexplain.errors import InvalidInputError
from attnexplain.experiments.registry import get_experiment
from attnexplain.experiments.roar import (
    random_scorer,
    removal_counts,
    remove_top,
    retrain_without,
)
from attnexplain.models.train import TrainConfig, evaluate
from attnexplain.runner import parse_plan, run_plan

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
    first = remove_top(checkpoint, frame, random_scorer(1), 30, 64)["tokens"].tolist()
    assert first == remove_top(checkpoint, frame, random_scorer(1), 30, 64)["tokens"].tolist()
    assert first != remove_top(checkpoint, frame, random_scorer(2), 30, 64)["tokens"].tolist()


def test_removing_the_planted_tokens_drops_accuracy_to_chance_and_random_removal_does_not(
    planted, tmp_path
):
    checkpoint, dataset = planted
    assert evaluate(checkpoint.model, checkpoint.pipeline, dataset.test)["accuracy"] > 0.9
    accuracy = {}
    for name, scorer in (("planted", planted_scorer), ("random", random_scorer(0))):
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
