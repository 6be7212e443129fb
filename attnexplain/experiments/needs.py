"""What an experiment needs beyond its own model, and how it gets it while it runs.

Most experiments read one checkpoint and one split. Wiegreffe & Pinter's compare the model
with siblings (the same model trained with uniform attention, or with other seeds), with
other experiments' results (J&W's adversaries) and with models trained against it. An
experiment declares such needs by role; the runner turns each into a unit of its own (cached,
resumable, shared with any plan that asks for the same work) that finishes before the
experiment starts, and hands the experiment a :class:`RunContext` to read them.

- :class:`SiblingModel`: the experiment's model trained with some architecture keys changed
  (``{"attention_mode": "uniform"}``) and / or another seed;
- :class:`ExperimentResult`: another registered experiment run on the experiment's model
  (its per-instance table, and the checkpoint it trained, if it trained one).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from attnexplain.errors import InvalidInputError
from attnexplain.models.train import TrainConfig, train

if TYPE_CHECKING:
    from attnexplain.data.registry import Dataset
    from attnexplain.models.checkpoint import Checkpoint

# "the same as the experiment's own" for ExperimentResult.split / max_instances
SAME = "same"


@dataclass(frozen=True)
class SiblingModel:
    """The experiment's model (same dataset and recipe) with ``changes`` to its architecture
    keys (classic: encoder, attention, hidden_size, attention_mode; transformers:
    attention_mode) and trained with ``seed`` (None: the same seed)."""

    changes: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None


@dataclass(frozen=True)
class ExperimentResult:
    """Registered experiment ``experiment`` on the experiment's model, with the parameters
    the plan runs it with (its defaults when the plan does not list it) updated by
    ``overrides``. ``split`` and ``max_instances``: :data:`SAME` as the needing experiment,
    or given."""

    experiment: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    split: str = SAME
    max_instances: int | str | None = SAME


Need = SiblingModel | ExperimentResult
Needs = dict[str, Need]


@dataclass(frozen=True)
class Setting:
    """Where an experiment's unit sits, for deciding its needs: whether its model is a
    pretrained transformer and the plan's split."""

    pretrained: bool
    split: str


@dataclass
class RunContext:
    """What an experiment with needs reads while it runs.

    ``dataset``: the whole dataset its model was trained on (every split); ``whole_split``:
    the split the experiment runs on, uncapped (``frame`` may be its first rows);
    ``workdir``: a folder that survives an interrupted run (train sub-models here: they
    resume);
    ``cache``: where wheels are cached; ``progress``: whether to show progress bars.
    """

    dataset: Dataset
    whole_split: pd.DataFrame
    workdir: Path
    cache: str | os.PathLike | None = None
    progress: bool = True
    _checkpoints: Mapping[str, Callable[[], Checkpoint]] = field(default_factory=dict)
    _results: Mapping[str, Callable[[], pd.DataFrame]] = field(default_factory=dict)

    def checkpoint(self, role: str) -> Checkpoint:
        """The model the need ``role`` trained."""
        return self._lookup(self._checkpoints, role, "a model")()

    def result(self, role: str) -> pd.DataFrame:
        """The per-instance table of the experiment the need ``role`` ran."""
        return self._lookup(self._results, role, "a result table")()

    @staticmethod
    def _lookup(table: Mapping[str, Callable], role: str, what: str) -> Callable:
        if role not in table:
            known = ", ".join(table) or "none"
            raise InvalidInputError(f"no need {role!r} with {what} here; roles: {known}")
        return table[role]


def needs_nothing(params: dict, setting: Setting) -> Needs:
    """The needs of an experiment that reads only its run's context (the model's training
    data and a folder of its own, to train a model in)."""
    return {}


TRAINED_CHECKPOINT = "checkpoint"


def trained_checkpoint_dir(workdir: Path) -> Path:
    """Where an experiment that trains a model (the W&P adversary) keeps it, so that
    experiments needing it find it: ``WORKDIR/checkpoint``."""
    return workdir / TRAINED_CHECKPOINT


def training_recipe(checkpoint: Checkpoint) -> TrainConfig:
    """The recipe ``checkpoint``'s model was trained with (its metadata records it), for
    experiments that train siblings of it themselves."""
    recorded = checkpoint.metadata.get("train_config")
    if not recorded:
        raise InvalidInputError(
            "the checkpoint does not record its training recipe (metadata 'train_config'): "
            "train it with attnexplain"
        )
    return TrainConfig(**recorded)


def retrain_like(
    checkpoint: Checkpoint,
    dataset: Dataset,
    folder: str | os.PathLike,
    cache: str | os.PathLike | None = None,
    progress: bool = False,
) -> Checkpoint:
    """``checkpoint``'s model trained again on ``dataset`` (a changed copy of its data: cut
    texts for ROAR, shuffled labels for the data-randomisation check, randomly masked texts
    for F-Fidelity) with what it was trained with: the same architecture keys, pretrained
    encoder (fine-tuned from it again) and recipe, saved in ``folder`` (an interrupted
    training resumes there; a finished one is reused). A classic model's vocabulary is
    rebuilt from ``dataset``."""
    from attnexplain.models.checkpoint import load_checkpoint

    request = checkpoint.metadata.get("request")
    if not request:
        raise InvalidInputError(
            "the checkpoint does not record what it was trained with (metadata 'request'): "
            "train it with this version of attnexplain"
        )
    train(
        dataset,
        folder,
        request["model"] or None,
        training_recipe(checkpoint),
        cache,
        progress,
        request["pretrained"],
    )
    return load_checkpoint(folder)
