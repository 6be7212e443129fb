"""Metrics on token scores and distributions: plain functions on tensors, batch first, with a
content mask.

    distances       tvd, kl, jsd                      [..., tokens] -> [...]
    correlations    kendall_tau, spearman             [batch, tokens] -> Correlation of [batch]
    similarity      rank_ssim                         [batch, tokens] -> [batch]
    agreement       top_k_overlap                     [batch, tokens] -> [batch]
    plausibility    precision_at_k, auprc             scores vs a 0/1 rationale -> [batch]
    summaries       nan_summary                       [n] -> NanSummary

``mask`` is bool, True at the positions that count (content tokens); None counts every
position. Positions outside the mask never contribute.

NaN is how a metric says "undefined for this instance", and it is never dropped here:
Kendall's tau and Spearman's rho of a constant score vector (or of fewer than two tokens),
AUPRC and precision@k of an instance without rationale tokens, and any per-instance metric of
an instance whose scores hold a NaN. Average with :func:`nan_summary`, which reports the
NaN-free mean next to how many instances were undefined (J&W report nanmean and the count).

Faithfulness (ERASER comprehensiveness / sufficiency, decision flip) needs the model and lives
in :mod:`attnexplain.faithfulness`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from sklearn.metrics import average_precision_score

from attnexplain.device import to_numpy
from attnexplain.errors import InvalidInputError


def _masked(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return values if mask is None else values.masked_fill(~mask, 0.0)


def tvd(p: torch.Tensor, q: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Total variation distance 1/2 sum_i |p_i - q_i| over the last dimension.

    p, q: [..., n] distributions; mask: broadcastable bool, True at the entries that count.
    Returns [...]. For a binary output distribution it equals |p_1 - q_1|.
    """
    return 0.5 * _masked((p - q).abs(), mask).sum(-1)


def kl(p: torch.Tensor, q: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Kullback-Leibler divergence KL(p || q) = sum_i p_i ln(p_i / q_i), natural log.

    p, q: [..., n]; returns [...]. Terms with p_i = 0 are 0; a q_i = 0 where p_i > 0 gives inf.
    Differentiable where it is finite: zero entries (masked attention) pass zero gradients
    instead of the 0 * log(0) = NaN that ``xlogy`` would send back to an optimiser.
    """
    tiny = torch.finfo(p.dtype).tiny
    log_ratio = torch.log(p.clamp_min(tiny)) - torch.log(q.clamp_min(tiny))
    # inf only where it is real (p > 0, q = 0): elsewhere a finite value, so that the zero
    # gradient torch.where sends to unselected entries does not become 0 * inf = NaN.
    log_ratio = torch.where((q > 0) | (p <= 0), log_ratio, torch.inf)
    terms = torch.where(p > 0, p * log_ratio, torch.zeros_like(p))
    return _masked(terms, mask).sum(-1)


class _XLogX(torch.autograd.Function):
    """p ln p elementwise, 0 at p = 0, with the derivative ln p + 1 (finite at p = 0).

    The log is taken of p + tiny (the smallest normal float, which leaves every p above ~1e-30
    unchanged), so 0 * ln 0 never sends NaN to an optimiser through masked (zero) attention.
    The backward pass reuses the forward's log: two elementwise ops where autograd through
    ``p * log(p + tiny)`` needs four, which matters in search loops that take it every step.
    (``addcmul(grad, grad, log_p)`` would be one op, but the incoming gradient is broadcast
    from a sum and addcmul on a broadcast input runs about 2x slower than these two.)
    """

    @staticmethod
    def forward(ctx, p: torch.Tensor) -> torch.Tensor:
        log_p = torch.log(p + torch.finfo(p.dtype).tiny)
        ctx.save_for_backward(log_p)
        return p * log_p

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (log_p,) = ctx.saved_tensors
        return grad * (log_p + 1.0)


def entropy(p: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Shannon entropy -sum_i p_i ln p_i over the last dimension; p: [..., n] -> [...].

    Zero entries contribute 0 and a finite gradient (see :class:`_XLogX`)."""
    return -_masked(_XLogX.apply(p), mask).sum(-1)


def jsd(
    p: torch.Tensor,
    q: torch.Tensor,
    mask: torch.Tensor | None = None,
    entropies: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Jensen-Shannon divergence 1/2 KL(p || m) + 1/2 KL(q || m), m = (p + q) / 2, natural log:
    0 for equal distributions, at most ln 2 = 0.693 for disjoint supports.

    p, q: [..., n], broadcastable; returns [...]. Computed as H(m) - (H(p) + H(q)) / 2, which
    is the same quantity; only H(m) needs the broadcast shape, so all-pairs JSD of K
    candidates ([K, 1, n] vs [1, K, n]) costs one [K, K, n] entropy instead of two KLs.
    ``entropies`` = (H(p), H(q)) [...] (under the same mask) when the caller has them already,
    as an optimiser comparing K candidates with each other and with a target does each step;
    p and q must then be distributions (each sums to 1 under the mask), which spares a pass.
    """
    mixture = p + q
    if entropies is None:
        entropy_p, entropy_q = entropy(p, mask), entropy(q, mask)
        total = _masked(mixture, mask).sum(-1)
    else:
        (entropy_p, entropy_q), total = entropies, 2.0
    # H(s / 2) = (H(s) + ln 2 * sum(s)) / 2 for s = p + q: no separate halving pass
    halved_entropy = entropy(mixture, mask) + math.log(2) * total
    return 0.5 * (halved_entropy - entropy_p - entropy_q)


@dataclass
class Correlation:
    """Per-instance rank correlation: ``statistic`` and two-sided ``pvalue``, both [batch]
    float64, NaN where undefined (constant scores, fewer than two tokens, NaN scores)."""

    statistic: torch.Tensor
    pvalue: torch.Tensor


def _rows(values: torch.Tensor, mask: torch.Tensor | None) -> list[np.ndarray]:
    """[batch, tokens] -> one float64 array per row, of its masked entries."""
    array = to_numpy(values.double())
    if mask is None:
        return list(array)
    keep = to_numpy(mask.detach())
    return [row[k] for row, k in zip(array, keep, strict=True)]


def _check_pair(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> None:
    if x.dim() != 2 or x.shape != y.shape or (mask is not None and mask.shape != x.shape):
        shapes = [tuple(t.shape) for t in (x, y) + (() if mask is None else (mask,))]
        raise InvalidInputError(
            f"expected two score tensors [batch, tokens] and a mask of the same shape, "
            f"got shapes {shapes}"
        )


def _undefined(*rows: np.ndarray) -> bool:
    """A rank statistic is undefined for < 2 entries, NaN entries or a constant vector."""
    return any(len(r) < 2 or not np.isfinite(r).all() or np.ptp(r) == 0 for r in rows)


def _correlation(
    test: Callable[[np.ndarray, np.ndarray], tuple[float, float]],
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor | None,
) -> Correlation:
    _check_pair(x, y, mask)
    results = [
        (np.nan, np.nan) if _undefined(a, b) else test(a, b)
        for a, b in zip(_rows(x, mask), _rows(y, mask), strict=True)
    ]
    values = torch.tensor(results, dtype=torch.float64).reshape(len(results), 2)
    return Correlation(values[:, 0], values[:, 1])


def kendall_tau(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> Correlation:
    """Kendall's tau-b with its p-value, per instance, over the masked tokens
    (``scipy.stats.kendalltau``, as J&W use it on the full content-token lists).

    x, y: [batch, tokens]; mask: [batch, tokens] bool. NaN where undefined (module docstring).
    """
    return _correlation(lambda a, b: tuple(stats.kendalltau(a, b)), x, y, mask)


def spearman(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> Correlation:
    """Spearman's rho with its p-value, per instance (``scipy.stats.spearmanr``).

    x, y: [batch, tokens]; mask: [batch, tokens] bool. NaN where undefined (module docstring).
    """
    return _correlation(lambda a, b: tuple(stats.spearmanr(a, b)), x, y, mask)


SSIM_WINDOW = 5
_SSIM_C1, _SSIM_C2 = 0.01**2, 0.03**2  # SSIM's constants for data in [0, 1]


def _window_ssim(a: np.ndarray, b: np.ndarray, window: int) -> float:
    """Mean SSIM (Wang et al. 2004) of two [n] vectors in [0, 1] over sliding windows of
    ``window`` entries (one window of all n when n is shorter), uniform weights."""
    width = min(window, len(a))
    x = np.lib.stride_tricks.sliding_window_view(a, width)
    y = np.lib.stride_tricks.sliding_window_view(b, width)
    mean_x, mean_y = x.mean(1), y.mean(1)
    var_x, var_y = x.var(1), y.var(1)
    covariance = ((x - mean_x[:, None]) * (y - mean_y[:, None])).mean(1)
    numerator = (2 * mean_x * mean_y + _SSIM_C1) * (2 * covariance + _SSIM_C2)
    denominator = (mean_x**2 + mean_y**2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    return float((numerator / denominator).mean())


def rank_ssim(
    x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None, window: int = SSIM_WINDOW
) -> torch.Tensor:
    """SSIM of the two rankings, per instance: each row's masked entries are ranked (ties
    share their mean rank), scaled to [0, 1], and compared by SSIM over sliding windows of
    ``window`` tokens in text order. Adebayo et al. (2018) compare saliency maps by SSIM;
    on ranks it asks whether the same stretches of the text stay important, where Spearman
    asks only about the global order. 1 for equal rankings.

    x, y: [batch, tokens]; mask: [batch, tokens] bool. Returns [batch] float64, NaN where
    Spearman's rho is (module docstring).
    """
    _check_pair(x, y, mask)
    if window < 1:
        raise InvalidInputError(f"window must be >= 1, got {window}")

    def scaled_ranks(row: np.ndarray) -> np.ndarray:
        return (stats.rankdata(row) - 1) / (len(row) - 1)

    values = [
        np.nan if _undefined(a, b) else _window_ssim(scaled_ranks(a), scaled_ranks(b), window)
        for a, b in zip(_rows(x, mask), _rows(y, mask), strict=True)
    ]
    return torch.tensor(values, dtype=torch.float64)


def _content(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return torch.ones_like(scores, dtype=torch.bool) if mask is None else mask


def top_k_mask(
    scores: torch.Tensor, mask: torch.Tensor | None, k: int | torch.Tensor
) -> torch.Tensor:
    """The ``k`` highest-scoring masked tokens of each row.

    scores: [batch, tokens]; mask: [batch, tokens] bool; k: an int or [batch] ints (capped at
    each row's number of masked tokens). Returns [batch, tokens] bool. Ties go to the earlier
    position, so the choice is deterministic.
    """
    allowed = _content(scores, mask)
    order = scores.masked_fill(~allowed, float("-inf")).argsort(
        dim=-1, descending=True, stable=True
    )
    rank = torch.empty_like(order).scatter_(
        -1, order, torch.arange(scores.shape[-1], device=scores.device).expand_as(order)
    )
    k = torch.as_tensor(k, device=scores.device).reshape(-1, 1)
    return (rank < k) & allowed


def _fraction(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator as float64, NaN where the denominator is 0."""
    denominator = denominator.double()
    return torch.where(denominator > 0, numerator.double() / denominator.clamp(min=1), np.nan)


def top_k_overlap(
    x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None, k: int = 5
) -> torch.Tensor:
    """Share of the top-``k`` tokens by ``x`` that are also in the top-``k`` by ``y``.

    x, y: [batch, tokens]; mask: [batch, tokens] bool. k is capped at each row's number of
    tokens (a row with at most k tokens scores 1). Returns [batch] float64, NaN for a row with
    no tokens or NaN scores.
    """
    _check_pair(x, y, mask)
    if k < 1:
        raise InvalidInputError(f"k must be >= 1, got {k}")
    allowed = _content(x, mask)
    shared = (top_k_mask(x, allowed, k) & top_k_mask(y, allowed, k)).sum(-1)
    overlap = _fraction(shared, allowed.sum(-1).clamp(max=k))
    return overlap.masked_fill(_has_nan(x, allowed) | _has_nan(y, allowed), np.nan)


def _has_nan(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (scores.isnan() & mask).any(-1)


def precision_at_k(
    scores: torch.Tensor,
    rationale: torch.Tensor,
    mask: torch.Tensor | None = None,
    k: int | None = None,
) -> torch.Tensor:
    """Share of the ``k`` top-scoring tokens that are rationale tokens.

    scores: [batch, tokens]; rationale: [batch, tokens], 1 / True at ground-truth tokens;
    mask: [batch, tokens] bool. ``k`` None uses each row's number of rationale tokens
    (R-precision); an int is capped at the row's number of tokens. Returns [batch] float64,
    NaN for a row with k = 0 (no rationale tokens when k is None) or NaN scores.
    """
    _check_pair(scores, rationale.to(scores.dtype), mask)
    allowed = _content(scores, mask)
    relevant = rationale.bool() & allowed
    per_row = relevant.sum(-1) if k is None else allowed.sum(-1).clamp(max=k)
    hits = (top_k_mask(scores, allowed, per_row) & relevant).sum(-1)
    return _fraction(hits, per_row).masked_fill(_has_nan(scores, allowed), np.nan)


def auprc(
    scores: torch.Tensor, rationale: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Area under the precision-recall curve of the scores as a detector of rationale tokens
    (``sklearn.metrics.average_precision_score``), per instance.

    scores: [batch, tokens]; rationale: [batch, tokens] 0/1; mask: [batch, tokens] bool.
    Returns [batch] float64, NaN for a row without rationale tokens or with NaN scores.
    A random ranking scores about the share of rationale tokens in the row.
    """
    _check_pair(scores, rationale.to(scores.dtype), mask)
    values = [
        np.nan
        if not truth.any() or not np.isfinite(row).all()
        else average_precision_score(truth, row)
        for row, truth in zip(_rows(scores, mask), _rows(rationale, mask), strict=True)
    ]
    return torch.tensor(values, dtype=torch.float64)


@dataclass
class NanSummary:
    """Mean and standard deviation (ddof 0) over the defined values, how many were defined
    (``count``) and how many were NaN (``nan``)."""

    mean: float
    std: float
    count: int
    nan: int

    def __str__(self) -> str:
        undefined = f", {self.nan} NaN" if self.nan else ""
        return f"{self.mean:.3f} +- {self.std:.3f} (n={self.count}{undefined})"


def nan_summary(values: torch.Tensor | np.ndarray) -> NanSummary:
    """Summarise per-instance values [n] without hiding the undefined ones."""
    array = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values)
    array = array.astype(np.float64).ravel()
    defined = array[~np.isnan(array)]
    if defined.size == 0:
        return NanSummary(np.nan, np.nan, 0, int(array.size))
    return NanSummary(
        float(defined.mean()),
        float(defined.std()),
        int(defined.size),
        int(array.size - defined.size),
    )
