"""Experiments by name: what a plan's ``experiments: [{name, params}]`` refers to.

The contract. An experiment has three faces, and the runner and the report need nothing else:

- ``run(checkpoint, frame, params=None, progress=True) -> DataFrame``: ``checkpoint`` is a
  loaded :class:`~attnexplain.models.checkpoint.Checkpoint` (either model family), ``frame``
  a dataset split (``text``, ``label``, ``tokens``; rows in a fixed order), ``params`` the
  experiment's options (the runner passes them merged with :attr:`Experiment.defaults`).
  Returns one row per instance with an ``instance`` column (the row's position in ``frame``)
  and only columns parquet can store. It must be deterministic for a given checkpoint, frame
  and params: the runner caches results by exactly these inputs.
- ``summary(df) -> DataFrame``: a small table of the per-instance frame (a few rows).
- ``figure(df) -> matplotlib.figure.Figure``.

An experiment that compares its model with other work (a sibling trained another way, another
experiment's results) declares ``needs(params, setting) -> {role: need}`` (see
:mod:`.needs`); the runner makes each need a unit of its own, finished first, and calls
``run(checkpoint, frame, params, progress, context)`` with a :class:`~.needs.RunContext` that
reads them. ``validate(params)`` checks values beyond their types (an empty grid, a negative
weight) and raises :class:`InvalidInputError` saying what is wrong.

Registering: add one :class:`Experiment` to :data:`EXPERIMENTS` below (a plain dict, like the
attribution registry, so the full list is readable in one place). ``defaults`` names every
parameter a plan may set, with its default; a plan that sets another one, or one of the
wrong type, is rejected before anything runs. The Jain & Wallace experiments are
registered as ``jain_wallace.correlation``, ``jain_wallace.permutation`` and
``jain_wallace.adversarial``; Serrano & Smith's as ``serrano_smith.zero_top`` and
``serrano_smith.flip_fraction``; the league table of explanation methods as
``league.methods``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import pandas as pd

from attnexplain.errors import InvalidInputError, UnknownNameError
from attnexplain.experiments import (
    jain_wallace,
    league,
    predictions,
    roar,
    serrano_smith,
    wiegreffe_pinter,
)
from attnexplain.experiments.needs import Needs, RunContext, Setting

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from attnexplain.models.checkpoint import Checkpoint


class RunExperiment(Protocol):
    """``run(checkpoint, frame, params, progress) -> DataFrame``, one row per instance."""

    def __call__(
        self,
        checkpoint: Checkpoint,
        frame: pd.DataFrame,
        params: dict | None = None,
        progress: bool = True,
    ) -> pd.DataFrame: ...


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: its three faces, its parameters' defaults and one line that
    says what it measures."""

    name: str
    run: RunExperiment
    summary: Callable[[pd.DataFrame], pd.DataFrame]
    figure: Callable[[pd.DataFrame], Figure]
    defaults: Mapping[str, object]
    description: str
    needs: Callable[[dict, Setting], Needs] | None = None
    validate: Callable[[dict], None] | None = None

    def run_unit(
        self,
        checkpoint: Checkpoint,
        frame: pd.DataFrame,
        params: dict,
        progress: bool,
        context: RunContext | None,
    ) -> pd.DataFrame:
        """Run with the context when the experiment has needs (the runner's entry point)."""
        if self.needs is None:
            return self.run(checkpoint, frame, params, progress)
        if context is None:
            raise InvalidInputError(
                f"experiment {self.name!r} compares its model with other work: run it from a "
                f"plan (attnexplain run), or call its functions in "
                f"attnexplain.experiments.wiegreffe_pinter directly"
            )
        return self.run(checkpoint, frame, params, progress, context)

    def resolve(self, params: Mapping[str, object] | None = None) -> dict:
        """``params`` merged over the defaults, after checking each name and type.

        Raises :class:`UnknownNameError` for a parameter the experiment does not have and
        :class:`InvalidInputError` for a value whose type differs from its default's.
        """
        params = dict(params or {})
        for key, value in params.items():
            if key not in self.defaults:
                known = ", ".join(self.defaults) or "none"
                raise UnknownNameError(
                    f"unknown parameter {key!r} for experiment {self.name!r}; known: {known}"
                )
            default = self.defaults[key]
            if not _same_kind(value, default):
                raise InvalidInputError(
                    f"parameter {key!r} of {self.name!r} must be of type {type(default).__name__} "
                    f"like its default {default!r}, got {value!r}"
                )
        resolved = {**self.defaults, **params}
        if self.validate is not None:
            self.validate(resolved)
        return resolved


def _same_kind(value: object, default: object) -> bool:
    """Whether ``value`` may replace ``default``: the same type, except that an int may stand
    for a float; bools are never numbers here (YAML's ``yes`` must not become ``1``)."""
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return type(value) is type(default)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


EXPERIMENTS: dict[str, Experiment] = {
    spec.name: spec
    for spec in [
        Experiment(
            "predictions",
            predictions.run_predictions,
            predictions.summarise_predictions,
            predictions.figure_predictions,
            predictions.PREDICTIONS_DEFAULTS,
            "the model's prediction and class probabilities for every instance",
        ),
        *(
            Experiment(f"jain_wallace.{name}", run, summary, figure, defaults, description)
            for name, run, summary, figure, defaults, description in [
                (
                    "correlation",
                    jain_wallace.run_correlation,
                    jain_wallace.summarise_correlation,
                    jain_wallace.figure_correlation,
                    jain_wallace.CORRELATION_DEFAULTS,
                    "J&W: Kendall tau of attention vs gradient and leave-one-out importance",
                ),
                (
                    "permutation",
                    jain_wallace.run_permutation,
                    jain_wallace.summarise_permutation,
                    jain_wallace.figure_permutation,
                    jain_wallace.PERMUTATION_DEFAULTS,
                    "J&W: output change when the attention is permuted",
                ),
                (
                    "adversarial",
                    jain_wallace.run_adversarial,
                    jain_wallace.summarise_adversarial,
                    jain_wallace.figure_adversarial,
                    jain_wallace.ADVERSARIAL_DEFAULTS,
                    "J&W: most different attention that keeps the output within eps",
                ),
            ]
        ),
        *(Experiment(**spec) for spec in wiegreffe_pinter.REGISTRATIONS),
        *(Experiment(**spec) for spec in serrano_smith.REGISTRATIONS),
        *(Experiment(**spec) for spec in league.REGISTRATIONS),
        *(Experiment(**spec) for spec in roar.REGISTRATIONS),
    ]
}


def list_experiments() -> list[str]:
    """Names of the registered experiments."""
    return list(EXPERIMENTS)


def get_experiment(name: str) -> Experiment:
    """The experiment registered as ``name``; :class:`UnknownNameError` lists the known ones."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}"
        ) from None
