"""Faithfulness measures by name, like attribution methods: what the league, the audit and
the report list, and what a plan's ``measures: [...]`` names."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from attnexplain.errors import InvalidInputError, UnknownNameError
from attnexplain.measures import captum_metrics, companion, eraser, randomisation, soft
from attnexplain.measures.measure import Measure


@dataclass(frozen=True)
class MeasureSpec:
    """A registered measure: ``build(**hyperparameters) -> Measure`` (a dataclass whose
    fields are the hyperparameters), whether a ``higher`` value is the more faithful, one
    line on what it measures, and ``options``: hyperparameters this name sets (one class
    registered under several names, e.g. by randomisation mode). ``companion``: None where
    the measure reads the explained model; else the model it reads instead, trained for it
    (:data:`~attnexplain.measures.companion.COMPANIONS`: the league trains it as a unit and
    passes it as the measure's ``model``)."""

    name: str
    build: Callable[..., Measure]
    higher_is_better: bool
    description: str
    options: Mapping[str, object] = field(default_factory=dict)
    companion: str | None = None

    @property
    def hyperparameters(self) -> dict[str, object]:
        """The measure's hyperparameters and their values under this name."""
        defaults = {item.name: item.default for item in dataclasses.fields(self.build)}
        return {**defaults, **self.options}


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
        MeasureSpec(
            "randomisation-cascading",
            randomisation.ModelRandomisation,
            False,
            "Adebayo et al.: Spearman of the scores before and after randomising the layers "
            "top-down (mean over the cascade)",
        ),
        MeasureSpec(
            "randomisation-cascading-ssim",
            randomisation.ModelRandomisation,
            False,
            "Adebayo et al.: rank SSIM of the scores before and after randomising the layers "
            "top-down (mean over the cascade)",
            {"similarity": "rank-ssim"},
        ),
        MeasureSpec(
            "randomisation-independent",
            randomisation.ModelRandomisation,
            False,
            "Adebayo et al.: Spearman of the scores before and after randomising one layer "
            "(mean over the layers)",
            {"mode": "independent"},
        ),
        MeasureSpec(
            "data-randomisation",
            companion.DataRandomisation,
            False,
            "Adebayo et al.: Spearman of the scores on the model and on the same recipe "
            "trained on shuffled labels",
            companion=companion.SHUFFLED_LABELS,
        ),
        MeasureSpec(
            "f-fidelity-comprehensiveness",
            companion.FFidelity,
            True,
            "F-Fidelity FFid+: output drop of the model fine-tuned on randomly cut texts when "
            "a random share of the top tokens is deleted",
            {"part": "explanation"},
            companion.RANDOM_DELETION,
        ),
        MeasureSpec(
            "f-fidelity-sufficiency",
            companion.FFidelity,
            False,
            "F-Fidelity FFid-: output drop of the model fine-tuned on randomly cut texts when "
            "a random share of the other tokens is deleted",
            {"part": "rest"},
            companion.RANDOM_DELETION,
        ),
        MeasureSpec(
            "infidelity",
            captum_metrics.Infidelity,
            False,
            "Captum infidelity: how far the scores miss the output change of random token drops",
        ),
        MeasureSpec(
            "sensitivity-max",
            captum_metrics.SensitivityMax,
            False,
            "Captum max-sensitivity: the largest change of the scores under small embedding "
            "scalings",
        ),
    ]
}


# What the league and the audit measure unless told otherwise: ERASER's pair, as the league
# always has (so that its finished units keep their keys, and a default run costs what it
# did). The soft measures cost as little, but are asked for by name, with the sanity checks
# (they re-explain under every randomised model) and Captum's metrics (under many perturbed
# inputs): a plan's ``measures: [...]``.
DEFAULT_MEASURES = ("comprehensiveness", "sufficiency")

# The sanity checks (Adebayo et al.): how much of a method's scores survives destroying what
# the model learned; a method fails one when the 95% interval of its mean similarity lies
# above SANITY_FAILS (more than half the ranking survives), fixed before any number was seen.
SANITY_CHECKS = (
    "randomisation-cascading",
    "randomisation-cascading-ssim",
    "randomisation-independent",
    "data-randomisation",
)
SANITY_FAILS = 0.5


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
    return spec.build(**{**spec.options, **hyperparameters})
