"""`attnexplain reproduce`: its plans, its dry run, and the papers' claims judged on runs."""

from __future__ import annotations

import pandas as pd
import pytest

from attnexplain.errors import AttnExplainError
from attnexplain.experiments.claims import CLAIMS, UNTESTABLE, Evidence, claims_markdown, verdicts
from attnexplain.reproduce import FULL_PLANS, MAIN_PLAN, jobs
from attnexplain.runner import load_plan
from tests.conftest import run_cli


def test_the_main_job_runs_both_papers_on_real_data():
    (job,) = jobs()
    plan = load_plan(job.plan)
    assert job.plan.name == MAIN_PLAN and job.out.as_posix() == "runs/reproduce"
    assert [dataset.name for dataset in plan.datasets] == ["imdb", "rt-sentences"]
    assert [model.label for model in plan.models] == ["lstm-additive", "average-additive"]
    assert {entry.name for entry in plan.experiments} == {
        "jain_wallace.correlation",
        "jain_wallace.permutation",
        "jain_wallace.adversarial",
        "wiegreffe_pinter.uniform",
        "wiegreffe_pinter.seeds",
        "wiegreffe_pinter.diagnostic",
    }
    assert plan.messages(), "the plan says what it cuts"


def test_full_runs_every_full_plan_into_its_own_directory(tmp_path):
    planned = jobs(full=True, out=tmp_path)
    assert [job.plan.name for job in planned] == list(FULL_PLANS)
    assert [job.out for job in planned] == [
        tmp_path / name.removesuffix(".yaml") for name in FULL_PLANS
    ]
    for job in planned:
        load_plan(job.plan)  # valid


def test_dry_run_on_a_fresh_directory_estimates_from_the_reference_run(tmp_path):
    done = run_cli("reproduce", "--dry-run", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "note (reproduce): IMDB is a subset" in done.stderr
    *_, summary, side_by_side = done.stdout.strip().splitlines()
    assert summary.startswith("34 units: 0 finished, 34 to run; estimated time for the rest: ~")
    assert "without an estimate" not in summary
    assert side_by_side.startswith("about ") and "workers side by side" in side_by_side
    assert not (tmp_path / "reproduce").exists()  # a dry run writes nothing


def beside(rows: list[tuple[str, str, str, float, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["dataset", "model", "quantity", "ours", "paper"])
    return frame.assign(
        seed=10, predicted_class="negative", difference=frame["ours"] - frame["paper"]
    )


def verdict(evidence: Evidence, start: str) -> pd.Series:
    table = verdicts(evidence)
    return table[table["claim"].str.startswith(start)].iloc[0]


@pytest.mark.parametrize(("ours", "holds"), [(0.33, "yes"), (0.47, "yes"), (0.48, "no")])
def test_a_number_claim_holds_within_its_stated_tolerance(ours, holds):
    evidence = Evidence(
        {}, beside([("rt-sentences", "lstm-additive", "tau jw-gradient", ours, 0.40)])
    )
    row = verdict(evidence, "A BiLSTM's attention correlates only weakly with gradient")
    assert row["holds"] == holds
    assert row["ours"] == f"rt-sentences {ours:.2f} (largest gap {abs(ours - 0.40):.2f})"
    assert "+-.07" in row["tolerance"]


def test_ordering_claims_are_judged_on_every_dataset_run():
    correlation = pd.DataFrame(
        {
            "dataset": ["bbc", "bbc", "tweets", "tweets"],
            "model": ["lstm-additive", "average-additive"] * 2,
            "seed": 10,
            "method": "jw-gradient",
            "predicted_class": "negative",
            "mean_tau": [0.3, 0.6, 0.7, 0.5],  # tweets: the BiLSTM above the Average
        }
    )
    evidence = Evidence({"jain_wallace.correlation": correlation}, pd.DataFrame())
    row = verdict(evidence, "Attention agrees less with gradients")
    assert row["holds"] == "no"
    assert "BiLSTM lower in 1 of 2 dataset / class pairs" in row["ours"]


def _diagnostic(attentions: list[str], f1s: list[float]) -> Evidence:
    summary = pd.DataFrame(
        {"dataset": "sst", "model": "lstm-additive", "seed": 10, "attention": attentions, "f1": f1s}
    )
    return Evidence({"wiegreffe_pinter.diagnostic": summary}, pd.DataFrame())


def test_every_adversary_mlp_is_judged_even_when_two_share_a_label():
    # two W&P adversaries (lambda .001 and .1) both labelled wp-adversary: the second does
    # better than the base model's attention, so the claim does not hold; a pivot that kept
    # the first of them said "1 of 1" and "yes"
    evidence = _diagnostic(
        ["uniform", "trained", "base", "wp-adversary", "wp-adversary"],
        [0.60, 0.70, 0.75, 0.65, 0.80],
    )
    row = verdict(evidence, "Diagnostic MLP: attention from adversaries")
    assert row["holds"] == "no"
    assert "below the base model's in 1 of 2 MLPs" in row["ours"]
    ranking = verdict(evidence, "Diagnostic MLP: the base model's attention helps")
    assert ranking["holds"] == "yes" and "ordering holds in 1 of 1" in ranking["ours"]


def test_two_different_base_mlps_for_one_model_are_refused_not_pivoted():
    evidence = _diagnostic(["uniform", "trained", "base", "base"], [0.60, 0.70, 0.75, 0.50])
    with pytest.raises(AttnExplainError, match="several MLPs for one model and attention"):
        verdicts(evidence)
    # the same MLP seen by two runs counts once
    same = _diagnostic(["uniform", "trained", "base", "base"], [0.60, 0.70, 0.75, 0.75])
    assert verdict(same, "Diagnostic MLP: the base model's attention helps")["holds"] == "yes"


@pytest.mark.parametrize(("babi", "holds"), [(0.85, "yes"), (0.07, "no")])
def test_pair_tasks_move_more_under_permutation_per_model(babi, holds):
    permutation = pd.DataFrame(
        {
            "dataset": ["babi-2", "rt-sentences", "babi-2", "rt-sentences"],
            "model": "lstm-additive",
            "seed": 10,
            "bin": ["[.75, 1]", "[.75, 1]", "all", "all"],
            "predicted_class": ["garden", "negative", "all", "all"],
            "median": [0.99, 0.08, babi, 0.04],
            "count": 50,
            "pairs": [True, False, True, False],
        }
    )
    evidence = Evidence({"jain_wallace.permutation": permutation}, pd.DataFrame())
    row = verdict(evidence, "In pair tasks (question answering, NLI) permuting attention")
    assert row["holds"] == holds
    assert row["ours"] == (
        f"lstm-additive: pair tasks babi-2 {babi:.2f} against single texts rt-sentences 0.04"
    )


def test_claims_without_evidence_say_not_run_and_the_untestable_are_listed():
    table = verdicts(Evidence({}, pd.DataFrame()))
    assert len(table) == len(CLAIMS) and set(table["holds"]) == {"not run"}
    text = claims_markdown(table)
    assert text.count("| not run |") == len(CLAIMS)
    assert all(why in text for _, _, why in UNTESTABLE)
    assert "MIMIC-III needs credentialed access" in text


@pytest.mark.slow
def test_reproduce_end_to_end_writes_the_report_and_judges_the_claims(tmp_path):
    # the README's main job, as a user runs it (about 4 minutes on 2 CPU cores)
    done = run_cli("reproduce", "--out", str(tmp_path), "--export-to", str(tmp_path / "export"))
    assert done.returncode == 0, done.stderr
    for name in ("report.html", "report.pdf"):
        assert (tmp_path / "reproduce" / "report" / name).stat().st_size > 100_000
        assert (tmp_path / "export" / "reproduce" / name).is_file()
    assert f"report: {tmp_path / 'reproduce' / 'report' / 'report.html'}" in done.stdout
    assert len(list((tmp_path / "export" / "reproduce" / "summaries").glob("*.csv"))) == 6
    claims = pd.read_csv(tmp_path / "export" / "main-claims.csv")
    assert len(claims) == len(CLAIMS) and (claims["holds"] == "yes").sum() >= 5


def test_report_only_reports_what_is_finished_and_runs_nothing(tmp_path):
    done = run_cli("reproduce", "--report-only", "--out", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: nothing reproduced yet under {tmp_path}: run `attnexplain reproduce` first"
    )
    assert not any(tmp_path.iterdir())
