"""Faithfulness of token scores: does deleting the tokens they rank highest change the model?

ERASER (DeYoung et al. 2020), for the rationale r = the top ``b``% of an instance's content
tokens by score, with p the probability of the class predicted on the full input:
    comprehensiveness = p(x) - p(x without r)     (high: the rationale was needed)
    sufficiency       = p(x) - p(r alone)         (low: the rationale was enough)
and AOPC, their mean over the bins b in {1, 5, 10, 20, 50}. A bin keeps ceil(b% of n)
tokens, so every bin holds at least one. Decision flip (Serrano & Smith 2019): does the
predicted class change when the top k tokens are deleted?

Tokens are deleted as in leave-one-out (:mod:`attnexplain.attribution.erasure`): the
sequence closes up, special tokens stay. A classic model has no output for an input left
with no content tokens (its attention has nothing to attend to), so a metric that deletes
every content token of an instance is NaN there; :func:`attnexplain.metrics.nan_summary`
counts them.

Every metric takes ``fast`` (default True): on a classic model with the average encoder,
whose token states do not depend on their neighbours, every variant is decoded from one
encoding (:mod:`attnexplain.attribution.fast_erasure`); everything else re-runs the model on
each variant (the CNN and BiLSTM fast paths serve leave-one-out, where each instance has one
variant per token; for the few variants per instance here they cost as much as a re-run).
Both give the same numbers up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from attnexplain.attribution.adapter import Model, output_distribution
from attnexplain.attribution.erasure import erased_probabilities
from attnexplain.data.batching import Batch
from attnexplain.errors import InvalidInputError
from attnexplain.metrics import top_k_mask

ERASER_PERCENTS = (1, 5, 10, 20, 50)


def _check(batch: Batch, scores: torch.Tensor) -> None:
    if scores.shape != batch.content_mask.shape:
        raise InvalidInputError(
            f"scores must be [batch, tokens] = {tuple(batch.content_mask.shape)} like the "
            f"batch, got {tuple(scores.shape)}"
        )


def top_percent_changes(
    model: Model,
    batch: Batch,
    requests: Sequence[tuple[torch.Tensor, bool]],
    percents: Sequence[int],
    fast: bool,
) -> list[torch.Tensor]:
    """p(x) - p(variant) [batch, bins] per request ``(scores, keep_top)``: the variants keep
    only (``keep_top``) or delete the top ``percents`` of each instance's content tokens by
    ``scores`` [batch, tokens]. One full pass serves every request, and a variant that several
    requests make (two methods ranking the same tokens first) runs once."""
    for scores, _ in requests:
        _check(batch, scores)
    if not percents or any(not 0 < p <= 100 for p in percents):
        raise InvalidInputError(f"percents must lie in (0, 100], got {list(percents)}")
    if not requests:
        return []
    content = batch.content_mask
    size = content.sum(-1)
    counts = torch.stack([-(-p * size // 100) for p in percents], 1).flatten()  # ceil
    rows = torch.arange(len(batch), device=content.device).repeat_interleave(len(percents))
    keeps = []
    for scores, keep_top in requests:
        top = top_k_mask(scores[rows], content[rows], counts)
        keeps.append(top if keep_top else content[rows] & ~top)
    full = output_distribution(model, batch)
    predicted = full.argmax(-1)
    erased = erased_probabilities(
        model, batch, rows.repeat(len(requests)), torch.cat(keeps), fast=fast
    )
    chosen = erased.gather(-1, predicted[rows].repeat(len(requests)).unsqueeze(-1))
    before = full.gather(-1, predicted.unsqueeze(-1))
    return [before - part.reshape(len(batch), len(percents)) for part in chosen.split(len(rows))]


def comprehensiveness(
    model: Model,
    batch: Batch,
    scores: torch.Tensor,
    percents: Sequence[int] = ERASER_PERCENTS,
    fast: bool = True,
) -> torch.Tensor:
    """p(x) - p(x without its top-scoring tokens), per bin.

    scores: [batch, tokens] (e.g. ``attribute(...).scores``); percents: bins in percent of
    each instance's content tokens; fast: see the module docstring. Returns [batch, bins].
    """
    return top_percent_changes(model, batch, [(scores, False)], percents, fast)[0]


def sufficiency(
    model: Model,
    batch: Batch,
    scores: torch.Tensor,
    percents: Sequence[int] = ERASER_PERCENTS,
    fast: bool = True,
) -> torch.Tensor:
    """p(x) - p(only the top-scoring tokens), per bin. Arguments and shape as
    :func:`comprehensiveness`."""
    return top_percent_changes(model, batch, [(scores, True)], percents, fast)[0]


def aopc(per_bin: torch.Tensor) -> torch.Tensor:
    """Area over the perturbation curve: the mean over bins, [batch, bins] -> [batch]."""
    return per_bin.mean(-1)


def decision_flip(
    model: Model, batch: Batch, scores: torch.Tensor, k: int = 1, fast: bool = True
) -> torch.Tensor:
    """Whether deleting the ``k`` top-scoring content tokens changes the predicted class.

    scores: [batch, tokens]; fast: see the module docstring. Returns [batch] float64: 1
    flipped, 0 not, NaN where the model has no output for what is left (module docstring).
    """
    _check(batch, scores)
    if k < 1:
        raise InvalidInputError(f"k must be >= 1, got {k}")
    content = batch.content_mask
    keep = content & ~top_k_mask(scores, content, k)
    rows = torch.arange(len(batch), device=content.device)
    erased = erased_probabilities(model, batch, rows, keep, fast=fast)
    flipped = (erased.argmax(-1) != output_distribution(model, batch).argmax(-1)).double()
    return flipped.masked_fill(erased.isnan().any(-1), np.nan)
