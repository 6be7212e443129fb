"""The Python API as a researcher meets it (issue 26, item 4): ``predict``, raw texts for a model
that carries its pipeline, typed errors that name the fix, forgiving method names and
``describe_methods``."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import attnexplain as ax
from attnexplain.attribution import get_method
from attnexplain.data import TextPipeline, collate
from attnexplain.data.text import tokenize
from attnexplain.errors import (
    ArgumentTypeError,
    CheckpointError,
    HookError,
    InvalidInputError,
    UnknownNameError,
)
from attnexplain.hooks import uniform
from attnexplain.models import Checkpoint, ClassicConfig, ClassicModel
from tests.tiny_transformers import tiny_model

TEXTS = ["a fine film", "a dull and long film"]


@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    """A random classic model with its pipeline, as load_checkpoint returns one."""
    torch.manual_seed(0)
    pipeline = TextPipeline.fit([*TEXTS, "fine", "dull"])
    config = ClassicConfig(vocab_size=len(pipeline.vocab), embed_dim=8, hidden_size=8)
    return Checkpoint(ClassicModel(config).eval(), pipeline, ["neg", "pos"])


def test_predict_is_public_and_gives_a_row_per_text(checkpoint):
    frame = ax.predict(checkpoint, TEXTS)
    assert frame["instance"].tolist() == [0, 1]
    assert frame["text"].tolist() == TEXTS
    probabilities = frame[["prob_neg", "prob_pos"]].to_numpy()
    assert probabilities.sum(1) == pytest.approx([1.0, 1.0])
    assert frame["probability"].tolist() == pytest.approx(probabilities.max(1).tolist())
    names = ["neg", "pos"]
    assert frame["predicted_class"].tolist() == [names[i] for i in frame["predicted"]]


def test_predict_takes_a_bare_model_with_its_pipeline(checkpoint):
    frame = ax.predict(checkpoint.model, "a fine film", pipeline=checkpoint.pipeline)
    assert frame["predicted_class"].iloc[0] in {"0", "1"}  # no class names: their indices
    assert list(frame.columns)[-2:] == ["prob_0", "prob_1"]


def test_explain_frame_holds_each_texts_prediction(checkpoint):
    frame = ax.explain(checkpoint, TEXTS, ["attention"])
    predicted = ax.predict(checkpoint, TEXTS)
    per_text = frame.groupby("instance")[["predicted_class", "probability"]].first()
    assert per_text["predicted_class"].tolist() == predicted["predicted_class"].tolist()
    assert per_text["probability"].tolist() == pytest.approx(predicted["probability"].tolist())


def test_attribute_reads_raw_texts_with_a_checkpoint(checkpoint):
    from_texts = ax.attribute(checkpoint, TEXTS, "jw-gradient")
    pipeline = checkpoint.pipeline
    batch = collate([pipeline.encode(text) for text in TEXTS], framing=pipeline.framing)
    expected = ax.attribute(checkpoint.model, batch, "jw-gradient", pipeline=pipeline)
    assert torch.equal(from_texts.scores, expected.scores)
    assert from_texts.tokens == expected.tokens
    assert from_texts.tokens[0][1:-1] == ["a", "fine", "film"]


def test_a_path_where_a_model_is_expected_names_load_checkpoint(checkpoint):
    for call in (
        lambda: ax.attribute("runs/model", TEXTS, "attention"),
        lambda: ax.explain("runs/model", TEXTS),
        lambda: ax.predict("runs/model", TEXTS),
    ):
        with pytest.raises(ArgumentTypeError, match=r"load_checkpoint\('runs/model'\)"):
            call()


def test_a_list_where_a_batch_is_expected_names_collate(checkpoint):
    with pytest.raises(ArgumentTypeError, match=r"collate\(") as raised:
        ax.attribute(checkpoint.model, TEXTS, "attention")
    assert "load_checkpoint" in str(raised.value)
    assert isinstance(raised.value, TypeError)  # a wrong kind of argument, as Python says it
    with pytest.raises(ArgumentTypeError, match="got a list"):
        ax.attribute(checkpoint.model, [[2, 5, 3]], "attention")
    with pytest.raises(ArgumentTypeError, match="texts must be strings"):
        ax.predict(checkpoint, [1, 2])


def test_raw_texts_need_the_pipeline(checkpoint):
    with pytest.raises(InvalidInputError, match=r"pipeline=.*load_checkpoint"):
        ax.predict(checkpoint.model, TEXTS)


@pytest.mark.parametrize(
    "spelling", ["integrated_gradients", "Integrated-Gradients", " integrated gradients "]
)
def test_method_names_are_spelled_freely(checkpoint, spelling):
    assert get_method(spelling).name == "integrated-gradients"
    result = ax.attribute(checkpoint, TEXTS, spelling, n_steps=4)
    assert result.method == "integrated-gradients"


def test_an_unknown_method_is_answered_with_the_nearest_name(checkpoint):
    with pytest.raises(UnknownNameError, match="did you mean 'integrated-gradients'"):
        get_method("integrated_gradient")
    with pytest.raises(UnknownNameError, match="did you mean 'leave-one-out'"):
        ax.explain(checkpoint, TEXTS, ["leave_one_ou"])
    with pytest.raises(UnknownNameError) as raised:
        get_method("gradcam")
    assert "did you mean" not in str(raised.value) and "kernel-shap" in str(raised.value)


def test_describe_methods_says_what_each_method_is_and_needs():
    table = ax.describe_methods()
    assert table["name"].tolist() == ax.list_methods()
    assert set(table.columns) >= {"name", "family", "uses_target", "options", "gradients"}
    row = table.set_index("name").loc["integrated-gradients"]
    assert (row["family"], row["uses_target"], row["gradients"]) == ("captum", True, True)
    assert row["options"] == {"n_steps": 50}
    attention = table.set_index("name").loc["attention"]
    assert (attention["attention"], attention["gradients"]) == (True, False)
    assert not table.set_index("name").loc["lime", "gradients"]
    assert ax.describe_methods("erasure")["name"].tolist() == ["leave-one-out"]


def test_an_unknown_experiment_parameter_is_refused_with_the_valid_ones(checkpoint):
    frame = pd.DataFrame({"text": TEXTS, "label": [1, 0], "tokens": list(map(tokenize, TEXTS))})
    spec = ax.get_experiment("predictions")
    with pytest.raises(UnknownNameError, match=r"'bogus'.*valid: batch_size \(default 64\)"):
        spec.run(checkpoint, frame, {"bogus": 1})
    table = spec.run(checkpoint, frame, {"batch_size": 1}, progress=False)
    assert table["instance"].tolist() == [0, 1]


def test_every_experiment_parameter_is_documented_with_its_default():
    for name in ax.list_experiments():
        table = ax.experiment_parameters(name)
        defaults = ax.get_experiment(name).defaults
        assert table["parameter"].tolist() == list(defaults), name
        assert table["default"].tolist() == list(defaults.values()), name
        assert table["meaning"].str.len().gt(10).all(), name
    adversarial = ax.experiment_parameters("jain_wallace.adversarial").set_index("parameter")
    assert adversarial.loc["steps", "default"] == 500  # an int stays an int


def test_training_again_reuses_the_finished_checkpoint(synthetic, tmp_path, capsys):
    quick = ax.TrainConfig(epochs=1, embeddings="random", embed_dim=8, seed=1)
    average = {"encoder": "average", "hidden_size": 8}
    first = ax.train(synthetic, tmp_path, average, quick, progress=False)
    weights = tmp_path / "model.safetensors"
    written = weights.stat().st_mtime_ns
    again = ax.train(synthetic, tmp_path, average, quick)
    assert "reusing the model trained in" in capsys.readouterr().err
    assert weights.stat().st_mtime_ns == written
    assert again == first
    other = ax.TrainConfig(epochs=1, embeddings="random", embed_dim=8, seed=2)
    with pytest.raises(CheckpointError, match=r"trained otherwise \(train_config .*overwrite=True"):
        ax.train(synthetic, tmp_path, average, other, progress=False)
    assert weights.stat().st_mtime_ns == written
    retrained = ax.train(synthetic, tmp_path, average, other, progress=False, overwrite=True)
    assert weights.stat().st_mtime_ns != written
    assert ax.train(synthetic, tmp_path, average, other, progress=False) == retrained


def test_a_checkpoint_saved_by_hand_is_not_trained_over(synthetic, checkpoint, tmp_path):
    ax.save_checkpoint(tmp_path, checkpoint.model, checkpoint.pipeline, checkpoint.classes)
    with pytest.raises(CheckpointError, match="settings are not recorded"):
        ax.train(synthetic, tmp_path, {"encoder": "average"}, progress=False)


def test_transformer_lens_idioms_read_and_change_our_sites():
    model = tiny_model("bert")
    inputs = {"input_ids": torch.tensor([[2, 5, 6, 7, 3]]), "attention_mask": torch.ones(1, 5)}
    output, cache = ax.run_with_cache(model, **inputs)
    assert torch.equal(cache["pattern", 1], cache["layers.1.attn.pattern"])
    assert cache["pattern", 0].shape == (1, 4, 5, 5)  # [batch, heads, queries, keys]
    changed = ax.run_with_hooks(model, **inputs, hooks=[(("pattern", 0), uniform())])
    with ax.intervene(model, {"layers.0.attn.pattern": uniform()}):
        expected = model(**inputs)
    assert torch.equal(changed.logits, expected.logits)
    assert not torch.allclose(changed.logits, output.logits)

    def renormalise(pattern, call):
        return pattern / pattern.sum(-1, keepdim=True)

    twice = [(("pattern", 0), uniform()), ("layers.0.attn.pattern", renormalise)]
    assert torch.allclose(ax.run_with_hooks(model, **inputs, hooks=twice).logits, expected.logits)
    with pytest.raises(HookError, match=r"\('pattern', layer\)"):
        cache["attn", 0]
