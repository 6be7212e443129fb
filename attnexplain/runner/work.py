"""Doing one unit: train a checkpoint, or run an experiment on one, into the run store."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from tqdm.auto import tqdm

from attnexplain.data.registry import Dataset
from attnexplain.device import computing_on, resolve_device
from attnexplain.experiments.needs import RunContext, trained_checkpoint_dir
from attnexplain.experiments.registry import get_experiment
from attnexplain.models.checkpoint import at_site_layer, load_checkpoint
from attnexplain.models.imported import import_classifier
from attnexplain.models.train import train
from attnexplain.runner.manifest import now
from attnexplain.runner.plan import DatasetEntry
from attnexplain.runner.store import Finished, RunStore
from attnexplain.runner.units import ExperimentUnit, TrainingUnit, Unit


@dataclass
class UnitWorker:
    """Callable on a unit whose dependencies are finished; returns its :class:`Finished`.

    Holds no state (loaded datasets are cached per process, in :func:`_load_dataset`), so an
    executor can hand it to other processes and machines. ``run`` names the invocation in the
    records of the units it computes. Training writes straight into the
    unit's checkpoint folder, where :func:`~attnexplain.models.train.train` resumes an
    interrupted run from its last epoch.
    """

    store: RunStore
    cache_dir: str | os.PathLike | None = None
    progress: bool = True
    run: str = ""
    device: str = "auto"
    precision: str = "fp32"

    def __call__(self, unit: Unit) -> Finished:
        # the lock makes a second run of the same directory (or parts of a long plan run side
        # by side with --dataset / --model) wait for a unit, then reuse it: never twice
        with self.store.lock(unit.key, unit.label):
            if self.store.is_done(unit.key):
                return self.store.finished(unit.key)
            started = time.perf_counter()
            if self.progress:
                tqdm.write(f"{unit.kind}: {unit.label}", file=sys.stderr)
            self.store.begin(unit)
            # resolved here, where the unit runs: a worker on another machine has its own
            device = resolve_device(self.device)
            with computing_on(device, self.precision):
                work = self._train if isinstance(unit, TrainingUnit) else self._experiment
                details = work(unit)
            details |= {"peak_rss_mb": peak_rss_mb(), "device": str(device)}
            finished = Finished(
                key=unit.key,
                seconds=time.perf_counter() - started,
                finished_at=now(),
                details=details,
                run=self.run,
            )
            return self.store.mark_done(finished)

    def _train(self, unit: TrainingUnit) -> dict[str, Any]:
        dataset, folder = self._dataset(unit.dataset), self.store.checkpoint_dir(unit.key)
        model = unit.model
        # a user's model is used as it is, unless fine-tuned or retrained with frozen uniform
        # attention (W&P's baseline of it)
        if model.hf is not None and not model.finetune and not model.architecture():
            result = import_classifier(
                dataset, folder, model.hf, revision=model.revision, label_words=model.label_words
            )
        else:
            result = train(
                dataset,
                folder,
                model.architecture(),
                unit.train_config,
                cache=self.cache_dir,
                progress=self.progress,
                pretrained=model.transformer,
            )
        return {
            "best_epoch": result.best_epoch,
            "dev": result.dev,
            "test": result.test,
            "data": unit.dataset.provenance(),
            **({"model": model.source()} if model.hf is not None else {}),
        }

    def _experiment(self, unit: ExperimentUnit) -> dict[str, Any]:
        checkpoint = load_checkpoint(self.store.checkpoint_dir(unit.training.key))
        if unit.site_layer is not None:
            checkpoint = at_site_layer(checkpoint, unit.site_layer)
        frame = self._dataset(unit.training.dataset).splits[unit.split]
        if unit.max_instances is not None:
            frame = frame.iloc[: unit.max_instances]
        experiment = get_experiment(unit.experiment)
        table = experiment.run_unit(
            checkpoint,
            frame.reset_index(drop=True),
            dict(unit.params),
            self.progress,
            None if experiment.needs is None else self._context(unit),
        )
        self.store.write_result(unit.key, table)
        return {"instances": len(table)}

    def _context(self, unit: ExperimentUnit) -> RunContext:
        """What an experiment with needs reads: its needs' checkpoints and tables, the whole
        dataset and a work folder that survives interruptions."""
        checkpoints, results = {}, {}
        for role, need in unit.needs:
            if isinstance(need, TrainingUnit):
                checkpoints[role] = partial(load_checkpoint, self.store.checkpoint_dir(need.key))
            else:
                results[role] = partial(self.store.read_result, need.key)
                trained = trained_checkpoint_dir(self.store.work_dir(need.key))
                checkpoints[role] = partial(load_checkpoint, trained)
        dataset = self._dataset(unit.training.dataset)
        return RunContext(
            dataset,
            dataset.splits[unit.split].reset_index(drop=True),
            self.store.work_dir(unit.key),
            self.cache_dir,
            self.progress,
            checkpoints,
            results,
        )

    def _dataset(self, entry: DatasetEntry) -> Dataset:
        cache = None if self.cache_dir is None else str(self.cache_dir)
        return _load_dataset(json.dumps(entry.identity(), sort_keys=True), cache, entry)


DATASETS_KEPT = 4


def peak_rss_mb() -> int:
    """The peak resident memory of this process so far, in MiB (with a fresh process per unit,
    ``ProcessExecutor(fresh=True)``, the unit's own peak)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # Linux: KiB


_DATASETS: dict[tuple[str, str | None], Dataset] = {}


def _load_dataset(identity: str, cache_dir: str | None, entry: DatasetEntry) -> Dataset:
    """``entry``'s dataset, loaded once per process: every model and seed of a plan reads the
    same few datasets (``identity`` is the entry's identity as JSON). Keeps the
    :data:`DATASETS_KEPT` most recently loaded."""
    key = (identity, cache_dir)
    dataset = _DATASETS.pop(key, None) or entry.load(cache_dir)
    _DATASETS[key] = dataset  # now the most recent
    while len(_DATASETS) > DATASETS_KEPT:
        del _DATASETS[next(iter(_DATASETS))]
    return dataset
