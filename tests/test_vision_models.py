"""The image models behind the one model interface: an attention CNN (the classic family) and a
ViT (through HFClassifier), tiny and randomly initialised, on random or synthetic images."""

from __future__ import annotations

import pytest
import torch

from attnexplain.data.batching import collate, image_batch
from attnexplain.errors import InvalidInputError, UnknownNameError
from attnexplain.hooks import capture, intervene, layer_site, list_sites, permute, uniform
from attnexplain.hooks.interventions import shuffle_allowed
from attnexplain.models.classic import ClassicConfig, ClassicModel, masked_softmax
from attnexplain.models.vision import (
    AttentionCNN,
    AttentionCNNConfig,
    batch_images,
    image_tokens,
    make_attention_cnn,
    make_vit,
)
from attnexplain.models.vision_train import accuracy, shift_images, train_image_model

SIZE = 16
VIT_LAYERS = 2


def _model(name: str, num_classes: int = 3, **options):
    if name == "cnn":
        config = AttentionCNNConfig(
            channels=1, image_size=SIZE, num_classes=num_classes, hidden=16, **options
        )
        return make_attention_cnn(config).eval()
    vit = make_vit(SIZE, 1, num_classes, patch_size=4, hidden_size=32, layers=VIT_LAYERS, heads=4)
    return vit.eval()


@pytest.fixture(scope="module", params=["cnn", "vit"])
def model(request):
    return _model(request.param)


def _images(count: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _site(model) -> str:
    """The model's own attention site: the classic one, or the ViT's last [CLS] row."""
    if isinstance(model, AttentionCNN):
        return "attention"
    return f"{layer_site(VIT_LAYERS - 1)}[queries=0]"


def test_image_batch_marks_patches_or_cells_as_content():
    images = _images(2)
    vit = image_batch(images, tokens=17, lead=1, labels=[1, 0])
    assert vit.token_ids.tolist() == [list(range(17))] * 2
    assert vit.lengths.tolist() == [17, 17]
    assert vit.content_mask.tolist() == [[False] + [True] * 16] * 2
    assert len(vit) == 2 and vit.labels.tolist() == [1, 0] and vit.index.tolist() == [0, 1]
    assert vit.padding_mask.tolist() == [[1] * 17] * 2
    assert set(vit.model_inputs()) == {"pixel_values"} and vit.pixels is images
    cells = image_batch(images, tokens=16, lead=0)
    assert cells.content_mask.all() and cells.labels is None
    text = collate([[2, 5, 6, 3]])
    assert text.pixels is None and set(text.model_inputs()) == {"input_ids", "attention_mask"}
    with pytest.raises(InvalidInputError, match="lead < tokens"):
        image_batch(images, tokens=4, lead=4)


def test_each_model_batches_its_own_tokens():
    assert image_tokens(_model("vit")) == (1 + (SIZE // 4) ** 2, 1)
    assert image_tokens(_model("cnn")) == (16, 0)  # 16 -> 8 -> 4: a 4x4 map
    assert AttentionCNNConfig(image_size=28).map_size == 7
    assert AttentionCNNConfig(image_size=8).map_size == 4
    with pytest.raises(InvalidInputError, match="not an image model"):
        image_tokens(ClassicModel(ClassicConfig(vocab_size=10)))


def test_captured_attention_is_the_models_own(model):
    batch = batch_images(model, _images())
    with torch.no_grad(), capture(model) as cache:
        model.forward_batch(batch)
    with torch.no_grad():
        state = model.encode_batch(batch)
        own = model.attention(state)
        if isinstance(model, AttentionCNN):
            expected = masked_softmax(model.scorer(state.hidden), state.content_mask)
            captured = cache["attention"]
        else:
            reference = model.model(pixel_values=batch.pixels, output_attentions=True)
            last = layer_site(VIT_LAYERS - 1)
            torch.testing.assert_close(cache[last], reference.attentions[-1], atol=1e-6, rtol=0)
            expected = reference.attentions[-1][:, :, 0]
            captured = cache[f"{last}[queries=0]"][:, :, 0]
    torch.testing.assert_close(captured, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(own, expected, atol=1e-6, rtol=0)


def test_identity_intervention_leaves_logits_unchanged(model):
    batch = batch_images(model, _images())
    with torch.no_grad():
        expected = model.forward_batch(batch)
        with intervene(model, dict.fromkeys(list_sites(model), lambda pattern, call: pattern)):
            got = model.forward_batch(batch)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_decoding_the_own_attention_is_the_forward_pass(model):
    batch = batch_images(model, _images())
    with torch.no_grad():
        state = model.encode_batch(batch)
        decoded = model.decode(state, model.attention(state))
        logits, attention = model.forward_with_attention(batch)
        plain = model.forward_batch(batch)
    torch.testing.assert_close(decoded, plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(attention, model.attention(state), atol=1e-6, rtol=0)
    assert model.probabilities(plain).shape == (3, 3)


def test_many_candidates_decode_like_one_at_a_time(model):
    batch = batch_images(model, _images())
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        state = model.encode_batch(batch)
        shape = model.attention(state).shape
        candidates = torch.softmax(torch.randn(shape[0], 4, *shape[1:], generator=generator), -1)
        together = model.decode(state, candidates)
        assert together.shape == (3, 4, 3)
        for k in range(4):
            torch.testing.assert_close(
                together[:, k], model.decode(state, candidates[:, k]), atol=1e-5, rtol=0
            )


def test_a_permuted_uniform_attention_changes_nothing(model):
    """Decoding a uniform attention and a permutation of it agree, and agree with the forward
    pass under the hooks' uniform intervention (with a permutation run after it)."""
    batch = batch_images(model, _images())
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        state = model.encode_batch(batch)
        support = state.support.reshape(len(batch), *[1] * (model.attention(state).dim() - 2), -1)
        flat = support.expand_as(model.attention(state)).float()
        flat = flat / flat.sum(-1, keepdim=True)
        shuffled = shuffle_allowed(flat, support, generator)
        decoded = model.decode(state, flat)
        torch.testing.assert_close(model.decode(state, shuffled), decoded, atol=1e-5, rtol=0)
        with intervene(model, {_site(model): uniform()}):
            hooked = model.forward_batch(batch)
            with intervene(model, {_site(model): permute(generator)}):
                permuted = model.forward_batch(batch)
    torch.testing.assert_close(hooked, decoded, atol=1e-5, rtol=0)
    torch.testing.assert_close(permuted, hooked, atol=1e-5, rtol=0)


def test_a_uniform_cnn_weighs_its_content_cells_alike():
    model = _model("cnn", attention_mode="uniform")
    assert model.scorer is None and model.attention_parameters() == []
    batch = batch_images(model, _images(2))
    batch.content_mask[1, :6] = False
    with torch.no_grad():
        alpha = model.attention(model.encode_batch(batch))
    assert torch.allclose(alpha[0], torch.full((16,), 1 / 16))
    assert torch.allclose(alpha[1], torch.tensor([0.0] * 6 + [0.1] * 10))


def test_cnn_configs_and_batches_are_checked():
    with pytest.raises(UnknownNameError, match="additive, dot"):
        AttentionCNNConfig(attention="cosine")
    with pytest.raises(UnknownNameError, match="learned, uniform, fixed"):
        AttentionCNNConfig(attention_mode="frozen")
    with pytest.raises(UnknownNameError, match="conv, blocks"):
        AttentionCNNConfig(encoder="mlp")
    with pytest.raises(InvalidInputError, match="pass a larger hidden"):
        AttentionCNNConfig(hidden=1)
    with pytest.raises(InvalidInputError, match="patch_size to divide image_size"):
        make_vit(image_size=28, patch_size=5)
    with pytest.raises(InvalidInputError, match="batch_images"):
        _model("cnn").forward_batch(collate([[2, 5, 3]]))


def test_a_binary_cnn_has_one_logit_and_two_probabilities():
    model = _model("cnn", num_classes=2)
    probabilities = model.probabilities(model.forward_batch(batch_images(model, _images())))
    assert model.output_size == 1 and probabilities.shape == (3, 2)
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(3))


def test_shifts_move_images_by_at_most_two_pixels():
    images = torch.zeros(50, 1, 8, 8)
    images[:, :, 3, 3] = 1
    moved = shift_images(images, torch.Generator().manual_seed(0))
    rows, cols = moved[:, 0].nonzero()[:, 1:].T
    assert moved.shape == images.shape and moved.sum() == 50
    assert rows.min() == 1 and rows.max() == 5 and cols.min() == 1 and cols.max() == 5


def _textures(size: int) -> torch.Tensor:
    """[4, size, size] patterns, one per class: horizontal stripes, vertical stripes, a
    checkerboard and a solid square."""
    rows = torch.arange(size)[:, None].expand(size, size)
    cols = rows.T
    return torch.stack([rows % 2 == 0, cols % 2 == 0, (rows + cols) % 2 == 0, rows >= 0]).float()


def _patterns(count: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy images of a texture shifted by a random offset; its kind is the label
    (:func:`_textures`; 2 classes: the stripes). Position carries no information: the
    attention CNN pools its cells without knowing where they are, so it could not tell
    quadrants apart."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (count,), generator=generator)
    offsets = torch.randint(0, 2, (count, 2), generator=generator)
    textures = _textures(SIZE + 1)
    images = 0.5 * torch.rand(count, 1, SIZE, SIZE, generator=generator)
    for row, (label, (top, left)) in enumerate(zip(labels.tolist(), offsets.tolist(), strict=True)):
        images[row, 0] += 0.5 * textures[label, top : top + SIZE, left : left + SIZE]
    return images, labels


@pytest.mark.parametrize(("name", "classes"), [("cnn", 4), ("cnn", 2), ("vit", 4)])
def test_a_short_training_run_learns_the_textures(name, classes):
    model = _model(name, num_classes=classes).train()
    result = train_image_model(
        model,
        _patterns(800, classes, seed=1),
        _patterns(100, classes, seed=2),
        epochs=5,
        lr=1e-3,
        batch_size=16,
        augment=False,  # shifting a texture in from a black border only slows the test down
        warmup=0,
        progress=False,
    )
    assert [entry["epoch"] for entry in result["history"]] == [1, 2, 3, 4, 5]
    assert result["best_dev_accuracy"] == max(e["dev_accuracy"] for e in result["history"])
    assert accuracy(model, *_patterns(100, classes, seed=2)) == result["best_dev_accuracy"]
    assert accuracy(model, *_patterns(200, classes, seed=3)) >= 0.9


def test_classic_model_state_dict_keys_are_unchanged():
    model = ClassicModel(ClassicConfig(vocab_size=10, encoder="average", hidden_size=4))
    assert list(model.state_dict()) == [
        "embedding.weight",
        "encoder.projection.weight",
        "encoder.projection.bias",
        "scorer.projection.weight",
        "scorer.projection.bias",
        "scorer.vector.weight",
        "decoder.weight",
        "decoder.bias",
    ]
