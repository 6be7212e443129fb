"""attnexplain.explain and the ``attnexplain explain`` command, on a trained classic checkpoint
and on a saved tiny transformer."""

from __future__ import annotations

import pytest
import torch
from transformers import BertTokenizerFast

from attnexplain import TrainConfig, explain, load_checkpoint, save_checkpoint, train
from attnexplain.attribution import attribute
from attnexplain.data import collate
from attnexplain.errors import InvalidInputError, UnknownNameError
from attnexplain.models.hf import HFClassifier, WordpieceTokenizer
from tests.conftest import run_cli
from tests.tiny_transformers import tiny_model

QUICK = TrainConfig(epochs=1, embeddings="random", embed_dim=16, seed=1)


@pytest.fixture(scope="module")
def checkpoint(synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("explain") / "average"
    train(synthetic, out, {"encoder": "average", "hidden_size": 16}, QUICK, progress=False)
    return out


@pytest.fixture(scope="module")
def bert_checkpoint(tmp_path_factory):
    """The tiny random BERT with a small offline wordpiece vocabulary, saved as a checkpoint."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "fine", "film", "dull", "##s"]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)})
    out = tmp_path_factory.mktemp("explain") / "bert"
    model = HFClassifier(tiny_model("bert"))
    save_checkpoint(out, model, WordpieceTokenizer(tokenizer, 32), ["neg", "pos"])
    return out


def test_explain_gives_a_tidy_frame_in_text_and_method_order(checkpoint):
    loaded = load_checkpoint(checkpoint)
    texts = ["some words here", "and a second longer text here"]
    methods = ["leave-one-out", "attention"]
    frame = explain(loaded, texts, methods)
    assert list(frame.columns) == [
        "instance",
        "position",
        "token",
        "method",
        "score",
        "predicted_class",
        "probability",
    ]
    assert len(frame) == (3 + 6) * len(methods)
    first = frame[frame["instance"] == 0]
    assert first["method"].tolist() == ["leave-one-out"] * 3 + ["attention"] * 3
    assert first["token"].tolist()[:3] == loaded.pipeline.tokens(texts[0])[1:-1]
    assert first["position"].tolist() == [0, 1, 2] * 2
    attention = frame[frame["method"] == "attention"].groupby("instance")["score"].sum()
    assert attention.tolist() == pytest.approx([1.0, 1.0])


def test_explain_takes_a_model_and_pipeline_and_batches_like_attribute(checkpoint):
    loaded = load_checkpoint(checkpoint)
    texts = ["some words here", "and another text", "a third"]
    frame = explain(loaded.model, texts, ["jw-gradient"], pipeline=loaded.pipeline, batch_size=2)
    batch = collate([loaded.pipeline.encode(t) for t in texts])
    expected = attribute(loaded.model, batch, "jw-gradient").scores[batch.content_mask]
    assert torch.allclose(torch.tensor(frame["score"].to_numpy()), expected.double(), atol=1e-6)


def test_explain_rejects_bad_input(checkpoint):
    loaded = load_checkpoint(checkpoint)
    with pytest.raises(UnknownNameError, match="leave-one-out"):
        explain(loaded, ["some words"], ["gradcam"])
    with pytest.raises(InvalidInputError, match="no tokens"):
        explain(loaded, ["  "], ["attention"])
    with pytest.raises(InvalidInputError, match="pipeline"):
        explain(loaded.model, ["some words"])


def test_explain_works_on_a_transformer_checkpoint(bert_checkpoint):
    frame = explain(load_checkpoint(bert_checkpoint), "a fine films", ["attention-rollout"])
    assert frame["token"].tolist() == ["a", "fine", "film", "##s"]


def test_cli_explain_prints_a_table_per_text(checkpoint):
    result = run_cli(
        "explain",
        "--checkpoint",
        str(checkpoint),
        "some words here",
        "another text",
        "--method",
        "attention",
        "--method",
        "occlusion",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("attention") == 2 and result.stdout.count("occlusion") == 2
    assert "words" in result.stdout and "another" in result.stdout
    assert "class0" in result.stdout or "class1" in result.stdout


def test_cli_explain_on_a_transformer_with_default_methods(bert_checkpoint):
    result = run_cli("explain", "--checkpoint", str(bert_checkpoint), "a dull film")
    assert result.returncode == 0, result.stderr
    for name in ("attention", "jw-gradient", "leave-one-out", "integrated-gradients", "dull"):
        assert name in result.stdout


def _assert_one_line_error(result, *fragments):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_cli_explain_errors_are_one_line(checkpoint):
    _assert_one_line_error(
        run_cli("explain", "--checkpoint", str(checkpoint), "   "), "has no tokens"
    )
    _assert_one_line_error(
        run_cli("explain", "--checkpoint", str(checkpoint), "text", "--method", "gradcam"),
        "unknown attribution method 'gradcam'",
        "integrated-gradients",
    )
