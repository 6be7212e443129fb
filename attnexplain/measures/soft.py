"""Soft comprehensiveness and sufficiency (Zhao & Aletras 2023): instead of deleting a
rationale, keep a share of each token's input embedding given by its normalised score, so
the model sees a graded input rather than one with holes.

    weights   w_t = max(s_t, 0) / max_u max(s_u, 0)    over the content tokens (in [0, 1])
    soft sufficiency        p(x) - p(x with e_t scaled by w_t)
    soft comprehensiveness  p(x) - p(x with e_t scaled by 1 - w_t)

with p the probability of the class predicted on x. Negative scores count as 0 (a token
that speaks against the class is not part of the rationale, as in ERASER's top-k).
A weight of exactly 0 deletes the token as hard erasure does
(:func:`~attnexplain.attribution.erasure.erase`: the sequence closes up), so on 0/1 scores
the soft measures equal the hard ones for the rationale of the 1s; a zero embedding would
not be the same input (a classic model's attention still weighs it). Any positive weight
keeps the token, its embedding scaled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attnexplain.attribution.adapter import Model, input_forward, output_distribution, pad_id
from attnexplain.attribution.erasure import closing_order, erase
from attnexplain.data.batching import Batch
from attnexplain.errors import InvalidInputError
from attnexplain.measures.measure import Explainer


def soft_weights(scores: torch.Tensor, content_mask: torch.Tensor) -> torch.Tensor:
    """[batch, tokens] -> [batch, tokens] in [0, 1]: the positive part of the scores over
    each row's largest, 0 outside ``content_mask`` and in a row with no positive score."""
    positive = scores.clamp_min(0).masked_fill(~content_mask, 0)
    largest = positive.amax(-1, keepdim=True)
    return torch.where(largest > 0, positive / largest.clamp_min(torch.finfo(scores.dtype).tiny), 0)


@torch.no_grad()
def scaled_probabilities(model: Model, batch: Batch, weights: torch.Tensor) -> torch.Tensor:
    """Class probabilities [batch, num_classes] of ``batch`` with each content token's input
    embedding scaled by ``weights`` [batch, tokens] (in [0, 1]); a token of weight 0 is
    deleted (module docstring). A classic model left with no content token gives NaN, as
    under hard erasure."""
    if batch.pixels is not None:
        raise InvalidInputError(
            "soft erasure scales word embeddings and has no image form here: measure images "
            "with comprehensiveness / sufficiency"
        )
    rows = torch.arange(len(batch), device=weights.device)
    keep = weights > 0
    erased = erase(batch, rows, keep, pad_id(model))
    order, inside = closing_order(batch, rows, keep)
    kept_weights = weights.gather(1, order).masked_fill(~inside, 0)
    forward = input_forward(model, erased)
    content, trailing = forward.inputs(erased)
    return forward(content * kept_weights.unsqueeze(-1).to(content.dtype), *trailing)


def _soft_change(model: Model, batch: Batch, weights: torch.Tensor) -> torch.Tensor:
    """p(x) - p(x scaled by ``weights``) for the class predicted on x: [batch] float64."""
    full = output_distribution(model, batch)
    predicted = full.argmax(-1, keepdim=True)
    scaled = scaled_probabilities(model, batch, weights)
    return (full.gather(-1, predicted) - scaled.gather(-1, predicted)).squeeze(-1).double()


def _checked_weights(batch: Batch, scores: torch.Tensor) -> torch.Tensor:
    if scores.shape != batch.content_mask.shape:
        raise InvalidInputError(
            f"scores must be [batch, tokens] = {tuple(batch.content_mask.shape)} like the "
            f"batch, got {tuple(scores.shape)}"
        )
    return soft_weights(scores.float(), batch.content_mask)


@dataclass(frozen=True)
class SoftComprehensiveness:
    """p(x) - p(x with each token's embedding scaled by 1 - w_t) (module docstring).
    Higher is more faithful."""

    def __call__(
        self, model: Model, batch: Batch, scores: torch.Tensor, explain: Explainer
    ) -> torch.Tensor:
        """scores [batch, tokens] -> [batch] float64."""
        weights = _checked_weights(batch, scores)
        return _soft_change(model, batch, torch.where(batch.content_mask, 1 - weights, 0))


@dataclass(frozen=True)
class SoftSufficiency:
    """p(x) - p(x with each token's embedding scaled by w_t) (module docstring). Lower is
    more faithful."""

    def __call__(
        self, model: Model, batch: Batch, scores: torch.Tensor, explain: Explainer
    ) -> torch.Tensor:
        """scores [batch, tokens] -> [batch] float64."""
        return _soft_change(model, batch, _checked_weights(batch, scores))
