"""Experiments: one module per paper, looked up by name in :mod:`.registry`."""

from attnexplain.experiments.registry import (
    EXPERIMENTS,
    Experiment,
    experiment_parameters,
    get_experiment,
    list_experiments,
)

__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "experiment_parameters",
    "get_experiment",
    "list_experiments",
]
