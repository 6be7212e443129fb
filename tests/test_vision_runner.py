"""Images through the text machinery: the image pipeline and its batches, attributions on
blocks of pixels (gradient, occlusion), vision checkpoints, and plans that train image models
and run the J&W and W&P experiments on them."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from attnexplain.attribution import attribute
from attnexplain.attribution.adapter import site_name
from attnexplain.attribution.pixels import occlude
from attnexplain.data import load_dataset
from attnexplain.data.batching import collate
from attnexplain.data.image_tokens import BlockLayout, ImagePipeline
from attnexplain.errors import InvalidInputError, PlanError
from attnexplain.hooks import intervene
from attnexplain.metrics import tvd
from attnexplain.models.checkpoint import load_checkpoint, save_checkpoint
from attnexplain.models.vision import AttentionCNNConfig, image_tokens, make_attention_cnn, make_vit
from attnexplain.runner import parse_plan, run_plan
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits-8x8")


def _cnn():
    config = AttentionCNNConfig(channels=1, image_size=8, num_classes=10, hidden=16)
    return make_attention_cnn(config, seed=1).eval()


def _vit():
    return make_vit(8, 1, 10, patch_size=2, hidden_size=16, layers=2, heads=2, seed=1).eval()


def _pipeline(model) -> ImagePipeline:
    return ImagePipeline(*image_tokens(model), (1, 8, 8))


def _batch(model, frame):
    pipeline = _pipeline(model)
    return collate(pipeline.encode_split(frame), frame["label"].tolist(), framing=pipeline.framing)


def test_images_batch_as_their_positions_with_pixels(digits):
    frame = digits.test.head(3)
    vit = _batch(_vit(), frame)
    assert vit.token_ids.shape == (3, 17) and vit.pixels.shape == (3, 1, 8, 8)
    assert vit.content_mask[0].tolist() == [False] + [True] * 16
    np.testing.assert_array_equal(vit.pixels[1, 0].numpy(), frame["image"].iloc[1][0])
    cnn = _batch(_cnn(), frame)
    assert cnn.token_ids.shape == (3, 16) and cnn.content_mask.all()
    assert _pipeline(_vit()).decode([0, 1, 6]) == ["[CLS]", "r0c0", "r1c1"]


def test_an_image_of_another_shape_is_refused():
    pipeline = ImagePipeline(16, 0, (1, 8, 8))
    with pytest.raises(InvalidInputError, match=r"shape \(1, 8, 8\).*got \(1, 28, 28\)"):
        pipeline.encode(np.zeros((1, 28, 28), dtype=np.float32))


def test_blocks_are_row_major_squares_and_come_back_whole():
    pixels = torch.arange(2 * 16, dtype=torch.float).reshape(2, 1, 4, 4)
    batch = collate(
        [ImagePipeline(4, 0, (1, 4, 4)).encode(image.numpy()) for image in pixels],
        framing=ImagePipeline(4, 0, (1, 4, 4)).framing,
    )
    layout = BlockLayout.of(batch)
    blocks = layout.to_blocks(pixels)
    assert (layout.side, layout.height, layout.block_dim) == (2, 2, 4)
    # block 1 is the top-right 2x2 square of the first image: pixels 2, 3, 6, 7
    assert blocks[0, 1].tolist() == [2.0, 3.0, 6.0, 7.0]
    torch.testing.assert_close(layout.to_pixels(blocks), pixels)
    keep = torch.ones(2, 4, dtype=torch.bool)
    keep[0, 2] = False  # black out the bottom-left square of the first image
    occluded = occlude(batch, torch.tensor([0, 1]), keep).pixels
    assert occluded[0, 0, 2:, :2].eq(0).all()
    mask = torch.ones_like(pixels, dtype=torch.bool)
    mask[0, 0, 2:, :2] = False
    torch.testing.assert_close(occluded[mask], pixels[mask])


@pytest.mark.parametrize("make", [_cnn, _vit], ids=["cnn", "vit"])
def test_jw_gradient_of_an_image_is_gradient_times_pixels_per_block(digits, make):
    model = make()
    batch = _batch(model, digits.test.head(2))
    target = model.probabilities(model.forward_batch(batch)).argmax(-1)
    scores = attribute(model, batch, "jw-gradient", target=target).scores
    pixels = batch.pixels.clone().requires_grad_()
    with intervene(model, {site_name(model): lambda pattern, call: pattern.detach()}):
        probabilities = model.probabilities(model.forward_batch(replace(batch, pixels=pixels)))
    probabilities.gather(-1, target.unsqueeze(-1)).sum().backward()
    layout = BlockLayout.of(batch)
    per_block = layout.to_blocks(pixels.grad * batch.pixels).sum(-1).abs()
    expected = per_block / per_block.sum(-1, keepdim=True)
    torch.testing.assert_close(scores[batch.content_mask].reshape(2, -1), expected)


@pytest.mark.parametrize("make", [_cnn, _vit], ids=["cnn", "vit"])
def test_leave_one_out_of_an_image_blacks_out_one_block(digits, make):
    model = make()
    batch = _batch(model, digits.test.head(2))
    scores = attribute(model, batch, "leave-one-out").scores
    base = model.probabilities(model.forward_batch(batch))
    layout = BlockLayout.of(batch)
    position = int(batch.content_mask[1].nonzero()[3])  # the fourth block of the second image
    blocks = layout.to_blocks(batch.pixels[[1]].clone())
    blocks[:, 3] = 0
    row = {name: getattr(batch, name)[[1]] for name in ("token_ids", "lengths", "content_mask")}
    blacked = replace(batch, **row, labels=None, index=torch.tensor([1]))
    blacked = replace(blacked, pixels=layout.to_pixels(blocks))
    changed = model.probabilities(model.forward_batch(blacked))
    torch.testing.assert_close(scores[1, position], tvd(base[[1]], changed)[0])


@pytest.mark.parametrize("make", [_cnn, _vit], ids=["cnn", "vit"])
def test_vision_checkpoints_round_trip(digits, make, tmp_path):
    model = make()
    batch = _batch(model, digits.test.head(4))
    save_checkpoint(tmp_path, model, _pipeline(model), digits.classes, {"note": "test"})
    loaded = load_checkpoint(tmp_path)
    assert loaded.pipeline == _pipeline(model) and loaded.metadata == {"note": "test"}
    torch.testing.assert_close(loaded.model.forward_batch(batch), model.forward_batch(batch))


PLAN = {
    "name": "vision",
    "datasets": ["digits-8x8"],
    "models": [{"vision": "attention-cnn"}, {"vision": "vit"}],
    "seeds": [1],
    "split": "test",
    "max_instances": 12,
    "vision_train": {"epochs": 3},
    "experiments": [
        {"name": "predictions"},
        {"name": "jain_wallace.correlation"},
        {"name": "jain_wallace.permutation", "params": {"permutations": 10}},
        {"name": "wiegreffe_pinter.uniform"},
        {
            "name": "wiegreffe_pinter.diagnostic",
            "params": {"variants": ["uniform", "base"], "epochs": 2},
        },
    ],
}


@pytest.fixture(scope="module")
def vision_run(tmp_path_factory):
    return run_plan(parse_plan(PLAN), tmp_path_factory.mktemp("vision"), progress=False)


def test_a_plan_trains_image_models_and_runs_the_experiments_on_them(vision_run):
    predictions = vision_run.results(0)
    assert sorted(predictions["model"].unique()) == ["attention-cnn", "vit"]
    assert (predictions.groupby("model").size() == 12).all()
    assert "text" not in predictions.columns
    # digits are easy for the CNN even after 3 epochs; chance is .1
    assert predictions[predictions["model"] == "attention-cnn"]["correct"].mean() > 0.5
    correlation = vision_run.results(1)
    assert correlation["tau_jw-gradient"].between(-1, 1).all()
    assert correlation["tau_leave-one-out"].notna().all()
    uniform = vision_run.summary(3)
    assert set(uniform["attention"]) == {"trained", "uniform"}
    diagnostic = vision_run.summary(4)
    assert set(diagnostic["attention"]) == {"uniform", "base"}
    assert (diagnostic["count"] == 12).all()


def test_the_diagnostic_mlp_sees_each_cell_alone():
    config = AttentionCNNConfig(1, 8, 10, 6, encoder="blocks", grid=2, attention_mode="fixed")
    model = make_attention_cnn(config, seed=0)
    pixels = torch.rand(1, 1, 8, 8)
    changed = pixels.clone()
    changed[0, 0, 4:, :4] += 1  # the bottom-left cell (row 1, column 0: token 2)
    before, after = (model.encoder(p) for p in (pixels, changed))
    moved = (after - before).abs().sum(-1)[0]
    assert moved[2] > 0 and moved[[0, 1, 3]].eq(0).all()
    block = pixels[0, 0, :4, 4:].reshape(-1)  # the top-right cell: token 1
    expected = torch.tanh(model.encoder.projection(block))
    torch.testing.assert_close(before[0, 1], expected)
    with pytest.raises(InvalidInputError, match="needs the blocks encoder"):
        AttentionCNNConfig(1, 8, 10, grid=3)


def test_a_vision_model_with_text_keys_is_refused():
    plan = {**PLAN, "models": [{"vision": "vit", "encoder": "lstm"}]}
    with pytest.raises(PlanError, match="takes only attention_mode; remove encoder"):
        parse_plan(plan)


def test_the_cli_trains_an_image_model_and_refuses_mismatched_data(tmp_path):
    done = run_cli(
        "train", "--dataset", "digits-8x8", "--model", "attention-cnn", "--epochs", "1",
        "--out", str(tmp_path / "cnn"), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model"] == "attention-cnn"
    assert load_checkpoint(tmp_path / "cnn").pipeline.tokens == 16
    text_model = run_cli("train", "--dataset", "digits-8x8", "--out", str(tmp_path / "lstm"))
    assert text_model.returncode == 2  # bad input
    assert "holds image data, but the model is a text model" in text_model.stderr
    as_text = run_cli("predict", "--checkpoint", str(tmp_path / "cnn"), "a film")
    assert as_text.returncode == 2
    assert "reads images, not text" in as_text.stderr


@pytest.mark.parametrize("make", [_cnn, _vit], ids=["cnn", "vit"])
def test_captum_methods_explain_images_per_block(digits, make):
    model = make()
    batch = _batch(model, digits.test.head(2))
    result = attribute(model, batch, "integrated-gradients", n_steps=64)
    # completeness: the blocks' scores add up to p(x) - p(black image) for the explained class
    target = model.probabilities(model.forward_batch(batch)).argmax(-1)
    black = replace(batch, pixels=torch.zeros_like(batch.pixels))
    gap = model.probabilities(model.forward_batch(batch)) - model.probabilities(
        model.forward_batch(black)
    )
    expected = gap.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(result.scores.sum(-1), expected.detach(), atol=5e-3, rtol=0.05)
    assert result.scores[~batch.content_mask].eq(0).all()
