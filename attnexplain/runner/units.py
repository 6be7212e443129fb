"""Units of work, each named by a hash of everything that decides its result.

A :class:`TrainingUnit` is (dataset, model, training recipe with seed) -> a checkpoint; an
:class:`ExperimentUnit` is (training unit, experiment, params, split, instances) -> a
per-instance table. An experiment unit's key includes its training unit's key, so retraining a
model with another recipe gives its experiments new keys too. Equal keys mean equal work, which
is what lets a run directory skip what it has already done, and lets plans share units.

An experiment with needs (:mod:`attnexplain.experiments.needs`) gets a unit for each: a
sibling :class:`TrainingUnit` or another :class:`ExperimentUnit` on its model. Their keys are
part of the experiment's key and they come before it in :func:`expand`'s order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from attnexplain.experiments.needs import SAME, ExperimentResult, Need, Setting
from attnexplain.experiments.registry import get_experiment
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
            "model": {**self.model.source(), **self.model.architecture()},
            "train": self.train_config.identity(),
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
    ``site_layer`` (None: the model's default site). ``needs``: (role, unit) pairs the
    experiment reads besides its model; ``tag``: what the label adds (not part of the key).
    """

    training: TrainingUnit
    experiment: str
    params: dict[str, Any]
    split: str
    max_instances: int | None
    site_layer: int | None = None
    needs: tuple[tuple[str, Unit], ...] = ()
    tag: str = ""

    kind = "experiment"

    @property
    def depends_on(self) -> tuple[str, ...]:
        """Keys of the units this one needs finished first: its training unit and needs."""
        return (self.training.key, *(unit.key for _, unit in self.needs))

    @cached_property
    def config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "training": self.training.key,
            "experiment": self.experiment,
            "params": get_experiment(self.experiment).key_params(self.params),
            "split": self.split,
            "max_instances": self.max_instances,
            # only when set, so that the default site kept the keys units had before
            **({} if self.site_layer is None else {"site_layer": self.site_layer}),
            **({"needs": {role: unit.key for role, unit in self.needs}} if self.needs else {}),
        }

    @cached_property
    def key(self) -> str:
        return config_key(self.config)

    @property
    def label(self) -> str:
        # the model label names the layer
        tag = f" [{self.tag}]" if self.tag else ""
        return f"{self.training.label} / {self.experiment}{tag}"


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
                    if not entry.applies_to(dataset, model):
                        continue
                    experiment_unit(
                        plan,
                        training,
                        entry.name,
                        entry.resolved_params(),
                        plan.split,
                        plan.max_instances,
                        units,
                    )
    return list(units.values())


def experiment_unit(
    plan: Plan,
    training: TrainingUnit,
    experiment: str,
    params: dict[str, Any],
    split: str,
    max_instances: int | None,
    units: dict[str, Unit],
    tag: str = "",
) -> ExperimentUnit:
    """The unit of ``experiment`` on ``training``'s model, added to ``units`` after the
    units of its needs (recursively)."""
    spec = get_experiment(experiment)
    needs: list[tuple[str, Unit]] = []
    if spec.needs is not None:
        setting = Setting(pretrained=training.model.transformer is not None, split=split)
        for role, need in spec.needs(params, setting).items():
            unit = _need_unit(plan, training, need, split, max_instances, units, role)
            units.setdefault(unit.key, unit)
            needs.append((role, unit))
    unit = ExperimentUnit(
        training,
        experiment,
        params,
        split,
        max_instances,
        training.model.site_layer,
        tuple(needs),
        tag,
    )
    return units.setdefault(unit.key, unit)


def _need_unit(
    plan: Plan,
    training: TrainingUnit,
    need: Need,
    split: str,
    max_instances: int | None,
    units: dict[str, Unit],
    role: str,
) -> Unit:
    if isinstance(need, ExperimentResult):
        listed = [
            entry.params
            for entry in plan.experiments
            if entry.name == need.experiment and entry.applies_to(training.dataset, training.model)
        ]
        base = listed[0] if listed else {}
        params = get_experiment(need.experiment).resolve({**base, **need.overrides})
        return experiment_unit(
            plan,
            training,
            need.experiment,
            params,
            split if need.split == SAME else need.split,
            max_instances if need.max_instances == SAME else need.max_instances,
            units,
            tag=role,
        )
    model = training.model.model_copy(update=dict(need.changes))
    config = training.train_config
    return TrainingUnit(
        training.dataset, model, config if need.seed is None else replace(config, seed=need.seed)
    )
