"""Wiegreffe & Pinter's experiments on the planted task, where the answer is known: the label
depends on ONE planted token among 30-60 distractors, so attention that finds it matters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from attnexplain.errors import PlanError
from attnexplain.experiments import wiegreffe_pinter as wp
from attnexplain.experiments.registry import get_experiment
from attnexplain.runner import ExperimentUnit, RunResult, expand, parse_plan, run_plan
from tests.test_runner import assert_same_results

ONE_TOKEN = {
    "name": "synthetic",
    "options": {
        "n": 2000,
        "seed": 5,
        "min_length": 30,
        "max_length": 60,
        "signal_per_text": [1, 1],
    },
}
PLAN = {
    "name": "wp",
    "datasets": [ONE_TOKEN],
    "models": [{"encoder": "lstm", "hidden_size": 32}],
    "seeds": [1],
    "max_instances": 100,
    "train": {"epochs": 4, "embeddings": "random", "embed_dim": 32},
    "experiments": [
        {"name": "jain_wallace.adversarial", "params": {"steps": 100, "adversaries": 3}},
        {"name": "wiegreffe_pinter.uniform"},
        {"name": "wiegreffe_pinter.seeds", "params": {"extra_seeds": 2}},
        {"name": "wiegreffe_pinter.adversary", "params": {"epochs": 12, "patience": 3}},
        {"name": "wiegreffe_pinter.consistent", "params": {"lambdas": [0.001, 0.1, 10.0]}},
        {
            "name": "wiegreffe_pinter.diagnostic",
            "params": {"epochs": 6, "train_rows": 800},
        },
    ],
}


def summary(result: RunResult, name: str) -> pd.DataFrame:
    entry = [e.name for e in result.plan.experiments].index(name)
    return result.summary(entry)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> RunResult:
    return run_plan(parse_plan(PLAN), tmp_path_factory.mktemp("wp"), progress=False)


def test_frozen_uniform_attention_is_clearly_worse_than_trained(reference):
    table = summary(reference, "wiegreffe_pinter.uniform").set_index("attention")
    assert table.loc["trained", "f1"] > 0.9
    assert table.loc["trained", "f1"] - table.loc["uniform", "f1"] > 0.2
    # on the whole test split (200 rows), not the plan's first 100
    assert (table["count"] == 200).all()


def test_diagnostic_mlp_given_the_models_attention_beats_uniform(reference):
    table = summary(reference, "wiegreffe_pinter.diagnostic").set_index("attention")
    assert list(table.index) == list(wp.DIAGNOSTIC_VARIANTS)
    assert table.loc["base", "f1"] > table.loc["uniform", "f1"] + 0.15
    assert table.loc["trained", "f1"] > table.loc["uniform", "f1"]


def test_consistent_adversary_moves_attention_more_as_lambda_grows(reference):
    table = summary(reference, "wiegreffe_pinter.consistent").set_index("source")
    jsd = [table.loc[f"lambda={value:g}", "mean jsd"] for value in (0.001, 0.1, 10.0)]
    assert jsd[0] < jsd[-1] and jsd[-1] > 0.2
    assert table.loc["lambda=0.001", "mean output change"] < 0.1
    assert {"seeds", "uniform", "J&W adversary"} <= set(table.index)
    assert wp.figure_consistent(reference.results(4)).axes


def test_seed_variance_sits_beside_the_jw_adversaries(reference):
    df = reference.results(2)
    assert len(df) == 100
    assert df["jsd"].between(0, np.log(2)).all() and (df["output_change"] >= 0).all()
    assert all(len(values) == 2 for values in df["seed_jsd"])
    # the search moves attention far more than retraining with another seed does
    assert df["jw_jsd"].median() > df["jsd"].median()
    assert len(wp.figure_seeds(df).axes) == 2


def test_need_units_are_shared_and_keep_their_own_rows(reference):
    units = reference.units
    adversarial = [
        u
        for u in units
        if isinstance(u, ExperimentUnit) and u.experiment == "jain_wallace.adversarial"
    ]
    # the plan's own (test, 100 rows) and the diagnostic's (train, 800 rows), each once
    assert sorted((u.split, u.max_instances) for u in adversarial) == [
        ("test", 100),
        ("train", 800),
    ]
    adversaries = [u for u in units if getattr(u, "experiment", "") == "wiegreffe_pinter.adversary"]
    assert sorted(u.params["lambda"] for u in adversaries) == [0.001, 0.1, 10.0]
    # the plan's summary shows its own rows only
    adversarial = summary(reference, "jain_wallace.adversarial")
    assert adversarial.loc[adversarial["predicted_class"] == "all", "count"].tolist() == [100]


# One W&P unit that trains a sub-model for many short epochs: the default run's kill -9 check
# (the whole plan's, above, takes minutes and runs with -m slow).
SMALL_PLAN = {
    **PLAN,
    "name": "wp-small",
    "datasets": [{**ONE_TOKEN, "options": {**ONE_TOKEN["options"], "n": 300}}],
    "models": [{"encoder": "average", "hidden_size": 16}],
    "max_instances": 20,
    "train": {"epochs": 2, "embeddings": "random", "embed_dim": 16},
    "experiments": [
        {"name": "wiegreffe_pinter.adversary", "params": {"epochs": 10, "patience": 10}}
    ],
}


def _killed_while_training_a_sub_model_then_resumed(
    plan_dict: dict, reference: RunResult, tmp_path: Path
) -> None:
    """Run ``plan_dict`` in a process killed with SIGKILL while a W&P unit trains a sub-model
    (its resume state is on disk), run it again, and compare with ``reference``."""
    plan = tmp_path / "wp.yaml"
    plan.write_text(yaml.safe_dump(plan_dict, sort_keys=False))
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "attnexplain", "run", str(plan), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(out.glob("units/*/work/**/resume.json")):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (out / "units").exists() or len(list(out.glob("units/*/done"))) < len(
        reference.units
    )
    run_plan(plan, out, progress=False)
    assert_same_results(out, reference)


@pytest.mark.slow
def test_every_wiegreffe_pinter_unit_resumes_after_kill_9(reference, tmp_path):
    _killed_while_training_a_sub_model_then_resumed(PLAN, reference, tmp_path)


def test_a_wiegreffe_pinter_unit_resumes_after_kill_9_mid_sub_model(tmp_path):
    reference = run_plan(parse_plan(SMALL_PLAN), tmp_path / "reference", progress=False)
    _killed_while_training_a_sub_model_then_resumed(SMALL_PLAN, reference, tmp_path)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "wiegreffe_pinter.consistent", "params": {"lambdas": []}}, "lambdas must be"),
        (
            {"name": "wiegreffe_pinter.consistent", "params": {"lambdas": [0.1, -1.0]}},
            "lambdas must be",
        ),
        ({"name": "wiegreffe_pinter.adversary", "params": {"lambda": -0.5}}, "lambda must be >= 0"),
        ({"name": "wiegreffe_pinter.seeds", "params": {"extra_seeds": 9}}, "extra_seeds must be"),
        (
            {"name": "wiegreffe_pinter.diagnostic", "params": {"variants": ["random"]}},
            "variants must be",
        ),
    ],
)
def test_bad_grids_are_refused_by_plan_validation_with_the_field_path(entry, message):
    with pytest.raises(PlanError, match=rf"experiments\[0\]\.params: .*{message}"):
        parse_plan({**PLAN, "experiments": [entry]})


def test_multi_class_datasets_run_with_macro_f1(tmp_path):
    three = {"name": "synthetic", "options": {"n": 600, "num_classes": 3, "seed": 2}}
    plan = {
        **PLAN,
        "datasets": [three],
        "models": [{"encoder": "average", "hidden_size": 16}],
        "experiments": [
            {"name": "wiegreffe_pinter.uniform"},
            {
                "name": "wiegreffe_pinter.diagnostic",
                "params": {"variants": ["uniform", "base"], "epochs": 2},
            },
        ],
    }
    result = run_plan(parse_plan(plan), tmp_path, progress=False)
    uniform = result.results(0)
    assert set(uniform["label"]) == {0, 1, 2} and (uniform["classes"] == 3).all()
    table = result.summary(1)
    assert list(table["attention"]) == ["uniform", "base"] and table["f1"].between(0, 1).all()
    # the summary says which F1 it is
    assert (table["f1 of"] == "macro, 3 classes").all()


def test_an_experiment_with_needs_called_without_a_run_explains_what_to_do(reference):
    from attnexplain.errors import InvalidInputError
    from attnexplain.models.checkpoint import load_checkpoint

    training = next(u for u in reference.units if u.kind == "train")
    checkpoint = load_checkpoint(Path(reference.directory) / "units" / training.key / "checkpoint")
    experiment = get_experiment("wiegreffe_pinter.uniform")
    with pytest.raises(InvalidInputError, match="run it from a plan"):
        experiment.run_unit(checkpoint, pd.DataFrame(), experiment.resolve({}), False, None)


def test_expand_lists_needs_before_the_experiment_that_reads_them():
    units = expand(parse_plan(PLAN))
    position = {unit.key: i for i, unit in enumerate(units)}
    for unit in units:
        assert all(position[key] < position[unit.key] for key in unit.depends_on)


def test_uniform_f1_sits_beside_the_papers_table_2():
    from attnexplain.experiments.paper_numbers import beside_paper, summary_quantities

    ours = pd.DataFrame(
        {
            "dataset": ["rt-sentences", "rt-sentences", "imdb-train21497"],
            "model": ["lstm-additive"] * 3,
            "seed": [10] * 3,
            "attention": ["trained", "uniform", "uniform"],
            "f1": [0.8, 0.79, 0.88],
            "count": [1000] * 3,
        }
    )
    table = beside_paper(
        summary_quantities("wiegreffe_pinter.uniform", ours), {"imdb-train21497": "imdb"}
    )
    assert table["paper"].tolist() == [0.831, 0.822, 0.879]
    assert table["paper_dataset"].tolist() == ["SST", "SST", "IMDB"]
    assert np.allclose(table["difference"], [0.8 - 0.831, 0.79 - 0.822, 0.88 - 0.879])


def test_a_selection_of_a_plan_with_restricted_entries_reads_back_from_its_manifest():
    from attnexplain.runner import load_plan

    plan = load_plan(Path(__file__).resolve().parents[1] / "experiments" / "wiegreffe_pinter.yaml")
    selected = plan.select(["rt-sentences"], ["lstm-additive"])
    # what manifest.json stores, parsed back as RunResult.load does
    again = parse_plan(selected.model_dump(mode="json", exclude_none=True))
    assert all(entry.datasets in (None, ["rt-sentences"]) for entry in again.experiments)
    assert {u.key for u in expand(again)} <= {u.key for u in expand(plan)}
    # IMDB's own entries (fewer seeds, fewer lambdas) are gone with IMDB
    assert not any(entry.note and "IMDB" in entry.note for entry in again.experiments)
