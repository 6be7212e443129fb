"""Measures read on a companion model: data randomisation (shuffled labels) and F-Fidelity
(fine-tuned on randomly cut texts), by hand, on the planted task and through the runner."""

from __future__ import annotations

import pytest
import torch

from attnexplain import load_checkpoint, load_dataset, train
from attnexplain.attribution.adapter import EmbeddingForward, predicted_class
from attnexplain.data import collate
from attnexplain.errors import InvalidInputError
from attnexplain.experiments.league import run_league
from attnexplain.experiments.needs import RunContext
from attnexplain.experiments.registry import get_experiment
from attnexplain.faithfulness import comprehensiveness
from attnexplain.measures import build_measure, method_explainer
from attnexplain.measures.companion import deletion_counts, random_deletion, shuffled_labels
from attnexplain.models import ClassicConfig, ClassicModel
from attnexplain.models.train import TrainConfig, evaluate
from attnexplain.runner import parse_plan, run_plan

RECIPE = TrainConfig(epochs=3, embeddings="random", embed_dim=32)
SEQUENCES = [[2, *range(4, 9), 3], [2, 20, 21, 22, 3], [2, *range(30, 40), 3]]


@pytest.fixture(scope="module")
def classic():
    torch.manual_seed(0)
    model = ClassicModel(ClassicConfig(vocab_size=40, embed_dim=8, hidden_size=8)).eval()
    return model, collate(SEQUENCES, labels=[0, 1, 0])


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A BiLSTM trained on the planted task and the same recipe trained on shuffled labels."""
    dataset = load_dataset("synthetic", n=600, seed=3)
    models = {}
    for name, data in (("base", dataset), ("shuffled", shuffled_labels(dataset, 0))):
        folder = tmp_path_factory.mktemp(name)
        train(data, folder, {"encoder": "lstm", "hidden_size": 32}, RECIPE, progress=False)
        models[name] = load_checkpoint(folder)
    pipeline = models["base"].pipeline
    batch = collate(pipeline.encode_split(dataset.test.head(24)), framing=pipeline.framing)
    return models, dataset, batch


def test_shuffled_labels_permute_train_and_dev_only():
    dataset = load_dataset("synthetic", n=300, seed=3)
    shuffled = shuffled_labels(dataset, 0)
    for name in ("train", "dev"):
        before, after = dataset.splits[name]["label"], shuffled.splits[name]["label"]
        assert sorted(before) == sorted(after) and (before.to_numpy() != after.to_numpy()).any()
        assert shuffled.splits[name]["text"].equals(dataset.splits[name]["text"])
    assert shuffled.test.equals(dataset.test)
    assert shuffled_labels(dataset, 0).train["label"].equals(shuffled.train["label"])


def test_deletion_counts_by_hand():
    sizes = torch.tensor([0, 1, 2, 5, 10])
    assert deletion_counts(sizes, torch.full((5,), 0.5)).tolist() == [0, 1, 1, 3, 5]
    assert deletion_counts(sizes, torch.zeros(5)).tolist() == [0] * 5


def test_random_deletion_cuts_at_most_beta_keeps_a_token_and_the_labels(classic):
    _, batch = classic
    cut = random_deletion(0.5, 0)
    torch.manual_seed(1)
    first = cut(batch)
    sizes, kept = batch.content_mask.sum(-1), first.content_mask.sum(-1)
    assert (kept >= 1).all() and (sizes - kept <= torch.ceil(0.5 * sizes)).all()
    assert first.labels.tolist() == [0, 1, 0]
    for row in range(len(batch)):  # the kept tokens are a subsequence of the row's
        source = batch.token_ids[row][batch.content_mask[row]].tolist()
        left = iter(source)
        assert all(token in left for token in first.token_ids[row][first.content_mask[row]])
    torch.manual_seed(1)
    assert torch.equal(cut(batch).token_ids, first.token_ids)  # drawn from the global seed
    with pytest.raises(InvalidInputError, match="beta must lie in"):
        random_deletion(1.0, 0)


def test_ffidelity_equals_comprehensiveness_where_its_draw_is_forced(classic):
    """With a 10% explanation of texts of at most 10 tokens, the explanation is the top
    token and a beta share of one token is that token: FFid+ deletes exactly the top token,
    as ERASER's 10% bin does. FFid- at 90% of a 10-token text deletes its lowest token."""
    model, batch = classic
    scores = torch.rand(batch.content_mask.shape, generator=torch.Generator().manual_seed(2))
    plus = build_measure("f-fidelity-comprehensiveness", percents=(10,), samples=3)
    expected = comprehensiveness(model, batch, scores, (10,))[:, 0].double()
    assert torch.allclose(plus(model, batch, scores, None), expected)
    minus = build_measure("f-fidelity-sufficiency", percents=(90,), samples=3)
    lowest = comprehensiveness(model, batch, -scores, (10,))[:, 0].double()
    assert torch.allclose(minus(model, batch, scores, None)[2], lowest[2])  # 10 tokens


def test_ffidelity_draws_are_seeded_and_deletions_stay_within_beta(classic):
    model, batch = classic
    scores = torch.rand(batch.content_mask.shape, generator=torch.Generator().manual_seed(2))
    measure = build_measure("f-fidelity-comprehensiveness", beta=0.3)
    first = measure(model, batch, scores, None)
    assert torch.equal(first, measure(model, batch, scores, None))
    other = build_measure("f-fidelity-comprehensiveness", beta=0.3, seed=1)(
        model, batch, scores, None
    )
    assert not torch.equal(first, other)


def embedding_norms(model, batch) -> torch.Tensor:
    """A method that reads only the input: each token's embedding norm."""
    content, _ = EmbeddingForward(model).inputs(batch)
    return content.norm(dim=-1)


def test_data_randomisation_is_one_on_the_model_itself_and_low_for_gradient_on_shuffled(
    planted,
):
    models, _, batch = planted
    base, shuffled = models["base"].model.eval(), models["shuffled"].model.eval()
    gradient = method_explainer("jw-gradient", predicted_class(base, batch))
    measure = build_measure("data-randomisation")
    scores = gradient(base, batch)
    assert torch.allclose(measure(base, batch, scores, gradient), torch.ones(24).double())
    # the shuffled-label model shares the seed and so the initial embeddings, not the task
    assert measure(shuffled, batch, scores, gradient).mean() < 0.5
    norms_moved = measure(shuffled, batch, embedding_norms(base, batch), embedding_norms)
    assert norms_moved.mean() > measure(shuffled, batch, scores, gradient).mean()


def test_the_league_trains_each_companion_once_as_a_cached_unit(tmp_path):
    config = {
        "name": "companions",
        "datasets": [{"name": "synthetic", "options": {"n": 400, "seed": 3}}],
        "models": [{"encoder": "average", "hidden_size": 16}],
        "seeds": [1],
        "split": "test",
        "max_instances": 20,
        "train": {"epochs": 2, "embeddings": "random", "embed_dim": 16},
        "experiments": [
            {
                "name": "league.methods",
                "params": {
                    "methods": ["attention", "jw-gradient"],
                    "measures": [
                        "comprehensiveness",
                        "data-randomisation",
                        "f-fidelity-comprehensiveness",
                        "f-fidelity-sufficiency",
                    ],
                },
            },
        ],
    }
    plan = parse_plan(config)
    first = run_plan(plan, tmp_path, progress=False)
    kinds = sorted(unit.experiment for unit in first.units if hasattr(unit, "experiment"))
    assert kinds == ["companion.train", "companion.train", "league.methods"]
    table = first.results(0)
    for column in ("data-randomisation", "f-fidelity-comprehensiveness", "f-fidelity-sufficiency"):
        assert table[column].notna().all()
    summary = first.summary(0)
    assert {"rank_data-randomisation", "f-fidelity-sufficiency_low"} <= set(summary.columns)
    # the companions' accuracy on the same instances, beside the measures that read them
    shuffled = summary["accuracy_shuffled-labels"]
    assert shuffled.nunique() == 1 and 0 <= shuffled.iloc[0] <= 1
    assert {"accuracy_random-deletion", "accuracy_random-deletion_high"} <= set(summary.columns)
    assert run_plan(plan, tmp_path, progress=False).ran == []
    # a league of another share of the split reuses the companions: only it runs
    fewer = run_plan(parse_plan({**config, "max_instances": 10}), tmp_path, progress=False)
    by_key = {unit.key: unit for unit in fewer.units}
    assert [getattr(by_key[key], "experiment", "train") for key in fewer.ran] == ["league.methods"]


def test_companion_accuracy_shuffled_near_chance_fine_tuned_near_the_model(tmp_path):
    dataset = load_dataset("synthetic", n=600, seed=3)
    folder = tmp_path / "base"
    train(dataset, folder, {"encoder": "average", "hidden_size": 32}, RECIPE, progress=False)
    checkpoint = load_checkpoint(folder)
    spec = get_experiment("companion.train")
    accuracies = {}
    for kind in ("shuffled-labels", "random-deletion"):
        context = RunContext(dataset, dataset.test, tmp_path / kind, progress=False)
        table = spec.run(checkpoint, dataset.test, {"kind": kind}, False, context)
        accuracies[kind] = table["correct"].mean()
    original = evaluate(checkpoint.model, checkpoint.pipeline, dataset.test)["accuracy"]
    assert accuracies["shuffled-labels"] < 0.7 < original
    assert accuracies["random-deletion"] > original - 0.1


def test_a_companion_measure_outside_a_run_says_how_to_run_it(classic, tmp_path):
    dataset = load_dataset("synthetic", n=200, seed=3)
    folder = tmp_path / "m"
    train(dataset, folder, {"encoder": "average", "hidden_size": 8}, RECIPE, progress=False)
    checkpoint = load_checkpoint(folder)
    with pytest.raises(InvalidInputError, match="run the league from a plan"):
        run_league(checkpoint, dataset.test.head(4), {"measures": ["data-randomisation"]}, False)
