"""Executors: processes on this machine and a Ray cluster give the local executor's results,
keep going past a failing unit, and lose nothing when a worker dies."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import ray
import torch
from safetensors.torch import load_file

from attnexplain.errors import AttnExplainError
from attnexplain.runner import RunResult, parse_plan, run_plan
from attnexplain.runner.executors import ProcessExecutor, RayExecutor, make_executor
from attnexplain.runner.run import UnitsFailedError
from attnexplain.runner.units import TrainingUnit

# The LSTM trains long enough (about a second an epoch) for a kill to land mid-training.
PLAN = {
    "name": "executors",
    "datasets": [{"name": "synthetic", "options": {"n": 1500, "seed": 4}}],
    "models": [{"encoder": "lstm", "hidden_size": 32}, {"encoder": "average", "hidden_size": 16}],
    "seeds": [3],
    "split": "test",
    "max_instances": 24,
    "train": {"epochs": 4, "embeddings": "random", "embed_dim": 32},
    "experiments": [{"name": "predictions"}, {"name": "jain_wallace.correlation"}],
}


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> RunResult:
    """The plan on the local executor, at the one torch thread every worker runs with (float
    sums are bit-identical only at the same thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_plan(parse_plan(PLAN), tmp_path_factory.mktemp("local"), progress=False)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def assert_same_as(local: RunResult, directory: Path) -> None:
    """Every unit of ``local`` is finished in ``directory`` with identical results: the same
    experiment tables and bit-identical trained weights."""
    for unit in local.units:
        ours, theirs = local.directory / "units" / unit.key, directory / "units" / unit.key
        assert (theirs / "done").is_file(), unit.label
        if isinstance(unit, TrainingUnit):
            expected = load_file(str(ours / "checkpoint" / "model.safetensors"))
            actual = load_file(str(theirs / "checkpoint" / "model.safetensors"))
            assert expected.keys() == actual.keys()
            for name, tensor in expected.items():
                assert torch.equal(tensor, actual[name]), (unit.label, name)
        else:
            pd.testing.assert_frame_equal(
                pd.read_parquet(theirs / "result.parquet"),
                pd.read_parquet(ours / "result.parquet"),
                check_exact=True,
            )


def lstm_training(result: RunResult) -> TrainingUnit:
    return next(u for u in result.units if isinstance(u, TrainingUnit) and "lstm" in u.label)


def test_processes_give_the_local_results(local, tmp_path):
    result = run_plan(
        parse_plan(PLAN), tmp_path, progress=False, executor=ProcessExecutor(workers=2)
    )
    assert sorted(result.ran) == sorted(unit.key for unit in local.units)
    assert_same_as(local, tmp_path)


def test_a_failing_unit_is_reported_and_the_others_finish(local, tmp_path):
    # an unfinished training run with other settings in the LSTM's checkpoint folder: its
    # training refuses to overwrite it (CheckpointError) on the worker
    lstm = lstm_training(local)
    leftover = tmp_path / "units" / lstm.key / "checkpoint"
    leftover.mkdir(parents=True)
    (leftover / "resume.json").write_text('{"fingerprint": {"other": 1}, "epoch": 1}')
    (leftover / "resume.safetensors").write_bytes(b"")

    with pytest.raises(UnitsFailedError) as caught:
        run_plan(parse_plan(PLAN), tmp_path, progress=False, executor=ProcessExecutor(2))
    failures = caught.value.failures
    failed = [failure for failure in failures if failure.ran]
    assert [failure.key for failure in failed] == [lstm.key]
    assert "CheckpointError" in failed[0].error and "Traceback" in failed[0].error
    # its two experiments did not run; the Average model and its experiments finished
    skipped = [failure for failure in failures if not failure.ran]
    assert len(skipped) == 2 and all("not run: it needs" in f.error for f in skipped)
    others = [unit for unit in local.units if "average" in unit.label]
    assert all((tmp_path / "units" / unit.key / "done").is_file() for unit in others)
    assert "1 unit(s) failed" in str(caught.value) and "run the plan again" in str(caught.value)
    manifest = RunResult.load(tmp_path)  # the manifest still reads back
    assert manifest.plan.name == "executors"

    (leftover / "resume.json").unlink()
    (leftover / "resume.safetensors").unlink()
    again = run_plan(parse_plan(PLAN), tmp_path, progress=False, executor=ProcessExecutor(2))
    assert len(again.ran) == 3
    assert_same_as(local, tmp_path)


def test_ray_gives_the_local_results(local, ray_instance, tmp_path):
    result = run_plan(parse_plan(PLAN), tmp_path, progress=False, executor=RayExecutor())
    assert len(result.ran) == len(local.units)
    assert_same_as(local, tmp_path)


def test_a_unit_killed_on_a_ray_worker_reruns_and_nothing_is_lost(local, ray_instance, tmp_path):
    lstm = lstm_training(local)
    folder = tmp_path / "units" / lstm.key
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            run_plan(parse_plan(PLAN), tmp_path, progress=False, executor=RayExecutor())
        except BaseException as error:  # handed to the test thread
            outcome["error"] = error

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + 120
    # the LSTM's first epoch is saved (resumable), the training goes on: kill its worker
    while not (folder / "checkpoint" / "resume.json").is_file():
        assert runner.is_alive() and time.monotonic() < deadline, "the LSTM never saved an epoch"
        time.sleep(0.01)
    assert not (folder / "done").exists(), "the LSTM finished before the kill; slow it down"
    worker = pd.read_json(folder / "unit.json", typ="series")["worker"]
    os.kill(worker["pid"], signal.SIGKILL)
    runner.join(timeout=120)

    error = outcome["error"]
    assert isinstance(error, UnitsFailedError)
    failed = [failure for failure in error.failures if failure.ran]
    assert [failure.key for failure in failed] == [lstm.key]
    assert "died" in failed[0].error.lower() or "crash" in failed[0].error.lower()
    average_units = [unit for unit in local.units if "average" in unit.label]
    assert all((tmp_path / "units" / unit.key / "done").is_file() for unit in average_units)

    again = run_plan(parse_plan(PLAN), tmp_path, progress=False, executor=RayExecutor())
    assert sorted(again.ran) == sorted(u.key for u in local.units if "lstm" in u.label)
    assert_same_as(local, tmp_path)


def test_executor_options_are_checked():
    with pytest.raises(AttnExplainError, match="unknown executor 'slurm'; choose one of local"):
        make_executor("slurm")
    with pytest.raises(AttnExplainError, match="--address is for --executor ray"):
        make_executor("local", address="ray://head:10001")
    with pytest.raises(AttnExplainError, match="--workers is for --executor processes"):
        make_executor("ray", workers=2)
