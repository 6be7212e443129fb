"""Resuming verifies what it reuses: a unit whose files no longer match its ``done`` record is
named and computed again (with the units that need it) to the bytes an undamaged run wrote;
the report names it instead of crashing; two runs of one directory at once compute each unit
once."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from attnexplain.report import build
from attnexplain.runner import ExperimentUnit, TrainingUnit, parse_plan, run_plan
from attnexplain.runner.store import RunStore
from tests.test_runner import TINY, write_plan


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """TINY run once, uninterrupted."""
    return run_plan(parse_plan(TINY), tmp_path_factory.mktemp("reference"), progress=False)


def _halve(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGES = {
    "halved weights": ("train", "checkpoint/model.safetensors", _halve),
    "deleted result": ("experiment", "result.parquet", Path.unlink),
    "truncated result": ("experiment", "result.parquet", _halve),
    "garbage done record": ("experiment", "done", lambda path: path.write_text("{garbage")),
}


def _damage(directory: Path, reference, case: str) -> list[str]:
    """Damage the first unit of the case's kind in ``directory``; returns the keys that must
    be computed again (the unit and the units that need it)."""
    kind, name, harm = DAMAGES[case]
    unit = next(u for u in reference.units if u.kind == kind)
    harm(directory / "units" / unit.key / name)
    return [u.key for u in reference.units if u is unit or unit.key in u.depends_on]


def _all_bytes(directory: Path, reference) -> dict[str, bytes]:
    """The bytes of every unit's result table and weights (the checkpoint's JSON records the
    training's wall time, which no two runs share)."""
    files = {}
    for unit in reference.units:
        name = (
            "result.parquet" if isinstance(unit, ExperimentUnit) else "checkpoint/model.safetensors"
        )
        files[name + unit.key] = (directory / "units" / unit.key / name).read_bytes()
    return files


@pytest.mark.parametrize("case", list(DAMAGES))
def test_a_damaged_unit_is_named_and_recomputed_to_the_same_bytes(
    reference, tmp_path, capsys, case
):
    directory = tmp_path / "run"
    shutil.copytree(reference.directory, directory)
    expected = _damage(directory, reference, case)

    again = run_plan(parse_plan(TINY), directory, progress=False)

    assert sorted(again.ran) == sorted(expected)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "damaged" in line]
    assert len(warnings) == len(expected), warnings
    assert _all_bytes(directory, reference) == _all_bytes(reference.directory, reference)
    assert RunStore(directory).damage(expected[0]) is None


@pytest.mark.parametrize("case", ["deleted result", "truncated result", "garbage done record"])
def test_the_report_names_a_damaged_unit_instead_of_crashing(reference, tmp_path, case):
    directory = tmp_path / "run"
    shutil.copytree(reference.directory, directory)
    (key,) = _damage(directory, reference, case)
    label = next(unit.label for unit in reference.units if unit.key == key)
    html = build(directory, formats="html")["html"].read_text(encoding="utf-8")
    assert f"{label} (damaged: " in html


def test_a_done_record_lists_the_size_and_hash_of_every_output(reference):
    store = RunStore(reference.directory)
    training = next(u for u in reference.units if isinstance(u, TrainingUnit))
    outputs = store.finished(training.key).outputs
    assert "checkpoint/model.safetensors" in outputs
    size, digest = outputs["checkpoint/model.safetensors"].split(":")
    weights = store.checkpoint_dir(training.key) / "model.safetensors"
    assert int(size) == weights.stat().st_size and len(digest) == 64


def test_two_runs_of_one_directory_compute_each_unit_once(tmp_path):
    plan = write_plan(tmp_path / "tiny.yaml", TINY)
    command = [sys.executable, "-m", "attnexplain", "run", str(plan), "--out", str(tmp_path)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    time.sleep(0.5)
    runs.append(
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    )
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    computed = []
    for stdout, _ in outputs:
        (line,) = [line for line in stdout.splitlines() if line.startswith("4 units:")]
        computed.append(int(line.split()[2]))
    assert sum(computed) == 4, outputs


def test_a_unit_held_by_another_process_makes_the_run_wait_and_says_who(
    reference, tmp_path, capsys
):
    directory = tmp_path / "run"
    shutil.copytree(reference.directory, directory)
    store = RunStore(directory)
    unit = reference.units[-1]
    store.discard(unit.key)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX);"
            " f.truncate(0); f.write('pid 4242 on elsewhere'); f.flush();"
            " print('held', flush=True); time.sleep(3)",
            str(store.unit_dir(unit.key) / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    started = time.perf_counter()
    result = run_plan(parse_plan(TINY), directory, progress=False)
    assert time.perf_counter() - started > 1  # it waited for the lock
    holder.wait()
    assert result.ran == [unit.key]
    assert f"waiting: pid 4242 on elsewhere is computing {unit.label}" in capsys.readouterr().err


def test_locks_are_exclusive_between_threads_of_one_process(tmp_path):
    store, order = RunStore(tmp_path), []

    def hold(name: str) -> None:
        with store.lock("key"):
            order.append(f"{name} in")
            time.sleep(0.2)
            order.append(f"{name} out")

    threads = [threading.Thread(target=hold, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
