"""Faithfulness measures by name, like attribution methods: what the league, the audit and
the report list, and what a plan's ``measures: [...]`` names."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from attnexplain.errors import InvalidInputError, UnknownNameError
from attnexplain.measures import eraser, soft
from attnexplain.measures.measure import Measure


@dataclass(frozen=True)
class MeasureSpec:
    """A registered measure: ``build(**hyperparameters) -> Measure`` (a dataclass whose
    fields are the hyperparameters), whether a ``higher`` value is the more faithful, and
    one line on what it measures."""

    name: str
    build: Callable[..., Measure]
    higher_is_better: bool
    description: str

    @property
    def hyperparameters(self) -> dict[str, object]:
        """The measure's hyperparameters and their defaults."""
        return {field.name: field.default for field in dataclasses.fields(self.build)}


MEASURES: dict[str, MeasureSpec] = {
    spec.name: spec
    for spec in [
        MeasureSpec(
            "comprehensiveness",
            eraser.AOPCComprehensiveness,
            True,
            "ERASER AOPC: output drop when the top tokens are deleted",
        ),
        MeasureSpec(
            "sufficiency",
            eraser.AOPCSufficiency,
            False,
            "ERASER AOPC: output drop when only the top tokens are kept",
        ),
        MeasureSpec(
            "soft-comprehensiveness",
            soft.SoftComprehensiveness,
            True,
            "Zhao & Aletras: output drop when embeddings are scaled by 1 - the scores",
        ),
        MeasureSpec(
            "soft-sufficiency",
            soft.SoftSufficiency,
            False,
            "Zhao & Aletras: output drop when embeddings are scaled by the scores",
        ),
    ]
}


def list_measures() -> list[str]:
    """Names of the registered faithfulness measures."""
    return list(MEASURES)


def get_measure(name: str) -> MeasureSpec:
    """The measure registered as ``name``; :class:`UnknownNameError` lists the known ones."""
    if name not in MEASURES:
        raise UnknownNameError(
            f"unknown faithfulness measure {name!r}; choose one of {', '.join(MEASURES)}"
        )
    return MEASURES[name]


def build_measure(name: str, **hyperparameters: object) -> Measure:
    """The measure ``name`` built with ``hyperparameters`` (the rest at their defaults).

    Example
    -------
    >>> measure = build_measure("comprehensiveness", percents=(10, 50))
    >>> measure(model, batch, scores, method_explainer("jw-gradient"))   # [batch]
    """
    spec = get_measure(name)
    unknown = sorted(set(hyperparameters) - set(spec.hyperparameters))
    if unknown:
        takes = ", ".join(spec.hyperparameters) or "no hyperparameters"
        raise InvalidInputError(f"measure {name!r} takes {takes}; got {', '.join(unknown)}")
    return spec.build(**hyperparameters)
