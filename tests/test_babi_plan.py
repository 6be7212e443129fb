"""J&W's question answering half through the runner: a plan on a small bAbI slice trains the
pair models (a classic model on a pair dataset is one), runs the J&W battery and the league
on passage tokens with the supporting facts as ground truth, and resumes after kill -9 to the
same results."""

from __future__ import annotations

import pytest

from attnexplain import load_checkpoint
from attnexplain.models.pair import PairModel
from attnexplain.runner import parse_plan, run_plan
from attnexplain.runner.store import RunStore
from tests.test_runner import assert_same_results, kill_after_the_first_unit, write_plan

BABI_SLICE = {
    "name": "babi-slice",
    "datasets": [
        {"name": "babi-2", "options": {"train_questions": 400, "test_questions": 40, "seed": 1}}
    ],
    "models": [
        {"encoder": "average", "attention": "additive", "hidden_size": 16},
        {"encoder": "lstm", "attention": "additive", "hidden_size": 16},
    ],
    "seeds": [10],
    "train": {"epochs": 2, "embeddings": "random", "embed_dim": 16, "batch_size": 50},
    "max_instances": 20,
    "experiments": [
        {"name": "jain_wallace.correlation"},
        {"name": "jain_wallace.permutation", "params": {"permutations": 20}},
        {"name": "jain_wallace.adversarial", "params": {"steps": 20}},
        {"name": "league.methods", "params": {"methods": ["attention", "leave-one-out"]}},
    ],
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The slice run once, uninterrupted."""
    return run_plan(parse_plan(BABI_SLICE), tmp_path_factory.mktemp("babi"), progress=False)


def test_the_plan_trains_pair_models_and_scores_passages_against_supporting_facts(reference):
    store = RunStore(reference.directory)
    trainings = [unit for unit in reference.units if unit.kind == "train"]
    for unit in trainings:
        checkpoint = load_checkpoint(store.checkpoint_dir(unit.key))
        assert isinstance(checkpoint.model, PairModel)
    correlation = reference.results(0)
    assert len(correlation) == 2 * 20 and correlation["tau_jw-gradient"].notna().all()
    league = reference.results(3)
    # every instance has supporting-fact tokens in its passage, so AUPRC is defined everywhere
    assert league["auprc"].between(0, 1).all()
    itself = league.loc[league["method"] == "leave-one-out", "kendall_loo"]
    assert itself.notna().sum() > len(itself) / 2  # NaN where every deletion ties
    assert itself.dropna().to_numpy() == pytest.approx(1.0)


def test_a_killed_babi_plan_resumes_to_identical_results(reference, tmp_path):
    path, directory = write_plan(tmp_path / "plan.yaml", BABI_SLICE), tmp_path / "run"
    finished = kill_after_the_first_unit(path, directory, deadline_s=180)
    assert 1 <= finished < len(reference.units)
    resumed = run_plan(path, directory, progress=False)
    assert len(resumed.ran) == len(reference.units) - finished
    assert_same_results(directory, reference)
