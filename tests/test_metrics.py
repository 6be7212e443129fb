"""attnexplain.metrics and attnexplain.faithfulness against scipy / scikit-learn and
hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import average_precision_score

from attnexplain.data import collate
from attnexplain.errors import InvalidInputError
from attnexplain.faithfulness import (
    aopc,
    comprehensiveness,
    decision_flip,
    sufficiency,
)
from attnexplain.measures.eraser import AOPCComprehensiveness, AOPCSufficiency
from attnexplain.metrics import (
    auprc,
    entropy,
    jsd,
    kendall_tau,
    kl,
    nan_summary,
    precision_at_k,
    spearman,
    top_k_mask,
    top_k_overlap,
    tvd,
)
from attnexplain.models import ClassicConfig, ClassicModel

P = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], dtype=torch.float64)
Q = torch.tensor([[0.25, 0.25, 0.5], [0.2, 0.3, 0.5]], dtype=torch.float64)


def test_tvd_by_hand_and_with_a_mask():
    assert torch.allclose(tvd(P, Q), torch.tensor([0.5, 0.0], dtype=torch.float64))
    mask = torch.tensor([[True, True, False]] * 2)
    assert torch.allclose(tvd(P, Q, mask), torch.tensor([0.25, 0.0], dtype=torch.float64))
    # Binary output distributions: TVD is |p_1 - q_1|.
    assert tvd(torch.tensor([0.3, 0.7]), torch.tensor([0.9, 0.1])).item() == pytest.approx(0.6)


def test_kl_and_jsd_match_scipy():
    p, q = torch.tensor([[0.1, 0.6, 0.3]]), torch.tensor([[0.3, 0.3, 0.4]])
    assert kl(p, q).item() == pytest.approx(stats.entropy(p[0], q[0]), rel=1e-5)
    # scipy's jensenshannon is the square root of the divergence (natural log by default).
    assert jsd(p, q).item() == pytest.approx(jensenshannon(p[0], q[0]) ** 2, rel=1e-5)
    assert jsd(P, Q)[1].item() == 0.0


def test_jsd_is_at_most_ln2_and_kl_is_inf_off_support():
    disjoint_p, disjoint_q = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert jsd(disjoint_p, disjoint_q).item() == pytest.approx(math.log(2))
    assert kl(disjoint_p, disjoint_q).item() == math.inf
    # 0 ln 0 = 0: only the second entry counts, 1 ln(1 / 0.5).
    assert kl(disjoint_q, torch.tensor([0.5, 0.5])).item() == pytest.approx(math.log(2))


def test_entropy_and_jsd_gradients_match_the_textbook_forms_and_stay_finite_at_zero():
    logits = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    logits[0, :2] = -math.inf  # masked attention: exact zeros after the softmax
    target = torch.softmax(torch.randn(3, 6, dtype=torch.float64), -1)

    def gradient(divergence) -> torch.Tensor:
        leaf = logits.clone().requires_grad_()
        p = torch.softmax(leaf, -1)
        (grad,) = torch.autograd.grad(divergence(p, target).sum(), leaf)
        return grad

    def textbook(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        m = (p + q) / 2
        return 0.5 * (torch.xlogy(p, p / m) + torch.xlogy(q, q / m)).sum(-1)

    ours = gradient(jsd)
    assert torch.isfinite(ours).all()
    assert (ours[0, :2] == 0).all()  # Adam never moves a masked logit
    assert torch.allclose(ours[1:], gradient(textbook)[1:], atol=1e-10)
    p = torch.softmax(logits, -1)
    assert torch.allclose(jsd(p, target), textbook(p, target), atol=1e-12)
    given = (entropy(p), entropy(target))
    assert torch.allclose(jsd(p, target, entropies=given), jsd(p, target), atol=1e-12)
    # with the entropies given the mixture's mass is taken as 2: exact for softmax outputs,
    # whose total has zero gradient
    with_entropies = gradient(lambda p, q: jsd(p, q, entropies=(entropy(p), entropy(q))))
    assert torch.allclose(with_entropies[1:], gradient(textbook)[1:], atol=1e-10)


def _ragged() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 9, generator=generator)
    y = x + torch.randn(4, 9, generator=generator)
    mask = torch.arange(9) < torch.tensor([[9], [6], [3], [7]])
    return x, y, mask


@pytest.mark.parametrize(
    ("metric", "reference"), [(kendall_tau, stats.kendalltau), (spearman, stats.spearmanr)]
)
def test_rank_correlations_match_scipy_per_instance(metric, reference):
    x, y, mask = _ragged()
    result = metric(x, y, mask)
    for row in range(4):
        n = int(mask[row].sum())
        expected = reference(x[row, :n].numpy(), y[row, :n].numpy())
        assert result.statistic[row].item() == pytest.approx(expected[0], abs=1e-12)
        assert result.pvalue[row].item() == pytest.approx(expected[1], abs=1e-12)


def test_kendall_is_tau_b_with_ties():
    x = torch.tensor([[1.0, 1.0, 2.0, 3.0, 3.0]])
    y = torch.tensor([[1.0, 2.0, 2.0, 3.0, 4.0]])
    expected = stats.kendalltau(x[0], y[0], variant="b")
    assert kendall_tau(x, y).statistic.item() == pytest.approx(expected.statistic)


def test_correlation_of_a_constant_or_too_short_row_is_nan_and_counted():
    x = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])
    y = torch.tensor([[1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    mask = torch.tensor([[True] * 3, [True] * 3, [True, False, False]])
    tau = kendall_tau(x, y, mask)
    assert not tau.statistic[0].isnan()
    assert tau.statistic[1:].isnan().all() and tau.pvalue[1:].isnan().all()
    summary = nan_summary(tau.statistic)
    assert (summary.count, summary.nan) == (1, 2)
    assert summary.mean == pytest.approx(tau.statistic[0].item())


def test_nan_summary_reports_mean_std_and_counts():
    summary = nan_summary(np.array([0.2, np.nan, 0.4, np.nan]))
    assert summary.mean == pytest.approx(0.3)
    assert summary.std == pytest.approx(0.1)  # ddof 0
    assert (summary.count, summary.nan) == (2, 2)
    assert "2 NaN" in str(summary)
    assert nan_summary(torch.tensor([float("nan")])).count == 0


def test_top_k_mask_respects_the_mask_and_breaks_ties_by_position():
    scores = torch.tensor([[5.0, 1.0, 1.0, 9.0], [2.0, 2.0, 2.0, 0.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    chosen = top_k_mask(scores, mask, torch.tensor([2, 2]))
    assert chosen.tolist() == [[True, True, False, False], [True, True, False, False]]


def test_top_k_overlap_by_hand():
    x = torch.tensor([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    y = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 1.0, 3.0, 2.0], [9.0, 9.0, 9.0, 9.0]])
    mask = torch.tensor([[True] * 4, [True] * 4, [True, False, False, False]])
    assert top_k_overlap(x, y, mask, k=2).tolist() == [0.0, 0.5, 1.0]  # row 3: one token


def test_precision_at_k_by_hand():
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.5], [0.1, 0.2, 0.3, 0.4], [0.5, 0.4, 0.3, 0.2]])
    rationale = torch.tensor([[1, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]])
    # k = number of rationale tokens: row 1 top-2 {0, 1} holds one of {0, 3}.
    assert precision_at_k(scores, rationale)[:2].tolist() == [0.5, 1.0]
    assert precision_at_k(scores, rationale)[2].isnan()  # nothing to find
    assert precision_at_k(scores, rationale, k=3).tolist() == pytest.approx([2 / 3, 1 / 3, 0.0])


def test_auprc_matches_sklearn_and_is_nan_without_rationale():
    x, _, mask = _ragged()
    rationale = (torch.arange(9) % 3 == 0).long().expand(4, 9).clone()
    rationale[2] = 0  # row 2 (3 tokens) now has no rationale token
    result = auprc(x, rationale, mask)
    for row in (0, 1, 3):
        n = int(mask[row].sum())
        expected = average_precision_score(rationale[row, :n], x[row, :n])
        assert result[row].item() == pytest.approx(expected)
    assert result[2].isnan()
    perfect = auprc(rationale[:1].float(), rationale[:1])
    assert perfect.item() == 1.0


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(InvalidInputError, match="batch, tokens"):
        kendall_tau(torch.zeros(2, 3), torch.zeros(2, 4))


@pytest.fixture(scope="module")
def classic():
    torch.manual_seed(0)
    model = ClassicModel(ClassicConfig(vocab_size=40, embed_dim=8, hidden_size=8)).eval()
    sequences = [[2, *range(4, 14), 3], [2, 20, 21, 22, 23, 3]]  # 10 and 4 content tokens
    return model, sequences, collate(sequences)


def _probability(model, ids: list[int], label: int) -> float:
    with torch.no_grad():
        logits = model.forward_batch(collate([ids]))
    return model.probabilities(logits)[0, label].item()


def test_comprehensiveness_and_sufficiency_by_direct_deletion(classic):
    model, sequences, batch = classic
    scores = torch.rand(batch.content_mask.shape, generator=torch.Generator().manual_seed(1))
    percents = (10, 50)
    compr = comprehensiveness(model, batch, scores, percents)
    suff = sufficiency(model, batch, scores, percents)
    assert compr.shape == suff.shape == (2, 2)
    for row, ids in enumerate(sequences):
        content = ids[1:-1]
        ranked = scores[row, 1 : 1 + len(content)].argsort(descending=True).tolist()
        label = int(torch.tensor([_probability(model, ids, c) for c in range(2)]).argmax())
        full = _probability(model, ids, label)
        for column, percent in enumerate(percents):
            top = set(ranked[: math.ceil(percent * len(content) / 100)])
            without = [2, *(t for i, t in enumerate(content) if i not in top), 3]
            alone = [2, *(t for i, t in enumerate(content) if i in top), 3]
            assert compr[row, column].item() == pytest.approx(
                full - _probability(model, without, label), abs=1e-6
            )
            assert suff[row, column].item() == pytest.approx(
                full - _probability(model, alone, label), abs=1e-6
            )
    assert torch.allclose(aopc(compr), compr.mean(-1))


@pytest.mark.parametrize(
    ("measure", "alone"),
    [(AOPCComprehensiveness, comprehensiveness), (AOPCSufficiency, sufficiency)],
)
def test_eraser_measures_of_many_methods_equal_each_alone_and_run_shared_variants_once(
    classic, monkeypatch, measure, alone
):
    model, _, batch = classic
    generator = torch.Generator().manual_seed(3)
    first = torch.rand(batch.content_mask.shape, generator=generator)
    other = torch.rand(batch.content_mask.shape, generator=generator)
    scores = {"first": first, "same ranking": 2 * first, "other": other}
    percents = (10, 50)
    forwarded: list[int] = []
    plain = model.forward_batch
    monkeypatch.setattr(model, "forward_batch", lambda b: forwarded.append(len(b)) or plain(b))
    together = measure(percents).many(model, batch, scores)
    shared = sum(forwarded)
    forwarded.clear()
    for name, values in scores.items():
        expected = aopc(alone(model, batch, values, percents)).double()
        torch.testing.assert_close(together[name], expected, atol=1e-6, rtol=0)
    # alone: 3 methods x (2 full rows + 4 variants); together: the 2 full rows once, and
    # "same ranking" adds no variant to "first"'s
    assert sum(forwarded) == 3 * (2 + 4)
    assert shared <= 2 + 2 * 4
    assert measure(percents).many(model, batch, {}) == {}


def test_removing_every_content_token_of_a_classic_model_is_nan(classic):
    model, _, _ = classic
    batch = collate([[2, 5, 3], [2, 6, 7, 8, 9, 3]])
    scores = torch.ones(batch.content_mask.shape)
    values = comprehensiveness(model, batch, scores, (50,))
    assert values[0].isnan().all() and not values[1].isnan().any()
    assert decision_flip(model, batch, scores)[0].isnan()


def test_decision_flip_by_direct_deletion(classic):
    model, sequences, batch = classic
    scores = torch.rand(batch.content_mask.shape, generator=torch.Generator().manual_seed(2))
    for k in (1, 3):
        flips = decision_flip(model, batch, scores, k=k)
        for row, ids in enumerate(sequences):
            content = ids[1:-1]
            top = set(scores[row, 1 : 1 + len(content)].argsort(descending=True)[:k].tolist())
            kept = [2, *(t for i, t in enumerate(content) if i not in top), 3]
            before = _probability(model, ids, 1) > 0.5
            after = _probability(model, kept, 1) > 0.5
            assert flips[row].item() == float(before != after)


def test_faithfulness_rejects_scores_of_another_shape(classic):
    model, _, batch = classic
    with pytest.raises(InvalidInputError, match="scores must be"):
        comprehensiveness(model, batch, torch.zeros(2, 3))
    with pytest.raises(InvalidInputError, match="percents"):
        sufficiency(model, batch, torch.zeros(batch.content_mask.shape), (0,))
