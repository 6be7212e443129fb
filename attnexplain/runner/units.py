"""Units of work, each named by a hash of everything that decides its result.

A :class:`TrainingUnit` is (dataset, model, training recipe with seed) -> a checkpoint; an
:class:`ExperimentUnit` is (training unit, experiment, params, split, instances) -> a
per-instance table. An experiment unit's key includes its training unit's key, so retraining a
model with another recipe gives its experiments new keys too. Equal keys mean equal work, which
is what lets a run directory skip what it has already done, and lets plans share units.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

from attnexplain.models.train import TrainConfig
from attnexplain.runner.plan import DatasetEntry, ModelEntry, Plan

# Part of every key: bump it when what a unit stores, or how, changes, so that old units are
# recomputed instead of misread.
UNIT_FORMAT = 2  # 2: splits in shuffled order (they were in source order)


def config_key(config: dict[str, Any]) -> str:
    """16 hex digits of the SHA-256 of ``config`` as canonical JSON (sorted keys)."""
    text = json.dumps({"unit_format": UNIT_FORMAT, **config}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TrainingUnit:
    """Train ``model`` on ``dataset`` with ``train_config`` (which carries the seed)."""

    dataset: DatasetEntry
    model: ModelEntry
    train_config: TrainConfig

    kind = "train"

    @property
    def depends_on(self) -> tuple[str, ...]:
        """Keys of the units this one needs finished first: none."""
        return ()

    @cached_property
    def config(self) -> dict[str, Any]:
        """What decides the checkpoint: the unit's identity, stored beside it."""
        return {
            "kind": self.kind,
            "dataset": self.dataset.identity(),
            "model": {"pretrained": self.model.pretrained, **self.model.architecture()},
            "train": asdict(self.train_config),
        }

    @cached_property
    def key(self) -> str:
        return config_key(self.config)

    @property
    def label(self) -> str:
        return f"{self.dataset.label} / {self.model.label} / seed {self.train_config.seed}"


@dataclass(frozen=True)
class ExperimentUnit:
    """Run ``experiment`` with ``params`` on the checkpoint of ``training``, over the first
    ``max_instances`` rows (all when None) of the dataset's ``split``, at the transformer's
    ``site_layer`` (None: the model's default site)."""

    training: TrainingUnit
    experiment: str
    params: dict[str, Any]
    split: str
    max_instances: int | None
    site_layer: int | None = None

    kind = "experiment"

    @property
    def depends_on(self) -> tuple[str, ...]:
        """Keys of the units this one needs finished first: its training unit."""
        return (self.training.key,)

    @cached_property
    def config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "training": self.training.key,
            "experiment": self.experiment,
            "params": self.params,
            "split": self.split,
            "max_instances": self.max_instances,
            # only when set, so that the default site kept the keys units had before
            **({} if self.site_layer is None else {"site_layer": self.site_layer}),
        }

    @cached_property
    def key(self) -> str:
        return config_key(self.config)

    @property
    def label(self) -> str:
        return f"{self.training.label} / {self.experiment}"  # the model label names the layer


Unit = TrainingUnit | ExperimentUnit


def expand(plan: Plan) -> list[Unit]:
    """Every unit of ``plan`` in dependency order: each training unit followed by its
    experiments, so that a model's results arrive as soon as it is trained. A unit the plan
    asks for twice is listed once."""
    units: dict[str, Unit] = {}
    for dataset in plan.datasets:
        for model in plan.models:
            for seed in plan.seeds:
                training = TrainingUnit(dataset, model, plan.train_config(model, seed))
                units.setdefault(training.key, training)
                for entry in plan.experiments:
                    unit = ExperimentUnit(
                        training,
                        entry.name,
                        entry.resolved_params(),
                        plan.split,
                        plan.max_instances,
                        model.site_layer,
                    )
                    units.setdefault(unit.key, unit)
    return list(units.values())
