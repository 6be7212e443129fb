"""A dry run: which units of a plan are finished in its run directory, and how long the rest
may take, estimated from the timings of the units finished there (of any plan)."""

from __future__ import annotations

import math
import os
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from attnexplain.runner.manifest import read_manifest
from attnexplain.runner.plan import Plan
from attnexplain.runner.run import resolve_run
from attnexplain.runner.store import RunStore
from attnexplain.runner.units import Unit, expand

COLUMNS = ["key", "kind", "label", "status", "seconds", "estimate_s", "basis"]


@dataclass(frozen=True)
class StoredUnit:
    """A finished unit as its folder's ``unit.json`` describes it."""

    kind: str
    config: dict[str, Any]


def estimate_group(unit: Unit | StoredUnit) -> str:
    """The name of the units whose timings estimate ``unit``'s: the experiment's name for an
    experiment unit, ``train.pretrained.<name>`` or ``train.classic.<encoder>`` for a training
    unit, the unit's kind for any other. Read from the unit's config, so that a unit of the
    plan and one described by a ``unit.json`` fall into the same group."""
    config = getattr(unit, "config", None) or {}
    if unit.kind == "experiment" and "experiment" in config:
        return str(config["experiment"])
    model = config.get("model")
    if unit.kind == "train" and isinstance(model, dict):
        if model.get("pretrained"):
            return f"train.pretrained.{model['pretrained']}"
        if model.get("hf"):
            return "train.hf.finetuned" if model.get("finetune") else "train.hf.imported"
        return f"train.classic.{model.get('encoder')}"
    return unit.kind


def _finished_seconds(store: RunStore) -> dict[str, float]:
    """Seconds each finished unit of the directory took, by key (damaged ones are left out:
    the run computes them again)."""
    return {
        key: store.finished(key).seconds
        for key in store.finished_keys()
        if store.damage(key) is None
    }


def _timings_by_group(store: RunStore, seconds: dict[str, float]) -> dict[str, list[float]]:
    """The seconds of the finished units, by estimate group (units whose folder does not say
    what they are are left out)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for key, taken in seconds.items():
        description = store.description(key)
        if description is not None:
            stored = StoredUnit(description["kind"], description.get("config", {}))
            groups[estimate_group(stored)].append(taken)
    return groups


def reference_seconds(manifest: str | os.PathLike) -> dict[str, float]:
    """Seconds of every finished unit of another run's ``manifest.json`` (a committed
    reference run), by key."""
    payload = read_manifest(manifest)
    return {
        unit["key"]: unit["seconds"]
        for unit in payload["units"]
        if unit["status"] == "done" and unit["seconds"] is not None
    }


def _row(
    unit: Unit,
    seconds: dict[str, float],
    groups: dict[str, list[float]],
    reference: dict[str, float],
) -> dict[str, Any]:
    """``unit``'s line of :func:`plan_status`: its measured seconds, or its estimate."""
    row = {"key": unit.key, "kind": unit.kind, "label": unit.label}
    if unit.key in seconds:
        return row | {
            "status": "done",
            "seconds": seconds[unit.key],
            "estimate_s": math.nan,
            "basis": "measured",
        }
    group = estimate_group(unit)
    timings = groups.get(group, [])
    if unit.key in reference:
        basis, estimate = "the same unit in the reference run", reference[unit.key]
    elif not timings:
        basis, estimate = f"no finished {group!r} unit", math.nan
    else:
        plural = "" if len(timings) == 1 else "s"
        basis = f"median of {len(timings)} finished {group!r} unit{plural}"
        estimate = statistics.median(timings)
    return row | {"status": "pending", "seconds": math.nan, "estimate_s": estimate, "basis": basis}


def plan_status(
    plan: Plan | str | os.PathLike,
    out: str | os.PathLike | None = None,
    datasets: Iterable[str] | None = None,
    models: Iterable[str] | None = None,
    reference: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Every unit :func:`~attnexplain.runner.run_plan` would run for these arguments (same
    meaning), without running or writing anything.

    One row per unit in run order: ``key``, ``kind``, ``label``, ``status`` (``done`` or
    ``pending``), ``seconds`` (measured, done units), ``estimate_s`` (pending units: the median
    seconds of the finished units of its :func:`estimate_group` in the run directory, from any
    plan; NaN without one) and ``basis`` (how the estimate was made). ``reference``: the
    ``manifest.json`` of another run (a committed reference run) whose timing of a unit with
    the same key is that unit's estimate, before any median.
    """
    plan, store, _ = resolve_run(plan, out, datasets, models)
    seconds = _finished_seconds(store)
    groups = _timings_by_group(store, seconds)
    measured = {} if reference is None else reference_seconds(reference)
    rows = [_row(unit, seconds, groups, measured) for unit in expand(plan)]
    return pd.DataFrame(rows, columns=COLUMNS)


def format_duration(seconds: float) -> str:
    """``4.2 s``, ``42 s``, ``3 min 5 s`` or ``2 h 5 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, whole = divmod(round(seconds), 60)
    if minutes == 0:
        return f"{whole} s"
    if minutes < 60:
        return f"{minutes} min {whole} s"
    return f"{minutes // 60} h {minutes % 60} min"


def status_summary(status: pd.DataFrame) -> str:
    """One line on a :func:`plan_status` table: how many units, how many finished, and the
    estimated time of the rest (``unknown`` where no pending unit has an estimate)."""
    pending = status[status["status"] == "pending"]
    counts = f"{len(status)} units: {len(status) - len(pending)} finished, {len(pending)} to run"
    if pending.empty:
        return counts
    unknown = int(pending["estimate_s"].isna().sum())
    total = (
        "unknown" if unknown == len(pending) else f"~{format_duration(pending['estimate_s'].sum())}"
    )
    missing = (
        f" ({unknown} unit{'' if unknown == 1 else 's'} without an estimate)" if unknown else ""
    )
    return f"{counts}; estimated time for the rest: {total}{missing}"
