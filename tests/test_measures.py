"""attnexplain.measures: the registry of faithfulness measures, and each measure against a
hand-worked case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnexplain import load_checkpoint, load_dataset, train
from attnexplain.attribution.adapter import EmbeddingForward, predicted_class
from attnexplain.data import Framing, collate
from attnexplain.errors import InvalidInputError, UnknownNameError
from attnexplain.faithfulness import comprehensiveness, sufficiency
from attnexplain.measures import build_measure, get_measure, list_measures, method_explainer
from attnexplain.measures.randomisation import (
    model_layers,
    randomisation_stages,
    randomised,
    similarity_curve,
)
from attnexplain.measures.soft import soft_weights
from attnexplain.metrics import rank_ssim
from attnexplain.models import ClassicConfig, ClassicModel
from attnexplain.models.hf import HFClassifier
from attnexplain.models.train import TrainConfig
from tests.tiny_transformers import tiny_model

SEQUENCES = [[2, *range(4, 14), 3], [2, 20, 21, 22, 23, 3]]  # 10 and 4 content tokens


@pytest.fixture(scope="module")
def classic():
    torch.manual_seed(0)
    model = ClassicModel(ClassicConfig(vocab_size=40, embed_dim=8, hidden_size=8)).eval()
    return model, collate(SEQUENCES)


def _probabilities(model, ids: list[int], scale: list[float] | None = None) -> torch.Tensor:
    """p(. | ids) with the content embeddings scaled by ``scale`` (one per content token)."""
    batch = collate([ids])
    embedded = model.embedding(batch.token_ids)
    if scale is not None:
        factors = torch.tensor([1.0, *scale, 1.0]).reshape(1, -1, 1)
        embedded = embedded * factors
    with torch.no_grad():
        state = model.encode(None, batch.lengths, batch.content_mask, embedded=embedded)
        return model.probabilities(model.decode(state, model.attention(state)))[0]


def test_every_registered_measure_is_built_by_name_and_refuses_unknown_options():
    assert {"comprehensiveness", "sufficiency", "soft-comprehensiveness"} <= set(list_measures())
    assert get_measure("comprehensiveness").hyperparameters["percents"] == (1, 5, 10, 20, 50)
    assert build_measure("comprehensiveness", percents=(10,)).percents == (10,)
    with pytest.raises(UnknownNameError, match="choose one of comprehensiveness"):
        get_measure("roar-magic")
    with pytest.raises(InvalidInputError, match="takes percents, fast; got bins"):
        build_measure("comprehensiveness", bins=(10,))


def test_the_eraser_measures_are_the_aopc_of_the_faithfulness_functions(classic):
    model, batch = classic
    scores = torch.rand(batch.content_mask.shape, generator=torch.Generator().manual_seed(1))
    explain = method_explainer("attention")
    for name, function in (("comprehensiveness", comprehensiveness), ("sufficiency", sufficiency)):
        value = build_measure(name, percents=(10, 50))(model, batch, scores, explain)
        expected = function(model, batch, scores, (10, 50)).mean(-1).double()
        assert value.dtype == torch.float64 and torch.allclose(value, expected)


def test_soft_weights_are_the_positive_part_over_the_largest():
    mask = torch.tensor([[False, True, True, True, False]])
    scores = torch.tensor([[9.0, 2.0, -1.0, 4.0, 9.0]])
    assert soft_weights(scores, mask).tolist() == [[0.0, 0.5, 0.0, 1.0, 0.0]]
    assert soft_weights(-scores.abs(), mask).tolist() == [[0.0] * 5]  # no positive score


def test_soft_measures_by_hand(classic):
    model, batch = classic
    scores = torch.zeros(batch.content_mask.shape)
    scores[0, 1:11] = torch.linspace(0.1, 1.0, 10)  # every weight positive: nothing deleted
    scores[1, 1:5] = torch.tensor([2.0, 1.0, 4.0, 3.0])
    explain = method_explainer("attention")
    suff = build_measure("soft-sufficiency")(model, batch, scores, explain)
    comp = build_measure("soft-comprehensiveness")(model, batch, scores, explain)
    weights = [torch.linspace(0.1, 1.0, 10).tolist(), [0.5, 0.25, 1.0, 0.75]]
    for row, ids in enumerate(SEQUENCES):
        full = _probabilities(model, ids)
        label = int(full.argmax())
        kept = _probabilities(model, ids, weights[row])[label]
        assert suff[row].item() == pytest.approx((full[label] - kept).item(), abs=1e-6)
    # comprehensiveness of row 1: weights 1 - w = [0.5, 0.75, 0, 0.25], the third token deleted
    full = _probabilities(model, SEQUENCES[1])
    label = int(full.argmax())
    without = _probabilities(model, [2, 20, 21, 23, 3], [0.5, 0.75, 0.25])[label]
    assert comp[1].item() == pytest.approx((full[label] - without).item(), abs=1e-6)


def test_soft_equals_hard_erasure_when_the_scores_are_binary(classic):
    model, batch = classic
    scores = torch.zeros(batch.content_mask.shape)
    scores[0, [2, 5, 9]] = 1.0  # 3 of 10 tokens: the 30% bin
    scores[1, [3]] = 1.0  # 1 of 4: ceil(30% of 4) = 2, so row 1 is compared at 25%
    explain = method_explainer("attention")
    soft_suff = build_measure("soft-sufficiency")(model, batch, scores, explain)
    soft_comp = build_measure("soft-comprehensiveness")(model, batch, scores, explain)
    for row, percent in ((0, 30), (1, 25)):
        hard_suff = sufficiency(model, batch, scores, (percent,))[row, 0]
        hard_comp = comprehensiveness(model, batch, scores, (percent,))[row, 0]
        assert soft_suff[row].item() == pytest.approx(hard_suff.item(), abs=1e-6)
        assert soft_comp[row].item() == pytest.approx(hard_comp.item(), abs=1e-6)
    # and a real difference once a weight is fractional
    scores[0, 4] = 0.5
    graded = build_measure("soft-sufficiency")(model, batch, scores, explain)
    assert abs(graded[0].item() - soft_suff[0].item()) > 1e-4


def test_soft_measures_reject_scores_of_another_shape(classic):
    model, batch = classic
    with pytest.raises(InvalidInputError, match="scores must be"):
        build_measure("soft-sufficiency")(model, batch, torch.zeros(2, 3), None)


# ---------------------------------------------------------------- model randomisation


def embedding_norms(model, batch) -> torch.Tensor:
    """A method that reads only the input: each token's embedding norm."""
    content, _ = EmbeddingForward(model).inputs(batch)
    return content.norm(dim=-1)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A BiLSTM trained on the planted task, and a batch of its test rows."""
    dataset = load_dataset("synthetic", n=600, seed=3)
    folder = tmp_path_factory.mktemp("planted")
    config = TrainConfig(epochs=3, embeddings="random", embed_dim=32)
    train(dataset, folder, {"encoder": "lstm", "hidden_size": 32}, config, progress=False)
    checkpoint = load_checkpoint(folder)
    pipeline = checkpoint.pipeline
    batch = collate(pipeline.encode_split(dataset.test.head(24)), framing=pipeline.framing)
    return checkpoint.model.eval(), batch


def test_rank_ssim_is_one_for_equal_rankings_and_lower_for_others():
    x = torch.tensor([[0.1, 0.5, 0.2, 0.9, 0.3, 0.7, 0.4, 0.0]])
    assert rank_ssim(x, 3 * x).item() == pytest.approx(1.0)
    assert rank_ssim(x, x.flip(-1)).item() < 0.5
    assert rank_ssim(x, torch.ones_like(x)).isnan().all()  # constant: undefined, as Spearman
    # by hand, one window of 3: ranks (0, 0.5, 1) vs (0, 1, 0.5)
    a, b = np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0, 0.5])
    c1, c2 = 0.01**2, 0.03**2
    covariance = np.mean((a - a.mean()) * (b - b.mean()))
    expected = (2 * 0.25 + c1) * (2 * covariance + c2) / ((0.5 + c1) * (2 * a.var() + c2))
    value = rank_ssim(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0, 3.0, 2.0]]), window=3)
    assert value.item() == pytest.approx(expected)


def test_randomisation_works_on_a_copy_and_the_stages_follow_the_layers(classic):
    model, _ = classic
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert model_layers(model) == ["decoder", "scorer", "encoder"]
    assert randomisation_stages(model, "cascading") == [
        ["decoder"],
        ["decoder", "scorer"],
        ["decoder", "scorer", "encoder"],
    ]
    copy = randomised(model, ["decoder", "scorer", "encoder"], seed=1)
    again = randomised(model, ["decoder", "scorer", "encoder"], seed=1)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name  # the original is untouched
        changed = not torch.equal(copy.state_dict()[name], value)
        assert changed == (not name.startswith("embedding")), name
        assert torch.equal(copy.state_dict()[name], again.state_dict()[name])
    with pytest.raises(InvalidInputError, match="the model's are decoder, scorer, encoder"):
        randomised(model, ["classifier"])


def test_randomisation_of_a_transformer_goes_down_its_layers():
    model = HFClassifier(tiny_model("bert"))
    batch = collate([[1, 5, 6, 7, 2], [1, 8, 9, 10, 11, 12, 13, 2]], framing=Framing(0, 1, 1))
    assert model_layers(model) == [
        "model.classifier",
        "model.bert.pooler",
        "model.bert.encoder.layer.1",
        "model.bert.encoder.layer.0",
    ]
    gradient = method_explainer("jw-gradient")
    scores = gradient(model, batch)
    curve = similarity_curve(model, batch, scores, gradient, "independent")
    assert curve.shape == (2, 4) and curve.isfinite().all()
    assert torch.equal(gradient(model, batch), scores)  # the model itself is unchanged


def test_an_input_only_method_fails_the_randomisation_check_and_gradient_passes(planted):
    model, batch = planted
    gradient = method_explainer("jw-gradient", predicted_class(model, batch))
    results = {}
    for name in ("randomisation-cascading", "randomisation-cascading-ssim"):
        measure = build_measure(name)
        for method, explain in (("norms", embedding_norms), ("gradient", gradient)):
            results[name, method] = measure(model, batch, explain(model, batch), explain)
    assert torch.allclose(results["randomisation-cascading", "norms"], torch.ones(24).double())
    assert torch.allclose(results["randomisation-cascading-ssim", "norms"], torch.ones(24).double())
    assert results["randomisation-cascading", "gradient"].mean() < 0.5
    assert results["randomisation-cascading-ssim", "gradient"].mean() < 0.7


# ---------------------------------------------------------------- Captum's metrics


def test_infidelity_by_hand_when_every_token_is_dropped(classic):
    model, batch = classic
    scores = torch.rand(batch.content_mask.shape, generator=torch.Generator().manual_seed(4))
    scores = scores.masked_fill(~batch.content_mask, 0)
    measure = build_measure("infidelity", drop=1.0, n_perturb_samples=3, normalize=False)
    value = measure(model, batch, scores, None)
    forward = EmbeddingForward(model)
    content, trailing = forward.inputs(batch)
    with torch.no_grad():
        full, empty = forward(content, *trailing), forward(0 * content, *trailing)
    label = full.argmax(-1, keepdim=True)
    change = (full.gather(-1, label) - empty.gather(-1, label)).squeeze(-1)
    expected = (scores.sum(-1) - change) ** 2
    assert torch.allclose(value, expected.double(), atol=1e-6)


def test_infidelity_prefers_the_scores_that_predict_the_output_change(classic):
    model, batch = classic
    occlusion = method_explainer("occlusion")(model, batch)  # the one-token output changes
    noise = torch.rand(batch.content_mask.shape, generator=torch.Generator().manual_seed(5))
    measure = build_measure("infidelity", drop=0.1, n_perturb_samples=200)
    assert measure(model, batch, occlusion, None).mean() < measure(model, batch, noise, None).mean()


def test_sensitivity_is_zero_for_an_input_only_method_and_positive_for_gradient(classic):
    model, batch = classic
    measure = build_measure("sensitivity-max", radius=0.1)

    def constant(model, batch):  # reads neither the model nor the input's values
        return batch.content_mask.float()

    assert (measure(model, batch, constant(model, batch), constant) == 0).all()
    gradient = method_explainer("saliency", predicted_class(model, batch))
    assert (measure(model, batch, gradient(model, batch), gradient) > 0).all()
    with pytest.raises(InvalidInputError, match="measure it with infidelity instead"):
        loo = method_explainer("lime")
        measure(model, batch, loo(model, batch), loo)
