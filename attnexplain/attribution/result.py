"""What every attribution method returns, and what :func:`attribute` hands to the user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import pandas as pd
import torch

if TYPE_CHECKING:
    from attnexplain.report.heatmaps import TokenHeatmap

FRAME_COLUMNS = ["instance", "position", "token", "method", "score"]
# rows of an Attribution its repr lists, and tokens per row
REPR_ROWS, REPR_TOKENS = 3, 3


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

    In a notebook it shows itself as the report's token heatmaps (``_repr_html_``, or
    ``.show()``); ``repr`` lists each row's highest-scoring tokens; ``.to_frame()`` gives the
    tidy table.
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

    def content(self, row: int) -> tuple[list[str], list[float]]:
        """Row ``row``'s content tokens and their scores, in text order."""
        positions = self.content_mask[row].nonzero().flatten().tolist()
        return [self.tokens[row][t] for t in positions], self.scores[row, positions].tolist()

    def heatmaps(self) -> list[TokenHeatmap]:
        """A heatmap per row, its content tokens coloured by score relative to the row's
        largest |score|: what the report draws (:mod:`attnexplain.report.heatmaps`)."""
        from attnexplain.report.heatmaps import TokenHeatmap, own_row

        return [
            TokenHeatmap(f"Instance {row}", tokens, [own_row(self.method, scores)])
            for row, (tokens, scores) in enumerate(map(self.content, range(len(self.tokens))))
        ]

    def _repr_html_(self) -> str:
        """The rows as the report's token heatmaps (Jupyter calls this to show the result)."""
        from attnexplain.report.notebook import render_fragment

        return render_fragment(f"{self.method}: {len(self.tokens)} instances", self.heatmaps())

    def show(self) -> None:
        """Display the heatmaps in a notebook; print the ``repr`` in a terminal."""
        from attnexplain.report.notebook import show

        show(self)

    def __repr__(self) -> str:
        """A line per row (the first few) with its highest-|score| tokens, not the tensors."""
        rows, width = self.scores.shape
        lines = [f"Attribution({self.method!r}, {rows} instances x {width} positions)"]
        for row in range(min(rows, REPR_ROWS)):
            tokens, scores = self.content(row)
            top = sorted(zip(tokens, scores, strict=True), key=lambda pair: -abs(pair[1]))
            shown = "  ".join(f"{token} {score:+.3f}" for token, score in top[:REPR_TOKENS])
            lines.append(f"  {row}: {shown}")
        if rows > REPR_ROWS:
            lines.append(f"  ... {rows - REPR_ROWS} more (.to_frame() has every score)")
        return "\n".join(lines)
