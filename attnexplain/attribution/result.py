"""What every attribution method returns, and what :func:`attribute` hands to the user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd
import torch

FRAME_COLUMNS = ["instance", "position", "token", "method", "score"]


class MethodOutput(NamedTuple):
    """A method's raw result: ``scores`` [batch, tokens] and, for Captum methods that define
    one (integrated gradients, DeepLift, GradientSHAP), the ``convergence_delta`` [batch]:
    sum of the attributions minus (output at input - output at baseline)."""

    scores: torch.Tensor
    convergence_delta: torch.Tensor | None = None


@dataclass
class Attribution:
    """Token scores of one method for one batch.

    Attributes
    ----------
    scores : FloatTensor [batch, tokens]
        One score per token position; exactly 0 outside the content mask. Attention-derived
        scores, the J&W gradient and leave-one-out are magnitudes (>= 0); gradient-family and
        Captum scores are signed (positive: supports the explained class).
    content_mask : BoolTensor [batch, tokens]
        True at content tokens (not SOS/EOS/[CLS]/[SEP]/PAD).
    tokens : list[list[str]]
        Per row, the token string at every position up to the row's length (specials included),
        aligned with ``scores``.
    method : str
        The registry name of the method.
    convergence_delta : FloatTensor [batch] or None
        Captum's completeness error, for methods that report one.
    """

    scores: torch.Tensor
    content_mask: torch.Tensor
    tokens: list[list[str]]
    method: str
    convergence_delta: torch.Tensor | None = None

    def to_frame(self, first_instance: int = 0) -> pd.DataFrame:
        """One row per content token: instance (row number + ``first_instance``), position
        (0-based among the row's content tokens), token, method, score."""
        rows = [
            (first_instance + b, position, self.tokens[b][t], self.method, float(self.scores[b, t]))
            for b in range(self.scores.shape[0])
            for position, t in enumerate(self.content_mask[b].nonzero().flatten().tolist())
        ]
        return pd.DataFrame(rows, columns=FRAME_COLUMNS)
