"""``attnexplain run PLAN --dry-run`` and :func:`plan_status`: which units a plan would run,
which are finished, and how long the rest may take; nothing trained, nothing written."""

from __future__ import annotations

import math
import re
import shutil
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from attnexplain.runner import RunResult, expand, parse_plan, plan_status, run_plan
from attnexplain.runner.status import estimate_group, format_duration
from attnexplain.runner.store import RunStore
from tests.conftest import run_cli

DRY = {
    "name": "dry",
    "datasets": [{"name": "synthetic", "options": {"n": 300, "seed": 1}}],
    "models": [
        {"encoder": "average", "hidden_size": 8},
        {"encoder": "average", "hidden_size": 16},
        {"encoder": "lstm", "hidden_size": 8},
    ],
    "seeds": [1, 2],
    "train": {"epochs": 1, "embeddings": "random", "embed_dim": 16},
    "experiments": [{"name": "predictions"}],
}
FIRST_MODEL = "average-additive-h8"


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``directory`` with its size and modification time."""
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(directory.rglob("*"))
    }


def measured(directory: Path) -> dict[str, float]:
    """Seconds of every finished unit in ``directory``, by key."""
    store = RunStore(directory)
    return {key: store.finished(key).seconds for key in store.finished_keys()}


@pytest.fixture(scope="module")
def partial_run(tmp_path_factory) -> RunResult:
    """DRY's first model run (both seeds): 4 of its 12 units."""
    directory = tmp_path_factory.mktemp("partial")
    return run_plan(parse_plan(DRY), directory, progress=False, models=[FIRST_MODEL])


def test_an_empty_directory_leaves_everything_pending_and_is_not_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default directory, runs/dry, is relative
    status = plan_status(parse_plan(DRY))
    assert list(status["key"]) == [unit.key for unit in expand(parse_plan(DRY))]
    assert list(status.columns) == [
        "key", "kind", "label", "status", "seconds", "estimate_s", "basis",
    ]  # fmt: skip
    assert status["status"].eq("pending").all()
    assert status["seconds"].isna().all() and status["estimate_s"].isna().all()
    assert status["basis"].iloc[:2].tolist() == [
        "no finished 'train.classic.average' unit",
        "no finished 'predictions' unit",
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_selection_estimates_the_rest_from_its_own_group(partial_run):
    before = snapshot(partial_run.directory)
    status = plan_status(parse_plan(DRY), partial_run.directory).set_index("key")
    assert snapshot(partial_run.directory) == before

    seconds = measured(partial_run.directory)
    done = status[status["status"] == "done"]
    assert set(done.index) == set(partial_run.ran) == set(seconds)
    assert done["seconds"].to_dict() == seconds and done["estimate_s"].isna().all()

    units = {unit.key: unit for unit in expand(parse_plan(DRY))}
    by_group = {
        group: statistics.median(
            seconds[key] for key in seconds if estimate_group(units[key]) == group
        )
        for group in ("train.classic.average", "predictions")
    }
    pending = status[status["status"] == "pending"]
    assert len(pending) == 8 and pending["seconds"].isna().all()
    for key, row in pending.iterrows():
        group = estimate_group(units[key])
        if group == "train.classic.lstm":  # another encoder: no timing to go by
            assert math.isnan(row["estimate_s"]) and row["basis"] == f"no finished {group!r} unit"
        else:
            assert row["estimate_s"] == by_group[group]
            assert row["basis"] == f"median of 2 finished {group!r} units"
    assert pending["estimate_s"].isna().sum() == 2  # the LSTM's two trainings


def test_a_finished_plan_is_all_done_with_its_measured_seconds(partial_run, tmp_path):
    directory = tmp_path / "run"
    shutil.copytree(partial_run.directory, directory)
    result = run_plan(parse_plan(DRY), directory, progress=False)
    assert len(result.ran) == 8
    status = plan_status(parse_plan(DRY), directory)
    assert status["status"].eq("done").all() and status["estimate_s"].isna().all()
    assert dict(zip(status["key"], status["seconds"], strict=True)) == measured(directory)


def test_the_cli_prints_the_units_and_the_estimated_rest_and_writes_nothing(partial_run, tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(DRY, sort_keys=False))
    before = snapshot(partial_run.directory)
    result = run_cli("run", str(path), "--out", str(partial_run.directory), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert snapshot(partial_run.directory) == before
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["status", "time", "unit"]
    assert len(lines) == 1 + 12 + 1
    assert sum(line.startswith("done") for line in lines) == 4
    assert sum(line.split()[1] == "?" for line in lines[1:-1]) == 2
    assert re.fullmatch(
        r"12 units: 4 finished, 8 to run; estimated time for the rest: "
        r"~(\d+(\.\d)? s|\d+ min \d+ s|\d+ h \d+ min) "
        r"\(2 units without an estimate\)",
        lines[-1],
    ), lines[-1]


def test_the_cli_refuses_a_plan_it_cannot_read(tmp_path):
    result = run_cli("run", str(tmp_path / "missing.yaml"), "--dry-run", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: plan {tmp_path / 'missing.yaml'}")
    assert "cannot be read" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_estimate_groups_tell_model_families_apart_and_fall_back_to_the_kind():
    plan = parse_plan({**DRY, "models": [{"pretrained": "minilm"}], "seeds": [1]})
    assert [estimate_group(unit) for unit in expand(plan)] == [
        "train.pretrained.minilm",
        "predictions",
    ]
    assert estimate_group(SimpleNamespace(kind="evaluate")) == "evaluate"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.42, "0.4 s"), (42.4, "42 s"), (185, "3 min 5 s"), (7500, "2 h 5 min")],
)
def test_durations_read_as_seconds_minutes_or_hours(seconds, shown):
    assert format_duration(seconds) == shown
