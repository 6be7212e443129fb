"""What a faithfulness measure is: one call that every measure answers,

    measure(model, batch, scores, explain) -> [batch] float64

built beforehand with its hyperparameters (Quantus' pattern), so a table of measures is a
loop. ``scores`` [batch, tokens] are one method's token scores for ``batch``; ``explain``
re-scores with the same method, for measures that change the model or the input and ask
how the explanation follows (sanity checks, sensitivity). Measures that read the scores
alone ignore it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import torch

from attnexplain.attribution import attribute, get_method
from attnexplain.attribution.adapter import Model
from attnexplain.data.batching import Batch
from attnexplain.errors import AttnExplainError

Explainer = Callable[[Model, Batch], torch.Tensor]
"""``explain(model, batch) -> scores [batch, tokens]``: one method, on any model, for the
measured batch or one whose rows are its rows each repeated k times in turn (as Captum
expands inputs: ``rows.repeat_interleave(k)``)."""


class Measure(Protocol):
    """A faithfulness measure, built with its hyperparameters. A measure that can share work
    between several methods' scores on one batch (ERASER: a deletion that two methods make
    runs once) also has ``many(model, batch, scores_by_method) -> {method: [batch]}``."""

    def __call__(
        self, model: Model, batch: Batch, scores: torch.Tensor, explain: Explainer
    ) -> torch.Tensor: ...


def measure_methods(
    measure: Measure,
    model: Model,
    batch: Batch,
    scores: Mapping[str, torch.Tensor],
    explainers: Mapping[str, Explainer],
) -> dict[str, torch.Tensor | AttnExplainError]:
    """``measure`` of each method's ``scores`` [batch, tokens] on ``batch``: ``{method:
    [batch] float64}``, or the error with which the measure refused the method. Through
    ``measure.many`` where the measure has it (one pass for every method)."""
    if hasattr(measure, "many"):
        return dict(measure.many(model, batch, scores))
    measured: dict[str, torch.Tensor | AttnExplainError] = {}
    for method, values in scores.items():
        try:
            measured[method] = measure(model, batch, values, explainers[method])
        except AttnExplainError as error:  # a measure this method cannot take
            measured[method] = error
    return measured


def method_explainer(method: str, target: torch.Tensor | None = None) -> Explainer:
    """The registered attribution ``method`` as an :data:`Explainer`.

    target : LongTensor [batch] or None
        The class explained by methods that explain one (gradient and Captum methods), held
        fixed whatever model or input the measure hands over, so that a changed explanation
        is the method's doing and not a changed target; None: each model's own prediction.
    """
    fixed = target if get_method(method).uses_target else None

    def explain(model: Model, batch: Batch) -> torch.Tensor:
        rows = fixed if fixed is None else fixed.repeat_interleave(len(batch) // len(fixed))
        return attribute(model, batch, method, target=rows).scores

    return explain
