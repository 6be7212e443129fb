"""Experiments by name: what a plan's ``experiments: [{name, params}]`` refers to.

The contract. An experiment has three faces, and the runner and the report need nothing else:

- ``run(checkpoint, frame, params=None, progress=True) -> DataFrame``: ``checkpoint`` is a
  loaded :class:`~attnexplain.models.checkpoint.Checkpoint` (either model family), ``frame``
  a dataset split (``text``, ``label``, ``tokens``; rows in a fixed order), ``params`` the
  experiment's options, merged over :attr:`Experiment.defaults` and checked where they
  enter: by the plan (the runner), or by :meth:`Experiment.run` (Python). The registered
  function (:attr:`Experiment.function`) trusts what it is given.
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
parameter a plan may set, with its default, and ``parameters`` says what each means
(``batch_size`` is said once, in :data:`SHARED_PARAMETERS`); a plan that sets another one,
or one of the wrong type, is rejected before anything runs, with the valid ones
(:func:`experiment_parameters`) in the message. The Jain & Wallace experiments are
registered as ``jain_wallace.correlation``, ``jain_wallace.permutation`` and
``jain_wallace.adversarial``; Serrano & Smith's as ``serrano_smith.zero_top`` and
``serrano_smith.flip_fraction``; the league table of explanation methods as
``league.methods``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import pandas as pd

from attnexplain.errors import InvalidInputError, UnknownNameError
from attnexplain.experiments import (
    companions,
    jain_wallace,
    league,
    predictions,
    roar,
    serrano_smith,
    sinks,
    wiegreffe_pinter,
)
from attnexplain.experiments.needs import Needs, RunContext, Setting

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from attnexplain.models.checkpoint import Checkpoint


# parameters that mean the same in every experiment that has them
SHARED_PARAMETERS = {"batch_size": "instances per batch (memory vs speed)"}


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
    """A registered experiment: its three faces (``function`` computes the per-instance table,
    called through :meth:`run`), its parameters' defaults, what each parameter means
    (``parameters``; ``batch_size``: :data:`SHARED_PARAMETERS`) and one line that says what it
    measures. ``added_later`` names parameters added after units of the experiment were first
    computed: at their default they are left out of a unit's key (:meth:`key_params`), so
    that finished units keep their keys (the default must compute what was computed before).
    ``context_optional``: an experiment with ``needs`` that also runs without a run's
    context where its parameters ask for nothing it provides (the league without companion
    measures); it is then called with ``context=None``.
    """

    name: str
    function: RunExperiment
    summary: Callable[[pd.DataFrame], pd.DataFrame]
    figure: Callable[[pd.DataFrame], Figure]
    defaults: Mapping[str, object]
    description: str
    needs: Callable[[dict, Setting], Needs] | None = None
    validate: Callable[[dict], None] | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    added_later: tuple[str, ...] = ()
    context_optional: bool = False

    def key_params(self, params: Mapping[str, object]) -> dict[str, object]:
        """``params`` (resolved) as a unit's key holds them: without the parameters of
        ``added_later`` that are at their default."""
        return {
            key: value
            for key, value in params.items()
            if not (key in self.added_later and value == self.defaults[key])
        }

    def run(
        self,
        checkpoint: Checkpoint,
        frame: pd.DataFrame,
        params: Mapping[str, object] | None = None,
        progress: bool = True,
        context: RunContext | None = None,
    ) -> pd.DataFrame:
        """The per-instance table of ``checkpoint`` on ``frame`` (a dataset split), with
        ``params`` checked and merged over the defaults (:meth:`resolve`: an unknown name is
        an error that lists the valid ones).

        Example
        -------
        >>> spec = get_experiment("jain_wallace.permutation")
        >>> spec.run(load_checkpoint("runs/synthetic"), data.test, {"permutations": 20})
        """
        return self.run_unit(checkpoint, frame, self.resolve(params), progress, context)

    def run_unit(
        self,
        checkpoint: Checkpoint,
        frame: pd.DataFrame,
        params: dict,
        progress: bool,
        context: RunContext | None,
    ) -> pd.DataFrame:
        """Run with ``params`` resolved already (the runner's entry point: a plan's params
        were checked when it was read), with the context when the experiment has needs."""
        if self.needs is None:
            return self.function(checkpoint, frame, params, progress)
        if context is None and not self.context_optional:
            raise InvalidInputError(
                f"experiment {self.name!r} compares its model with other work: run it from a "
                f"plan (attnexplain run), or call its functions in "
                f"attnexplain.experiments.wiegreffe_pinter directly"
            )
        return self.function(checkpoint, frame, params, progress, context)

    def resolve(self, params: Mapping[str, object] | None = None) -> dict:
        """``params`` merged over the defaults, after checking each name and type.

        Raises :class:`UnknownNameError` for a parameter the experiment does not have and
        :class:`InvalidInputError` for a value whose type differs from its default's.
        """
        params = dict(params or {})
        for key, value in params.items():
            if key not in self.defaults:
                raise UnknownNameError(
                    f"unknown parameter {key!r} for experiment {self.name!r}; "
                    f"{self.valid_parameters()}"
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

    def parameter_table(self) -> pd.DataFrame:
        """One row per parameter: ``parameter``, ``default``, ``meaning``."""
        meanings = {**SHARED_PARAMETERS, **self.parameters}
        return pd.DataFrame(
            {
                "parameter": list(self.defaults),
                # as given: 5 stays 5 and None stays None beside float defaults
                "default": pd.Series(list(self.defaults.values()), dtype=object),
                "meaning": [meanings[name] for name in self.defaults],
            }
        )

    def valid_parameters(self) -> str:
        """The parameters a plan or :meth:`run` may set, with their defaults, as a phrase."""
        if not self.defaults:
            return "it takes no parameters"
        listed = ", ".join(f"{name} (default {value!r})" for name, value in self.defaults.items())
        return f"valid: {listed}"


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
            Experiment(
                f"jain_wallace.{name}",
                run,
                summary,
                figure,
                defaults,
                description,
                parameters=parameters,
            )
            for name, run, summary, figure, defaults, description, parameters in [
                (
                    "correlation",
                    jain_wallace.run_correlation,
                    jain_wallace.summarise_correlation,
                    jain_wallace.figure_correlation,
                    jain_wallace.CORRELATION_DEFAULTS,
                    "J&W: Kendall tau of attention vs gradient and leave-one-out importance",
                    jain_wallace.CORRELATION_PARAMETERS,
                ),
                (
                    "permutation",
                    jain_wallace.run_permutation,
                    jain_wallace.summarise_permutation,
                    jain_wallace.figure_permutation,
                    jain_wallace.PERMUTATION_DEFAULTS,
                    "J&W: output change when the attention is permuted",
                    jain_wallace.PERMUTATION_PARAMETERS,
                ),
                (
                    "adversarial",
                    jain_wallace.run_adversarial,
                    jain_wallace.summarise_adversarial,
                    jain_wallace.figure_adversarial,
                    jain_wallace.ADVERSARIAL_DEFAULTS,
                    "J&W: most different attention that keeps the output within eps",
                    jain_wallace.ADVERSARIAL_PARAMETERS,
                ),
            ]
        ),
        *(Experiment(**spec) for spec in wiegreffe_pinter.REGISTRATIONS),
        *(Experiment(**spec) for spec in serrano_smith.REGISTRATIONS),
        *(Experiment(**spec) for spec in league.REGISTRATIONS),
        *(Experiment(**spec) for spec in sinks.REGISTRATIONS),
        *(Experiment(**spec) for spec in roar.REGISTRATIONS),
        *(Experiment(**spec) for spec in companions.REGISTRATIONS),
    ]
}


def list_experiments() -> list[str]:
    """Names of the registered experiments."""
    return list(EXPERIMENTS)


def experiment_parameters(name: str) -> pd.DataFrame:
    """Every parameter of experiment ``name`` with its default and what it means: a row each,
    ``parameter``, ``default``, ``meaning``.

    Example
    -------
    >>> experiment_parameters("jain_wallace.adversarial")
    """
    return get_experiment(name).parameter_table()


def get_experiment(name: str) -> Experiment:
    """The experiment registered as ``name``; :class:`UnknownNameError` lists the known ones."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}"
        ) from None
