import json

import pytest
import torch
from safetensors.torch import load_file

from attnexplain import TrainConfig, load_checkpoint, train
from attnexplain.errors import CheckpointError
from attnexplain.models.train import evaluate

TINY = {"encoder": "lstm", "attention": "additive", "hidden_size": 32}
FAST = TrainConfig(epochs=3, embeddings="random", embed_dim=32, seed=5)


@pytest.fixture(scope="module")
def trained(synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    return train(synthetic, out, TINY, FAST, progress=False)


def test_a_tiny_model_learns_the_planted_task(trained):
    assert trained.test["accuracy"] > 0.95
    assert 1 <= trained.best_epoch <= FAST.epochs
    assert len(trained.history) == FAST.epochs


@pytest.mark.parametrize("encoder", ["cnn", "average"])
def test_other_encoders_learn_the_planted_task(synthetic, tmp_path, encoder):
    result = train(
        synthetic, tmp_path / encoder, {**TINY, "encoder": encoder}, FAST, progress=False
    )
    assert result.test["accuracy"] > 0.95


def test_two_runs_with_one_seed_give_identical_metrics(synthetic, trained, tmp_path):
    """The second run also measures the model after every epoch, which must not change it."""
    seen = []

    def after_epoch(epoch, checkpoint, dev):
        seen.append(
            (
                epoch,
                dev["roc_auc"],
                evaluate(checkpoint.model, checkpoint.pipeline, synthetic.dev)["roc_auc"],
            )
        )

    again = train(
        synthetic, tmp_path / "again", TINY, FAST, progress=False, after_epoch=after_epoch
    )
    assert [(epoch, auc) for epoch, auc, _ in seen] == [
        (h["epoch"], h["roc_auc"]) for h in trained.history
    ]
    assert all(auc == measured for _, auc, measured in seen)
    assert again.test == trained.test
    assert again.history == [{**h} for h in trained.history]
    first = load_file(str(trained.checkpoint / "model.safetensors"))
    second = load_file(str(again.checkpoint / "model.safetensors"))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_checkpoint_round_trips_bit_exactly(synthetic, trained):
    loaded = load_checkpoint(trained.checkpoint)
    stored = load_file(str(trained.checkpoint / "model.safetensors"))
    state = loaded.model.state_dict()
    assert state.keys() == stored.keys()
    assert all(torch.equal(state[k], stored[k]) for k in stored)
    assert loaded.classes == synthetic.classes
    assert evaluate(loaded.model, loaded.pipeline, synthetic.test) == trained.test
    metadata = json.loads((trained.checkpoint / "attnexplain.json").read_text())["metadata"]
    assert metadata["test"] == trained.test and metadata["dataset"] == "synthetic"


def test_truncated_weights_are_a_checkpoint_error(trained, tmp_path):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "attnexplain.json").write_text((trained.checkpoint / "attnexplain.json").read_text())
    weights = (trained.checkpoint / "model.safetensors").read_bytes()
    (damaged / "model.safetensors").write_bytes(weights[: len(weights) // 3])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(damaged)


def test_weights_of_another_architecture_are_a_checkpoint_error(synthetic, trained, tmp_path):
    other = train(
        synthetic,
        tmp_path / "cnn",
        {**TINY, "encoder": "cnn"},
        TrainConfig(epochs=1, embeddings="random", embed_dim=16),
        progress=False,
    )
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "attnexplain.json").write_text((trained.checkpoint / "attnexplain.json").read_text())
    (mixed / "model.safetensors").write_bytes((other.checkpoint / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"another architecture.*lstm"):
        load_checkpoint(mixed)


def test_a_folder_without_checkpoint_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"attnexplain\.json is missing"):
        load_checkpoint(tmp_path)


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(
    synthetic, trained, tmp_path, monkeypatch
):
    from attnexplain.models import train as train_module

    real_epoch = train_module._train_epoch

    def crash_in_epoch_two(*args, **kwargs):
        if args[6] == 2:  # the epoch argument
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    out = tmp_path / "interrupted"
    monkeypatch.setattr(train_module, "_train_epoch", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(synthetic, out, TINY, FAST, progress=False)
    assert (out / "model.safetensors").is_file() and (out / "resume.json").is_file()
    monkeypatch.setattr(train_module, "_train_epoch", real_epoch)
    resumed = train(synthetic, out, TINY, FAST, progress=False)
    assert resumed.history == trained.history and resumed.test == trained.test
    first = load_file(str(trained.checkpoint / "model.safetensors"))
    second = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not (out / "resume.json").exists()


def test_an_unfinished_run_with_other_settings_is_not_overwritten(synthetic, tmp_path, monkeypatch):
    from attnexplain.models import train as train_module

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    real_epoch = train_module._train_epoch
    calls = iter([real_epoch, crash])
    monkeypatch.setattr(train_module, "_train_epoch", lambda *a, **k: next(calls)(*a, **k))
    with pytest.raises(KeyboardInterrupt):
        train(synthetic, tmp_path, TINY, FAST, progress=False)
    monkeypatch.setattr(train_module, "_train_epoch", real_epoch)
    with pytest.raises(CheckpointError, match="other settings"):
        train(synthetic, tmp_path, {**TINY, "encoder": "average"}, FAST, progress=False)
