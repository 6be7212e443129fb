"""Gradient rollout (Chefer et al. 2021), value zeroing (Mohebbi et al. 2023) and ALTI
(Ferrando et al. 2022) against hand-computed cases on a tiny random BERT and a classic model;
value zeroing also against numbers from its authors' recipe."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from attnexplain.attribution import attribute, list_methods
from attnexplain.attribution.alti import alti_matrices, decompose_block, manhattan_contributions
from attnexplain.attribution.attention_graph import compose
from attnexplain.attribution.generic_rollout import relevance_maps, relevance_rollout
from attnexplain.attribution.layerwise import layer_stack
from attnexplain.attribution.norms import attention_block, inputs_of
from attnexplain.attribution.value_zeroing import value_zeroing_matrices
from attnexplain.data import Framing, collate
from attnexplain.errors import HookError
from attnexplain.hooks import capture, intervene, list_sites, replace, zero_keys
from attnexplain.models import ClassicConfig, ClassicModel
from attnexplain.models.hf import HFClassifier
from tests.tiny_transformers import ARCHS, tiny_model

METHODS = ["gradient-rollout", "value-zeroing", "alti"]
BERT_SEQUENCES = [[1, 5, 6, 7, 2], [1, 8, 9, 10, 11, 12, 13, 2]]
FRAMED = Framing(0, 1, 1)


@pytest.fixture(scope="module")
def bert():
    return HFClassifier(tiny_model("bert")), collate(BERT_SEQUENCES, framing=FRAMED)


@pytest.fixture(scope="module")
def classic():
    torch.manual_seed(0)
    model = ClassicModel(ClassicConfig(vocab_size=40, embed_dim=16, hidden_size=8)).eval()
    return model, collate([[2, 5, 6, 7, 3], [2, 8, 9, 10, 11, 12, 13, 3]])


def _identity(model: HFClassifier, batch):
    """Every layer's attention replaced by the identity (each token attends to itself)."""
    eye = torch.eye(batch.token_ids.shape[1])
    return intervene(model, {site: replace(eye) for site in list_sites(model)})


@pytest.mark.parametrize("family", ["bert", "classic"])
@pytest.mark.parametrize("method", METHODS)
def test_registered_methods_give_one_nonnegative_score_per_token(request, family, method):
    model, batch = request.getfixturevalue(family)
    assert method in list_methods("attention")
    scores = attribute(model, batch, method).scores
    assert scores.shape == batch.token_ids.shape
    assert scores.isfinite().all() and (scores >= 0).all()
    assert (scores[~batch.content_mask] == 0).all()
    assert (scores[batch.content_mask] > 0).any()


def test_value_zeroing_rollout_runs_through_the_registry(bert):
    model, batch = bert
    scores = attribute(model, batch, "value-zeroing", rollout=True).scores
    assert scores.shape == batch.token_ids.shape and (scores >= 0).all()


def _target(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model.forward_batch(batch).argmax(-1)


def test_gradient_rollout_is_the_product_of_gradient_weighted_layers(bert):
    """R = (I + Abar_2)(I + Abar_1), Abar = head mean of (dy/dA * A)^+, by plain autograd
    through the captured (non-leaf) patterns."""
    model, batch = bert
    target = _target(model, batch)
    with capture(model, detach=False) as cache:
        logits = model.forward_batch(batch)
    patterns = [cache[site] for site in list_sites(model)]
    chosen = logits.gather(-1, target.unsqueeze(-1)).sum()
    gradients = torch.autograd.grad(chosen, patterns)
    eye = torch.eye(batch.token_ids.shape[1])
    first, second = ((a * g).clamp_min(0).mean(1) for a, g in zip(patterns, gradients, strict=True))
    expected = ((eye + second) @ (eye + first))[:, 0].detach() * batch.content_mask
    scores = attribute(model, batch, "gradient-rollout", target=target).scores
    assert torch.allclose(scores, expected, atol=1e-6)


def test_gradient_rollout_of_identity_attention_is_diagonal(bert):
    model, batch = bert
    target = _target(model, batch)
    assert torch.equal(relevance_rollout(torch.zeros(2, 3, 5, 5)), torch.eye(5).expand(2, 5, 5))
    with _identity(model, batch):
        rollout = relevance_rollout(relevance_maps(model, batch, target))
        scores = attribute(model, batch, "gradient-rollout", target=target).scores
    off_diagonal = rollout * (1 - torch.eye(rollout.shape[-1]))
    assert (off_diagonal == 0).all()
    assert (scores == 0).all()  # [CLS] reaches only itself


def test_classic_gradient_rollout_is_clamped_gradient_times_attention(classic):
    model, batch = classic
    state = model.encode_batch(batch)
    attention = model.attention(state).detach().requires_grad_()
    logit = model.decode(state, attention)[:, 0]  # binary: class 1's log-odds
    (gradient,) = torch.autograd.grad(logit.sum(), attention)
    expected = (attention * gradient).clamp_min(0).detach()
    scores = attribute(model, batch, "gradient-rollout", target=1).scores
    assert torch.allclose(scores, expected, atol=1e-7)


def test_value_zeroing_of_an_unattended_token_changes_nothing(bert):
    model, batch = bert
    site = list_sites(model)[-1]
    with intervene(model, {site: zero_keys([3])}):
        single = attribute(model, batch, "value-zeroing").scores
        matrix = value_zeroing_matrices(model, batch, [1])[:, 0]
    assert single[:, 3].abs().max() < 1e-7
    assert matrix[:, :, 3].abs().max() < 1e-7  # no row attends to token 3 there
    assert (single[:, [1, 2]] > 0).all()


def _zero_position(j: int):
    """A forward hook zeroing position ``j`` of a [batch, tokens, dim] output (v_j = 0)."""

    def hook(module, args, output):
        return output.index_fill(1, torch.tensor([j]), 0.0)

    return hook


@pytest.mark.parametrize("layer", [0, 1])
def test_value_zeroing_equals_zeroing_the_value_projection(bert, layer):
    """Mohebbi et al.'s literal recipe: v_j = 0 in the value projection's output (for every
    query row, j's own included), layer ``layer`` rerun on the original input."""
    model, batch = bert
    ids = batch.token_ids[1:2, : int(batch.lengths[1])]
    tokens = ids.shape[1]
    value = attention_block(model, layer).value
    grabbed = {}

    def keep_output(module, args, output):
        grabbed["y"] = output[0] if isinstance(output, tuple) else output

    handle = layer_stack(model)[layer].register_forward_hook(keep_output)
    expected = torch.zeros(tokens, tokens)
    try:
        with torch.no_grad():
            model.model(input_ids=ids)
            original = grabbed["y"][0]
            for j in range(tokens):
                zero = value.register_forward_hook(_zero_position(j))
                try:
                    model.model(input_ids=ids)
                finally:
                    zero.remove()
                cosine = torch.cosine_similarity(original, grabbed["y"][0], dim=-1)
                expected[:, j] = 1 - cosine
    finally:
        handle.remove()
    matrix = value_zeroing_matrices(model, batch, [layer])[1, 0, :tokens, :tokens]
    assert torch.allclose(matrix, expected, atol=1e-5)
    assert (matrix.diagonal() > 0).all()  # a token's own value counts for its own row


# Mohebbi et al.'s scoring/value_zeroing.py redone by hand in float64 from _seeded_bert's
# weights for VZ_IDS (each layer rerun on its plain input with v_t = 0 in every query row,
# 1 - cos per row, rows normalised to sum 1; rollout VZ_2 VZ_1 without residual), 6 decimals.
VZ_IDS = [1, 5, 6, 7, 2]
REFERENCE_VZ = [
    [
        [0.144461, 0.21562, 0.005605, 0.633289, 0.001025],
        [0.414702, 0.031267, 0.380512, 0.15241, 0.021108],
        [0.110753, 0.047583, 0.151178, 0.678307, 0.012179],
        [0.089919, 0.213745, 0.365732, 0.329054, 0.00155],
        [0.041804, 0.499837, 0.028965, 0.429043, 0.000352],
    ],
    [
        [0.424306, 0.003331, 0.007441, 0.050796, 0.514126],
        [0.102781, 0.673293, 0.133627, 0.081012, 0.009287],
        [0.553799, 0.017812, 0.006637, 0.006048, 0.415704],
        [0.11557, 0.621967, 0.054526, 0.206388, 0.001548],
        [0.661149, 0.050718, 0.040385, 0.203618, 0.044129],
    ],
]
REFERENCE_VZ_ROLLOUT_CLS = [0.089561, 0.359784, 0.03824, 0.51156, 0.000856]


def _seeded_bert() -> HFClassifier:
    """The tiny BERT's architecture with weights drawn from a seeded generator in parameter
    name order (not transformers' initialiser, which may change between versions)."""
    model = AutoModelForSequenceClassification.from_config(ARCHS["bert"].config).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            noise = torch.randn(parameter.shape, generator=generator)
            if "LayerNorm.weight" in name:
                parameter.copy_(1 + 0.1 * noise)
            elif name.endswith("bias"):
                parameter.copy_(0.1 * noise)
            else:
                parameter.copy_(0.3 * noise)
    return HFClassifier(model)


def test_value_zeroing_matches_the_authors_code_on_the_same_weights():
    model, batch = _seeded_bert(), collate([VZ_IDS], framing=FRAMED)
    matrices = value_zeroing_matrices(model, batch, [0, 1])[0]
    normalised = matrices / matrices.sum(-1, keepdim=True)
    assert torch.allclose(normalised, torch.tensor(REFERENCE_VZ), atol=1e-5)
    content = batch.content_mask[0]
    site_row = attribute(model, batch, "value-zeroing").scores[0]
    assert torch.allclose(site_row, torch.tensor(REFERENCE_VZ[1][0]) * content, atol=1e-5)
    rollout = attribute(model, batch, "value-zeroing", rollout=True).scores[0]
    assert torch.allclose(rollout, torch.tensor(REFERENCE_VZ_ROLLOUT_CLS) * content, atol=1e-5)


def test_classic_value_zeroing_is_the_cosine_distance_of_the_context(classic):
    model, batch = classic
    with torch.no_grad():
        state = model.encode_batch(batch)
        alpha = model.attention(state)
        context = torch.einsum("bt,bth->bh", alpha, state.hidden)
        without = context.unsqueeze(1) - alpha.unsqueeze(-1) * state.hidden
        expected = 1 - torch.cosine_similarity(context.unsqueeze(1), without, dim=-1)
    scores = attribute(model, batch, "value-zeroing").scores
    assert torch.allclose(scores, expected * batch.content_mask, atol=1e-6)


def test_alti_rows_sum_to_one_per_layer(bert):
    model, batch = bert
    matrices = alti_matrices(model, batch)
    assert matrices.shape == (2, 2, 8, 8)
    real = batch.padding_mask.bool()
    sums = matrices.sum(-1)  # [batch, layers, tokens]
    assert torch.allclose(sums.permute(0, 2, 1)[real], torch.ones(int(real.sum()), 2), atol=1e-6)
    assert (matrices >= 0).all()
    assert (matrices[0, :, :5, 5:] == 0).all()  # padded keys contribute nothing


@pytest.mark.parametrize("layer", [0, 1])
def test_alti_terms_add_up_to_the_layer_norm_output(bert, layer):
    """sum_j T_i(x_j) + bias terms = LN(x_i + attention output): the decomposition is exact."""
    model, batch = bert
    block = attention_block(model, layer)
    grabbed = {}
    handle = block.norm.register_forward_hook(lambda m, a, out: grabbed.setdefault("y", out))
    try:
        with torch.no_grad(), capture(model) as cache, inputs_of([block.attention]) as inputs:
            model.forward_batch(batch)
            _, output = decompose_block(block, inputs[0], cache[list_sites(model)[layer]])
    finally:
        handle.remove()
    assert torch.allclose(output, grabbed["y"], atol=1e-5)


def test_alti_of_identity_attention_is_the_identity(bert):
    model, batch = bert
    eye = torch.eye(8)
    assert torch.equal(compose(eye.expand(2, 3, 8, 8)), eye.expand(2, 8, 8))
    with _identity(model, batch):
        matrices = alti_matrices(model, batch)
        scores = attribute(model, batch, "alti").scores
    real = batch.padding_mask.bool()
    for b in range(2):
        n = int(real[b].sum())
        assert torch.allclose(matrices[b, :, :n, :n], eye[:n, :n].expand(2, n, n), atol=1e-6)
    assert (scores == 0).all()


def test_classic_alti_is_the_manhattan_rule_on_alpha_h(classic):
    model, batch = classic
    with torch.no_grad():
        state = model.encode_batch(batch)
        vectors = model.attention(state).unsqueeze(-1) * state.hidden
    context = vectors.sum(1, keepdim=True)
    closer = (context.abs().sum(-1) - (context - vectors).abs().sum(-1)).clamp_min(0)
    scores = attribute(model, batch, "alti").scores
    assert torch.allclose(scores, closer / closer.sum(-1, keepdim=True), atol=1e-6)
    assert torch.allclose(scores.sum(-1), torch.ones(2), atol=1e-6)
    assert torch.equal(manhattan_contributions(vectors, context[:, 0]), scores)


@pytest.mark.parametrize(("name", "needs"), [("llama", "post-LN"), ("gpt2", "value and output")])
def test_alti_names_what_it_needs(name, needs):
    model = HFClassifier(tiny_model(name))
    with pytest.raises(HookError, match=needs):
        attribute(model, collate(BERT_SEQUENCES, framing=Framing(0, 0, 0)), "alti")
