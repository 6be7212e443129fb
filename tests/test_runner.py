"""The runner: plans validated with field-naming errors, units cached by key, run directories
that survive Ctrl-C and kill -9, and the ``run`` command."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

import attnexplain.models.train as train_module
from attnexplain.errors import PlanError
from attnexplain.runner import (
    ExperimentUnit,
    Plan,
    RunResult,
    expand,
    load_plan,
    parse_plan,
    run_plan,
)
from attnexplain.runner import work as runner_work
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "name": "tiny",
    "datasets": [{"name": "synthetic", "options": {"n": 600}}],
    "models": [{"encoder": "lstm", "hidden_size": 16}, {"encoder": "average", "hidden_size": 16}],
    "seeds": [1],
    "train": {"epochs": 2, "embeddings": "random", "embed_dim": 16},
    "experiments": [{"name": "predictions"}],
}


def write_plan(path: Path, plan: dict) -> Path:
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def manifest(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text())


def experiment_results(result: RunResult) -> dict[str, pd.DataFrame]:
    return {
        unit.key: pd.read_parquet(result.directory / "units" / unit.key / "result.parquet")
        for unit in result.units
        if isinstance(unit, ExperimentUnit)
    }


def assert_same_results(directory: Path, reference: RunResult) -> None:
    """Every experiment unit of ``reference`` is finished in ``directory`` with an equal
    table."""
    for key, expected in experiment_results(reference).items():
        assert (directory / "units" / key / "done").is_file()
        actual = pd.read_parquet(directory / "units" / key / "result.parquet")
        pd.testing.assert_frame_equal(actual, expected)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> RunResult:
    """TINY run once, uninterrupted."""
    return run_plan(parse_plan(TINY), tmp_path_factory.mktemp("reference"), progress=False)


def test_plan_runs_end_to_end(reference):
    kinds = [unit.kind for unit in reference.units]
    assert kinds == ["train", "experiment", "train", "experiment"]
    assert len(reference.ran) == 4
    record = manifest(reference.directory)
    assert record["status"] == "complete"
    assert record["plan"]["name"] == "tiny" and record["seeds"] == [1]
    assert set(record["versions"]) == {"attnexplain", "torch", "transformers", "captum"}
    assert record["versions"]["torch"]
    assert "git" in record
    for entry, unit in zip(record["units"], reference.units, strict=True):
        assert entry["key"] == unit.key and entry["status"] == "done"
        assert entry["seconds"] > 0 and not entry["reused"]
        folder = reference.directory / entry["path"]
        assert (folder / "done").is_file() and (folder / "unit.json").is_file()
        produced = "checkpoint/attnexplain.json" if unit.kind == "train" else "result.parquet"
        assert (folder / produced).is_file()

    table = reference.results(0)
    assert len(table) == 2 * 60  # both models on the 60-instance test split
    assert list(table.columns[:3]) == ["dataset", "model", "seed"]
    assert set(table["model"]) == {"lstm-additive-h16", "average-additive-h16"}
    assert (table["prob_class0"] + table["prob_class1"]).round(6).eq(1).all()
    summary = reference.summary(0)
    assert len(summary) == 2 and summary["n"].eq(60).all()
    assert summary["accuracy"].between(0, 1).all()
    reloaded = RunResult.load(reference.directory)
    pd.testing.assert_frame_equal(reloaded.summary(0), summary)


def test_rerun_skips_finished_units(reference, monkeypatch):
    calls = []
    monkeypatch.setattr(runner_work, "train", lambda *args, **kwargs: calls.append(args))
    again = run_plan(parse_plan(TINY), reference.directory, progress=False)
    assert again.ran == [] and calls == []
    assert all(entry["reused"] for entry in manifest(reference.directory)["units"])
    assert_same_results(reference.directory, reference)


def test_new_experiment_entries_reuse_the_checkpoints(reference, tmp_path, monkeypatch):
    directory = tmp_path / "run"
    shutil.copytree(reference.directory, directory)
    calls = []
    monkeypatch.setattr(runner_work, "train", lambda *args, **kwargs: calls.append(args))
    plan = copy.deepcopy(TINY)
    plan["experiments"].append({"name": "predictions", "params": {"batch_size": 7}})
    result = run_plan(parse_plan(plan), directory, progress=False)
    assert calls == []
    assert [u.kind for u in result.units if u.key in result.ran] == ["experiment"] * 2
    assert len(result.summary(1)) == 2


def test_run_interrupted_mid_training_resumes_to_identical_results(
    reference, tmp_path, monkeypatch
):
    epochs = []
    train_epoch = train_module._train_epoch

    def ctrl_c_in_fourth_epoch(*args, **kwargs):
        epochs.append(args[6])
        if len(epochs) == 4:  # the second model's second epoch
            raise KeyboardInterrupt
        return train_epoch(*args, **kwargs)

    monkeypatch.setattr(train_module, "_train_epoch", ctrl_c_in_fourth_epoch)
    directory = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_plan(parse_plan(TINY), directory, progress=False)
    record = manifest(directory)
    assert record["status"] == "interrupted"
    assert [entry["status"] for entry in record["units"]] == ["done", "done", "pending", "pending"]

    epochs.clear()
    resumed = run_plan(parse_plan(TINY), directory, progress=False)
    assert epochs == [2]  # training resumed after its last finished epoch
    assert resumed.ran == [unit.key for unit in reference.units[2:]]
    assert manifest(directory)["status"] == "complete"
    assert_same_results(directory, reference)


def kill_after_the_first_unit(path: Path, directory: Path, deadline_s: float) -> int:
    """Run the plan at ``path`` with ``attnexplain run`` in its own process, kill it with
    SIGKILL as soon as a unit is done, and return how many units were done."""
    process = subprocess.Popen(
        [sys.executable, "-m", "attnexplain", "run", str(path), "--out", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    deadline = time.monotonic() + deadline_s
    while not list(directory.glob("units/*/done")):
        assert process.poll() is None and time.monotonic() < deadline, "no unit finished"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    return len(list(directory.glob("units/*/done")))


def test_killed_run_resumes_to_identical_results(reference, tmp_path):
    # The average model first: the LSTM still trains when the first unit is done, so the
    # kill lands mid-run (unit keys do not depend on the order of the plan's models).
    plan = copy.deepcopy(TINY)
    plan["models"].reverse()
    path, directory = write_plan(tmp_path / "plan.yaml", plan), tmp_path / "run"
    finished = kill_after_the_first_unit(path, directory, deadline_s=120)
    assert 1 <= finished < 4

    resumed = run_plan(path, directory, progress=False)
    assert len(resumed.ran) == 4 - finished
    assert_same_results(directory, reference)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"epochs": 3}, "unknown key 'epochs'; allowed keys: name, datasets"),
        (
            {"models": [{"encoder": "lstm"}, {"encodr": "cnn"}]},
            "models[1]: unknown key 'encodr' (did you mean 'encoder'?)",
        ),
        (
            {"models": [{"encoder": "lstm"}, {"encoder": "gru"}]},
            "models[1].encoder: unknown encoder 'gru'; choose one of lstm, cnn, average",
        ),
        ({"seeds": ["ten"]}, "seeds[0]: should be a valid integer, got 'ten'"),
        ({"train": {"epochs": 2.5}}, "train.epochs: should be a valid integer, got 2.5"),
        ({"datasets": ["imbd"]}, "datasets[0].name: unknown dataset 'imbd'; choose one of imdb"),
        (
            {"datasets": [{"name": "synthetic", "options": {"size": 9}}]},
            "datasets[0]: unknown option 'size' for dataset 'synthetic'; known: n,",
        ),
        (
            {"experiments": [{"name": "permutation"}]},
            "experiments[0].name: unknown experiment 'permutation'; choose one of predictions",
        ),
        (
            {"experiments": [{"name": "predictions", "params": {"batch": 8}}]},
            "experiments[0].params: unknown parameter 'batch' for experiment 'predictions'",
        ),
        (
            {"models": [{"pretrained": "minilm", "encoder": "lstm"}]},
            "models[0]: a pretrained model takes no encoder",
        ),
        ({"models": []}, "models: needs at least 1 entry"),
        ({"seeds": None}, "seeds: should be a valid list, got None"),
    ],
)
def test_malformed_plan_names_the_field(tmp_path, change, expected):
    path = write_plan(tmp_path / "bad.yaml", {**TINY, **change})
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    message = str(caught.value)
    assert message.startswith(f"plan {path}: ")
    assert expected in message


def test_missing_key_and_broken_files_are_plan_errors(tmp_path):
    without_seeds = {k: v for k, v in TINY.items() if k != "seeds"}
    with pytest.raises(PlanError, match="seeds: required; add it"):
        load_plan(write_plan(tmp_path / "a.yaml", without_seeds))
    broken = tmp_path / "b.yaml"
    broken.write_text("name: x\nmodels: [\n")
    with pytest.raises(PlanError, match="not valid YAML at line"):
        load_plan(broken)
    with pytest.raises(PlanError, match="expected a mapping"):
        load_plan(write_plan(tmp_path / "c.yaml", ["name"]))
    with pytest.raises(PlanError, match="cannot be read"):
        load_plan(tmp_path / "missing.yaml")


def test_units_are_keyed_by_their_config():
    plan = parse_plan(TINY)
    keys = [unit.key for unit in expand(plan)]
    assert len(set(keys)) == 4
    seeds = parse_plan({**TINY, "seeds": [1, 2]})
    more = [unit.key for unit in expand(seeds)]
    assert set(keys) < set(more) and len(more) == 8
    pretrained = parse_plan(
        {**TINY, "models": [{"pretrained": "minilm"}], "finetune": {"lr": 1e-4}}
    )
    training = expand(pretrained)[0]
    assert training.config["model"] == {"pretrained": "minilm"}
    assert training.train_config.lr == 1e-4 and training.train_config.epochs == 3


def test_a_selection_runs_the_plans_own_units_and_names_unknown_entries():
    plan = parse_plan({**TINY, "seeds": [1, 2]})
    chosen = plan.select(models=["average-additive-h16"])
    keys = {unit.key for unit in expand(plan)}
    kept = expand(chosen)
    assert {unit.key for unit in kept} < keys and len(kept) == 4
    assert {unit.training.model.label for unit in kept if isinstance(unit, ExperimentUnit)} == {
        "average-additive-h16"
    }
    assert plan.select(datasets=["synthetic"]) == plan
    with pytest.raises(PlanError, match="no models 'lstm-additive'; it lists lstm-additive-h16"):
        plan.select(models=["lstm-additive"])


def test_cli_runs_part_of_a_plan_then_the_rest(tmp_path):
    path, out = write_plan(tmp_path / "plan.yaml", TINY), tmp_path / "out"
    part = run_cli("run", str(path), "--out", str(out), "--model", "lstm-additive-h16")
    assert part.returncode == 0, part.stderr
    assert "2 units: 2 run, 0 reused" in part.stdout
    whole = run_cli("run", str(path), "--out", str(out))
    assert "4 units: 2 run, 2 reused" in whole.stdout
    bad = run_cli("run", str(path), "--out", str(out), "--dataset", "imdb")
    assert bad.returncode == 2
    assert "plan 'tiny' has no datasets 'imdb'; it lists synthetic" in bad.stderr


def test_max_rows_caps_the_splits_a_unit_sees(tmp_path):
    capped = {"name": "synthetic", "options": {"n": 600}, "max_rows": {"train": 100, "test": 20}}
    plan = parse_plan({**TINY, "datasets": [capped], "models": TINY["models"][:1]})
    dataset = plan.datasets[0].load()
    assert dataset.sizes() == {"train": 100, "dev": 60, "test": 20}
    uncapped = expand(parse_plan({**TINY, "models": TINY["models"][:1]}))
    assert expand(plan)[0].key != uncapped[0].key
    result = run_plan(plan, tmp_path, progress=False)
    assert len(result.results()) == 20
    # tables tell capped entries of a dataset apart
    assert plan.datasets[0].label == "synthetic-n600-train100-test20"
    assert set(result.summary(0)["dataset"]) == {"synthetic-n600-train100-test20"}
    with pytest.raises(PlanError, match=r"datasets\[0\]\.max_rows: unknown key 'val'; allowed"):
        parse_plan({**TINY, "datasets": [{"name": "synthetic", "max_rows": {"val": 5}}]})


def test_site_layers_share_the_fine_tuned_model_and_are_refused_for_classic_models():
    plan = parse_plan(
        {**TINY, "models": [{"pretrained": "minilm"}, {"pretrained": "minilm", "site_layer": 2}]}
    )
    units = expand(plan)
    assert [unit.kind for unit in units] == ["train", "experiment", "experiment"]
    assert [unit.label for unit in units[1:]] == [
        "synthetic-n600 / minilm / seed 1 / predictions",
        "synthetic-n600 / minilm-layer2 / seed 1 / predictions",
    ]
    assert plan.models[1].label == "minilm-layer2"
    with pytest.raises(PlanError, match=r"models\[0\]: site_layer picks the attention layer"):
        parse_plan({**TINY, "models": [{"encoder": "lstm", "site_layer": 0}]})


def test_shipped_plans_are_valid():
    plans = sorted((REPO / "experiments").glob("*.yaml"))
    assert plans
    for path in plans:
        assert isinstance(load_plan(path), Plan)


def test_cli_run_prints_where_results_went_and_a_summary(tmp_path):
    path, out = write_plan(tmp_path / "plan.yaml", TINY), tmp_path / "out"
    result = run_cli("run", str(path), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "4 units: 4 run, 0 reused" in result.stdout
    assert f"results: {out}" in result.stdout
    lines = result.stdout.splitlines()
    header = lines[lines.index("predictions") + 1].split()
    assert header[:5] == ["dataset", "model", "seed", "n", "accuracy"]
    assert sum("lstm-additive-h16" in line for line in lines) == 1
    assert manifest(out)["plan_file"] == str(path)


def test_cli_run_puts_jain_wallace_summaries_beside_the_papers(tmp_path):
    plan = {
        **TINY,
        "datasets": [{"name": "rt-sentences", "max_rows": {"train": 400, "dev": 50}}],
        "models": [{"encoder": "lstm"}],  # the paper's size: other sizes are not compared
        "seeds": [1, 2],
        "max_instances": 30,
        "experiments": [
            {"name": "jain_wallace.correlation", "params": {"methods": ["jw-gradient"]}}
        ],
    }
    result = run_cli("run", str(write_plan(tmp_path / "plan.yaml", plan)), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("beside the papers"))
    header, rows = lines[start + 1].split(), lines[start + 2 :]
    assert header == [
        "dataset", "model", "seed", "quantity", "predicted_class", "ours", "ours_low",
        "ours_high", "paper", "holds",
    ]  # fmt: skip
    # SST's tau(attention, gradient) for the BiLSTM: .40 (negative) / .38 (positive), per seed
    paper = {
        (row.split()[2], row.split()[5]): row.split()[-2]
        for row in rows
        if "tau jw-gradient" in row
    }
    assert paper == {
        (seed, predicted): value
        for seed in ("1", "2")
        for predicted, value in (("negative", "0.400"), ("positive", "0.380"))
    }
    # the capped entry's label is matched to its dataset, rt-sentences (SST's stand-in)
    assert {row.split()[0] for row in rows if row.strip()} == {"rt-sentences-train400-dev50"}


def _assert_the_jain_wallace_contrast(result: RunResult) -> None:
    """Both models learn the planted task, and attention agrees with the gradient far more for
    the Average encoder than for the BiLSTM, the contrast of J&W's Table 2."""
    accuracy = result.summary(0).set_index("model")["accuracy"]
    assert (accuracy > 0.95).all(), accuracy
    correlation = result.summary(1)
    tau = correlation[correlation["method"] == "jw-gradient"].groupby("model")["mean_tau"].mean()
    assert tau["average-additive"] > tau["lstm-additive"] + 0.2, tau
    adversarial = result.results(3)
    assert len(adversarial) == 2 * result.plan.max_instances
    assert (adversarial["eps_max_jsd"] >= 0).all()


@pytest.mark.slow
def test_the_main_job_plan_trains_and_reproduces_the_jain_wallace_contrast(tmp_path):
    """experiments/quick.yaml, the README's main job, as it ships."""
    result = run_plan(REPO / "experiments" / "quick.yaml", tmp_path, progress=False)
    _assert_the_jain_wallace_contrast(result)


def test_the_main_job_on_fewer_instances_reproduces_the_jain_wallace_contrast(tmp_path):
    """experiments/quick.yaml's models and training on 40 test instances, the adversarial
    search cut to 50 steps (the whole plan runs with -m slow)."""
    plan = yaml.safe_load((REPO / "experiments" / "quick.yaml").read_text(encoding="utf-8"))
    plan["max_instances"] = 40
    plan["experiments"][-1]["params"]["steps"] = 50
    _assert_the_jain_wallace_contrast(run_plan(parse_plan(plan), tmp_path, progress=False))


def test_cli_bad_plan_prints_one_error_line(tmp_path):
    bad = {**TINY, "models": [{"encoder": "lstm"}, {"encoder": "gru"}]}
    result = run_cli("run", str(write_plan(tmp_path / "bad.yaml", bad)), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: plan ")
    assert "models[1].encoder: unknown encoder 'gru'" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_a_unit_finished_meanwhile_by_another_run_is_not_computed_again(reference, monkeypatch):
    # two runs of parts of one plan share a directory: each unit is done once
    store = runner_work.RunStore(reference.directory)
    unit = next(u for u in reference.units if isinstance(u, ExperimentUnit))
    monkeypatch.setattr(
        runner_work.UnitWorker, "_experiment", lambda self, unit: pytest.fail("computed again")
    )
    finished = runner_work.UnitWorker(store, progress=False)(unit)
    assert finished == store.finished(unit.key)
