"""ERASER's comprehensiveness and sufficiency (:mod:`attnexplain.faithfulness`) as
measures: the AOPC over the bins, per instance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from attnexplain.attribution.adapter import Model
from attnexplain.data.batching import Batch
from attnexplain.faithfulness import (
    ERASER_PERCENTS,
    aopc,
    comprehensiveness,
    sufficiency,
    top_percent_changes,
)
from attnexplain.measures.measure import Explainer


@dataclass(frozen=True)
class AOPCComprehensiveness:
    """AOPC of :func:`~attnexplain.faithfulness.comprehensiveness` over ``percents``:
    p(x) - p(x without its top tokens), deleted. Higher is more faithful."""

    percents: Sequence[int] = ERASER_PERCENTS
    fast: bool = True

    def __call__(
        self, model: Model, batch: Batch, scores: torch.Tensor, explain: Explainer
    ) -> torch.Tensor:
        """[batch] float64; NaN where a bin deletes every content token of a classic model."""
        return aopc(comprehensiveness(model, batch, scores, self.percents, self.fast)).double()

    def many(
        self, model: Model, batch: Batch, scores: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Every method's AOPC from one full pass and one pass per distinct deletion."""
        return _many(model, batch, scores, False, self.percents, self.fast)


@dataclass(frozen=True)
class AOPCSufficiency:
    """AOPC of :func:`~attnexplain.faithfulness.sufficiency` over ``percents``: p(x) -
    p(only the top tokens). Lower is more faithful."""

    percents: Sequence[int] = ERASER_PERCENTS
    fast: bool = True

    def __call__(
        self, model: Model, batch: Batch, scores: torch.Tensor, explain: Explainer
    ) -> torch.Tensor:
        """[batch] float64."""
        return aopc(sufficiency(model, batch, scores, self.percents, self.fast)).double()

    def many(
        self, model: Model, batch: Batch, scores: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Every method's AOPC from one full pass and one pass per distinct variant."""
        return _many(model, batch, scores, True, self.percents, self.fast)


def _many(
    model: Model,
    batch: Batch,
    scores: Mapping[str, torch.Tensor],
    keep_top: bool,
    percents: Sequence[int],
    fast: bool,
) -> dict[str, torch.Tensor]:
    """AOPC [batch] float64 per method of ``scores``, the variants shared between methods
    (:func:`~attnexplain.faithfulness.top_percent_changes`)."""
    requests = [(values, keep_top) for values in scores.values()]
    changes = top_percent_changes(model, batch, requests, percents, fast)
    return {name: aopc(change).double() for name, change in zip(scores, changes, strict=True)}
