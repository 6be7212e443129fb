"""ERASER's comprehensiveness and sufficiency (:mod:`attnexplain.faithfulness`) as
measures: the AOPC over the bins, per instance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from attnexplain.attribution.adapter import Model
from attnexplain.data.batching import Batch
from attnexplain.faithfulness import ERASER_PERCENTS, aopc, comprehensiveness, sufficiency
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
