"""attnexplain.measures: the registry of faithfulness measures, and each measure against a
hand-worked case."""

from __future__ import annotations

import pytest
import torch

from attnexplain.data import collate
from attnexplain.errors import InvalidInputError, UnknownNameError
from attnexplain.faithfulness import comprehensiveness, sufficiency
from attnexplain.measures import build_measure, get_measure, list_measures, method_explainer
from attnexplain.measures.soft import soft_weights
from attnexplain.models import ClassicConfig, ClassicModel

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
