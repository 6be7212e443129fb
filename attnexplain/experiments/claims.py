"""The papers' claims, each judged on the runs that can test it.

A :class:`Claim` is a statement of Jain & Wallace 2019 or Wiegreffe & Pinter 2019, the paper's
number (or "figure only"), the rule we judge it by and a function that reads our runs.
:func:`judge` returns one row per claim: what we measured and whether the claim holds, or that
the runs hold nothing to test it with. :data:`UNTESTABLE` lists the claims no data we can get
can test, and why.

One rule for "holds" (reports/README.md, "When a claim holds"): a paper's number holds when it
lies inside our 95% bootstrap interval widened by the between-seed spread and, for a stand-in
dataset, a stated allowance (:func:`~attnexplain.uncertainty.agrees_with`); an ordering holds
when a paired bootstrap test over instances passes at the 95% level
(:func:`~attnexplain.uncertainty.ordered`). Every claim is judged per dataset and model and
holds only where it holds on each. Numbers compare only where a dataset stands in for a paper
dataset (:data:`~attnexplain.experiments.paper_numbers.PAPER_DATASETS`); orderings are judged
on every dataset run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from attnexplain.errors import InvalidInputError
from attnexplain.experiments.paper_numbers import (
    ALL_CLASSES,
    ALLOWANCES,
    PAPER_DATASETS,
    PAPER_NUMBERS,
    TABLE_4_JSD,
    judge_claims,
    run_beside_paper,
)
from attnexplain.runner.run import RunResult
from attnexplain.uncertainty import Interval, agrees_with, ordered, paired_f1_difference

JW = "J&W 2019"
WP = "W&P 2019"


# the experiments whose per-instance tables the ordering claims test on
PER_INSTANCE = (
    "jain_wallace.correlation",
    "league.methods",
    "wiegreffe_pinter.uniform",
    "wiegreffe_pinter.seeds",
    "wiegreffe_pinter.diagnostic",
    "wiegreffe_pinter.consistent",
)


@dataclass(frozen=True)
class Verdict:
    """What our runs say about a claim: ``ours`` in words and numbers, and whether it holds
    (None: the runs show it, but on no dataset the paper gives a number for)."""

    ours: str
    holds: bool | None


@dataclass(frozen=True)
class Evidence:
    """What claims are judged on: the summaries of every experiment, stacked per experiment
    name, with the registered dataset name (``dataset_name``) beside each row's dataset label,
    whether its rows are text pairs (``pairs``), and the plan entry it comes from (``entry``:
    plan name and index, so two entries of one experiment with other parameters stay apart);
    and our numbers beside the papers'
    (:func:`~attnexplain.experiments.paper_numbers.run_beside_paper`)."""

    summaries: dict[str, pd.DataFrame]
    beside: pd.DataFrame
    per_instance: dict[str, pd.DataFrame] = field(default_factory=dict)
    dataset_names: dict[str, str] = field(default_factory=dict)
    model_names: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, results: Iterable[RunResult]) -> Evidence:
        """The evidence in some runs (a unit shared by two runs counts once)."""
        summaries: dict[str, list[pd.DataFrame]] = {}
        per_instance: dict[str, list[pd.DataFrame]] = {}
        beside, names, models = [], {}, {}
        for result in results:
            names |= {dataset.label: dataset.name for dataset in result.plan.datasets}
            models |= {model.label: model.paper_model for model in result.plan.models}
            pairs = {dataset.label: dataset.reads_pairs for dataset in result.plan.datasets}
            for index, entry in enumerate(result.plan.experiments):
                summary = result.summary(index)
                if len(summary):
                    summary.insert(1, "dataset_name", summary["dataset"].map(names))
                    summary["pairs"] = summary["dataset"].map(pairs)
                    summary["entry"] = f"{result.plan.name}#{index}"
                    summaries.setdefault(entry.name, []).append(summary)
                if entry.name in PER_INSTANCE:
                    table = result.results(index)
                    if len(table):
                        table["entry"] = f"{result.plan.name}#{index}"
                        per_instance.setdefault(entry.name, []).append(table)
            beside.append(run_beside_paper(result))
        stacked = {
            name: pd.concat(tables, ignore_index=True).drop_duplicates(
                subset=[c for c in tables[0].columns if c not in ("count", "entry")]
            )
            for name, tables in summaries.items()
        }
        instances = {
            name: pd.concat(tables, ignore_index=True) for name, tables in per_instance.items()
        }
        beside_table = pd.concat(beside, ignore_index=True) if beside else pd.DataFrame()
        return cls(stacked, beside_table, instances, names, models)

    def instances(self, experiment: str) -> pd.DataFrame:
        """The per-instance tables of ``experiment`` (one of :data:`PER_INSTANCE`) in every
        run, stacked with ``dataset``, ``model``, ``seed`` in front and ``entry`` (plan name
        and index) at the end; empty when no run has it."""
        return self.per_instance.get(experiment, pd.DataFrame())

    def named(self, table: pd.DataFrame) -> pd.DataFrame:
        """``table`` with its ``model`` labels as the papers name the models
        (``lstm-additive-h32`` -> ``lstm-additive``), for the claims that pick models by the
        papers' names."""
        if not len(table):
            return table
        return table.assign(
            model=table["model"].map(lambda label: self.model_names.get(label, label))
        )

    def summary(self, experiment: str) -> pd.DataFrame:
        """The stacked summaries of ``experiment`` (empty when no run has it)."""
        return self.summaries.get(experiment, pd.DataFrame())

    def paper_rows(self, models: str | tuple[str, ...], quantity: str) -> pd.DataFrame:
        """Rows of the beside-the-papers table for ``models`` (the papers' model names) whose
        quantity starts with ``quantity`` and has a paper number."""
        if not len(self.beside):
            return self.beside
        named = self.beside.get("paper_model", self.beside["model"])
        rows = self.beside[
            named.isin([models] if isinstance(models, str) else models)
            & self.beside["quantity"].str.startswith(quantity)
            & self.beside["paper"].notna()
        ]
        return rows.drop_duplicates(subset=["dataset", "model", "quantity", "predicted_class"])


@dataclass(frozen=True)
class Claim:
    paper: str
    claim: str
    paper_number: str
    rule: str
    judge: Callable[[Evidence], Verdict | None]


def _within(models: str | tuple[str, ...], quantity: str) -> Callable[[Evidence], Verdict | None]:
    """Every paper number of ``quantity`` for ``models`` lies in our 95% interval widened by
    the seeds' spread and the stand-in allowance (:func:`~attnexplain.experiments.paper_numbers.
    judge_claims`), judged per dataset, model, class and seed."""

    def judge(evidence: Evidence) -> Verdict | None:
        rows = evidence.paper_rows(models, quantity)
        if not len(rows):
            return None
        judged = judge_claims(rows)
        judged = judged[judged["holds"] != "no interval"]
        if not len(judged):
            return None
        parts = [
            f"{dataset} {_intervals(group)}"
            for dataset, group in judged.groupby("dataset", sort=False)
        ]
        agreeing = int((judged["holds"] == "yes").sum())
        return Verdict(
            f"{', '.join(parts)}; the paper's number inside in {agreeing} of {len(judged)}",
            agreeing == len(judged),
        )

    return judge


def _intervals(rows: pd.DataFrame) -> str:
    """Each row's value and interval, ``.41 [.38, .44]``, joined by ``/``, with a ``*`` where
    the paper's number falls outside."""
    return " / ".join(
        f"{row.ours:.2f} [{row.ours_low:.2f}, {row.ours_high:.2f}]"
        + ("" if row.holds == "yes" else "*")
        for row in rows.itertuples()
    )


def _paired(
    table: pd.DataFrame, keys: list[str], first: str, second: str
) -> Iterable[tuple[tuple, pd.DataFrame]]:
    """``table``'s rows of model ``first`` and model ``second`` joined per instance (columns
    suffixed ``_first`` / ``_second``), per value of ``keys``."""
    joined = table[table["model"] == first].merge(
        table[table["model"] == second],
        on=[*keys, "instance"],
        suffixes=("_first", "_second"),
    )
    return joined.groupby(keys, sort=False) if len(joined) else []


def _bilstm_below_average(evidence: Evidence) -> Verdict | None:
    """Per dataset and seed, a paired bootstrap test over the instances both models
    explained: the Average encoder's mean tau with the gradient above the BiLSTM's."""
    table = evidence.named(evidence.instances("jain_wallace.correlation"))
    if not len(table) or "tau_jw-gradient" not in table:
        return None
    table = table.drop_duplicates(subset=["dataset", "model", "seed", "instance"])
    parts, passed = [], []
    for (dataset, seed), rows in _paired(
        table, ["dataset", "seed"], "lstm-additive", "average-additive"
    ):
        passes, lead = ordered(rows["tau_jw-gradient_first"], rows["tau_jw-gradient_second"])
        passed.append(passes)
        parts.append(f"{dataset} (seed {seed}) Average - BiLSTM {_difference(lead, passes)}")
    if not parts:
        return None
    return Verdict(_tally(parts, passed), all(passed))


def _difference(interval: Interval, passes: bool) -> str:
    return f"{interval.value:+.2f} [{interval.low:+.2f}, {interval.high:+.2f}]" + (
        "" if passes else "*"
    )


def _tally(parts: list[str], passed: list[bool]) -> str:
    return f"{'; '.join(parts)}; holds in {sum(passed)} of {len(passed)}"


def _gradient_and_loo_agree_more(evidence: Evidence) -> Verdict | None:
    """Per dataset, model and seed, paired bootstrap tests over instances: leave-one-out's
    Kendall tau with the gradient above attention's, and the gradient's tau with
    leave-one-out above attention's (the league's per-instance agreement)."""
    table = evidence.instances("league.methods")
    if not len(table) or not {"attention", "jw-gradient", "leave-one-out"} <= set(table["method"]):
        return None
    keys = ["dataset", "model", "seed"]
    wide = table.drop_duplicates(subset=[*keys, "instance", "method"]).pivot_table(
        index=[*keys, "instance"], columns="method", values=["kendall_gradient", "kendall_loo"]
    )
    parts, passed = [], []
    for (dataset, model, seed), rows in wide.groupby(level=keys, sort=False):
        gradient, loo = rows["kendall_gradient"], rows["kendall_loo"]
        with_gradient, lead_gradient = ordered(gradient["attention"], gradient["leave-one-out"])
        with_loo, lead_loo = ordered(loo["attention"], loo["jw-gradient"])
        passed.append(with_gradient and with_loo)
        parts.append(
            f"{dataset} {model} (seed {seed}): tau with the gradient, leave-one-out - attention "
            f"{_difference(lead_gradient, with_gradient)}; tau with leave-one-out, gradient - "
            f"attention {_difference(lead_loo, with_loo)}"
        )
    return Verdict(_tally(parts, passed), all(passed))


def _uniform_costs_little(evidence: Evidence) -> Verdict | None:
    """Per dataset W&P report: the paper's F1 drop (trained - uniform) lies in our paired
    bootstrap interval of the drop, widened by the stand-in allowance."""
    table = evidence.named(evidence.instances("wiegreffe_pinter.uniform"))
    if not len(table):
        return None
    table = table[table["model"] == "lstm-additive"].drop_duplicates(
        subset=["dataset", "model", "seed", "instance"]
    )
    names = evidence.dataset_names
    parts, passed = [], []
    for (dataset, seed), rows in table.groupby(["dataset", "seed"], sort=False):
        paper_dataset = PAPER_DATASETS.get(names.get(dataset, dataset))
        trained = PAPER_NUMBERS.get((paper_dataset, "lstm-additive", "F1 trained"))
        uniform = PAPER_NUMBERS.get((paper_dataset, "lstm-additive", "F1 uniform"))
        if trained is None or uniform is None:
            continue
        drop = paired_f1_difference(
            rows["label"],
            rows["predicted"],
            rows["uniform_predicted"],
            int(rows["classes"].iloc[0]),
        )
        paper = trained[0] - uniform[0]
        agrees = agrees_with(paper, drop.low, drop.high, float("nan"), ALLOWANCES[paper_dataset])
        passed.append(agrees)
        parts.append(
            f"{dataset} (seed {seed}) drop {_difference(drop, agrees)} (paper {paper:+.3f})"
        )
    return Verdict(_tally(parts, passed), all(passed)) if parts else None


def _adversaries_beyond_seeds(evidence: Evidence) -> Verdict | None:
    """Per dataset, model and seed, a paired bootstrap test over instances: the J&W
    adversaries' median JSD from the model's attention above the other seeds' median JSD."""
    table = evidence.instances("wiegreffe_pinter.seeds")
    if not len(table) or "jw_jsd" not in table or table["jw_jsd"].isna().all():
        return None
    table = table.dropna(subset=["jw_jsd"]).drop_duplicates(
        subset=["dataset", "model", "seed", "instance"]
    )
    parts, passed = [], []
    for (dataset, model, seed), rows in table.groupby(["dataset", "model", "seed"], sort=False):
        passes, lead = ordered(rows["jsd"], rows["jw_jsd"], np.median)
        passed.append(passes)
        parts.append(f"{dataset} {model} (seed {seed}) {_difference(lead, passes)}")
    return Verdict(_tally(parts, passed), all(passed))


def _pairs_move_more_under_permutation(evidence: Evidence) -> Verdict | None:
    """Per model: the lower end of every pair-task dataset's interval of the median output
    change under permutation (all instances) at least twice the upper end of every
    single-text dataset's."""
    table = evidence.named(evidence.summary("jain_wallace.permutation"))
    if not len(table) or "pairs" not in table:
        return None
    overall = table[table["bin"] == ALL_CLASSES].drop_duplicates(
        subset=["dataset", "model", "seed"]
    )
    parts, holds = [], True
    for model, group in overall.groupby("model", sort=False):
        pair, single = group[group["pairs"]], group[~group["pairs"].astype(bool)]
        if not len(pair) or not len(single):
            continue
        holds &= bool(pair["median_low"].min() >= 2 * single["median_high"].max())
        parts.append(f"{model}: pair tasks {_named(pair)} against single texts {_named(single)}")
    return Verdict("; ".join(parts), holds) if parts else None


def _named(rows: pd.DataFrame) -> str:
    return ", ".join(
        f"{row.dataset} {row.median:.2f} [{row.median_low:.2f}, {row.median_high:.2f}]"
        for row in rows.itertuples()
    )


DIAGNOSTIC_KEYS = ["dataset", "model", "seed"]


def _diagnostic_mlps(evidence: Evidence) -> pd.DataFrame:
    """The diagnostic MLPs' per-instance predictions in long form: ``dataset``, ``model``,
    ``seed``, ``entry``, ``attention``, ``instance``, ``label``, ``classes``, ``predicted``.
    An MLP is one (model, entry, attention): two W&P adversaries at two lambdas, both named
    ``wp-adversary``, come from two entries and are judged one by one, never merged."""
    table = evidence.instances("wiegreffe_pinter.diagnostic")
    if not len(table):
        return table
    predicted = [c for c in table.columns if c.startswith("predicted_")]
    long = table.melt(
        id_vars=[*DIAGNOSTIC_KEYS, "entry", "instance", "label", "classes"],
        value_vars=predicted,
        var_name="attention",
        value_name="predicted",
    ).dropna(subset=["predicted"])
    return long.assign(attention=long["attention"].str.removeprefix("predicted_"))


def _f1_ordering(better: pd.DataFrame, worse: pd.DataFrame) -> tuple[bool, Interval]:
    """A paired bootstrap test, over the instances both MLPs predicted, that ``better``'s F1
    exceeds ``worse``'s (each the long rows of one MLP)."""
    both = better.merge(worse, on=["instance", "label", "classes"], suffixes=("", "_worse"))
    difference = paired_f1_difference(
        both["label"], both["predicted"], both["predicted_worse"], int(both["classes"].iloc[0])
    )
    return bool(difference.low > 0), difference


def _diagnostic_ranking(evidence: Evidence) -> Verdict | None:
    """Per model and plan entry, paired bootstrap tests over instances: trained above
    uniform, and base not below trained (the upper end of its lead's interval at or above
    0)."""
    table = _diagnostic_mlps(evidence)
    if not len(table):
        return None
    parts, passed = [], []
    for (dataset, model, _seed, _entry), rows in table.groupby(
        [*DIAGNOSTIC_KEYS, "entry"], sort=False
    ):
        mlps = {name: rows[rows["attention"] == name] for name in ("uniform", "trained", "base")}
        if any(mlp.empty for mlp in mlps.values()):
            continue
        above, trained_lead = _f1_ordering(mlps["trained"], mlps["uniform"])
        _, base_lead = _f1_ordering(mlps["base"], mlps["trained"])
        holds = above and base_lead.high >= 0
        passed.append(holds)
        parts.append(
            f"{dataset} {model}: trained - uniform {_difference(trained_lead, above)}, "
            f"base - trained {_difference(base_lead, base_lead.high >= 0)}"
        )
    return Verdict(_tally(parts, passed), all(passed)) if parts else None


def _diagnostic_adversaries(evidence: Evidence) -> Verdict | None:
    """Every adversary MLP against its model's base MLP (the one of its own plan entry, else
    the model's only one): a paired bootstrap test over instances that the base attention's
    F1 is above the adversary's. An adversary without one base MLP is counted, not judged."""
    table = _diagnostic_mlps(evidence)
    if not len(table):
        return None
    adversaries = table[table["attention"].str.contains("adversary")]
    parts, passed, unpaired = [], [], 0
    for (dataset, model, seed, entry, attention), rows in adversaries.groupby(
        [*DIAGNOSTIC_KEYS, "entry", "attention"], sort=False
    ):
        bases = table[
            (table["dataset"] == dataset)
            & (table["model"] == model)
            & (table["seed"] == seed)
            & (table["attention"] == "base")
        ]
        own = bases[bases["entry"] == entry]
        base = own if len(own) else bases
        if base.empty or base["entry"].nunique() > 1:
            unpaired += 1
            continue
        below, lead = _f1_ordering(base, rows)
        passed.append(below)
        parts.append(f"{dataset} {model} {attention}: base - adversary {_difference(lead, below)}")
    if not parts:
        return None
    missing = f"; {unpaired} adversary MLPs without one base MLP, not judged" if unpaired else ""
    return Verdict(_tally(parts, passed) + missing, all(passed))


def _consistent_adversary_reaches_table_4(evidence: Evidence) -> Verdict | None:
    """Per dataset W&P's Table 4 reports: our most distant consistent adversary whose mean
    output change is at most the seeds' reaches the paper's mean JSD (the upper end of its
    interval plus the stand-in allowance at or above it). Other datasets are listed, not
    judged."""
    table = evidence.summary("wiegreffe_pinter.consistent")
    if not len(table):
        return None
    parts, passed = [], []
    for (dataset, model, _seed), group in table.groupby(["dataset", "model", "seed"]):
        seeds = group[group["source"] == "seeds"]
        trained = group[group["lambda"].notna()]
        if not len(seeds) or not len(trained):
            continue
        limit = float(seeds["mean output change"].iloc[0])
        within = trained[trained["mean output change"] <= limit]
        paper_dataset = PAPER_DATASETS.get(group["dataset_name"].iloc[0])
        paper = TABLE_4_JSD.get(paper_dataset)
        if not len(within):
            best = "no lambda within the seeds' output change"
            reaches = False
        else:
            row = within.sort_values("mean jsd").iloc[-1]
            best = (
                f"lambda {row['lambda']:g}: JSD {row['mean jsd']:.2f} [{row['mean jsd_low']:.2f}, "
                f"{row['mean jsd_high']:.2f}] at output change {row['mean output change']:.3f} "
                f"(seeds {limit:.3f})"
            )
            reaches = paper is not None and (
                row["mean jsd_high"] + ALLOWANCES[paper_dataset] >= paper
            )
        if paper is None:
            parts.append(f"{dataset} {model} (not in Table 4): {best}")
            continue
        passed.append(bool(reaches))
        parts.append(
            f"{dataset} {model} (paper JSD {paper:.3f}): {best}" + ("" if reaches else "*")
        )
    if not passed:
        return Verdict("; ".join(parts), None) if parts else None
    return Verdict(_tally(parts, passed), all(passed))


def _trained_adversary_moves_more(evidence: Evidence) -> Verdict | None:
    """W&P Figure 5, per dataset and model: the trained (consistent) adversary nearest to
    J&W's per-instance adversary in attention distance among those at least as distant (the
    most distant if none is) changes the output more than J&W's. A paired bootstrap test
    over instances where the run's per-instance table is at hand; on an export that keeps
    only the summary, the two means compared and marked so."""
    table = evidence.instances("wiegreffe_pinter.consistent")
    summary = evidence.summary("wiegreffe_pinter.consistent")
    if not len(summary):
        return None
    parts, passed = [], []
    for (dataset, model, seed), group in summary.groupby(["dataset", "model", "seed"]):
        jw = group[group["source"] == "J&W adversary"]
        trained = group[group["lambda"].notna()].sort_values("mean jsd")
        if not len(jw) or not len(trained):
            continue
        distance = float(jw["mean jsd"].iloc[0])
        beyond = trained[trained["mean jsd"] >= distance]
        rival = (beyond.iloc[0] if len(beyond) else trained.iloc[-1])["source"]
        head = f"{dataset} {model} (seed {seed}) {rival} - J&W output change "
        rows = (
            table[
                (table["dataset"] == dataset) & (table["model"] == model) & (table["seed"] == seed)
            ]
            if len(table)
            else table
        )
        if len(rows):
            wide = rows.pivot(index="instance", columns="source", values="output_change")
            passes, lead = ordered(wide["J&W adversary"], wide[rival])
            parts.append(head + _difference(lead, passes))
        else:
            means = group.set_index("source")["mean output change"]
            lead_value = float(means[rival] - means["J&W adversary"])
            passes = lead_value > 0
            parts.append(head + f"{lead_value:+.3f} (means only: this export keeps no instances)")
        passed.append(bool(passes))
    return Verdict(_tally(parts, passed), all(passed)) if parts else None


# how the claims are judged (reports/README.md, "When a claim holds", says it at length)
NUMBER_RULE = (
    "the paper's number inside our 95% bootstrap interval, widened by the seeds' spread and "
    "the stand-in allowance (.05 for SST and bAbI, 0 for IMDB), per dataset, class and seed"
)
ORDER_RULE = "a paired bootstrap test over instances at the 95% level, per dataset and model"

CLAIMS: tuple[Claim, ...] = (
    Claim(
        JW,
        "A BiLSTM's attention correlates only weakly with gradient importance (mean Kendall "
        "tau per predicted class)",
        "SST .40 / .38, IMDB .37 / .37; bAbI 1 / 2 / 3 .23 / .17 / .30 (Table 2)",
        NUMBER_RULE,
        _within("lstm-additive", "tau jw-gradient"),
    ),
    Claim(
        JW,
        "... and weakly with leave-one-out importance",
        "SST .34 / .33, IMDB .30 / .31; bAbI 1 / 2 / 3 .23 / .11 / .31 (Table 2)",
        NUMBER_RULE,
        _within("lstm-additive", "tau leave-one-out"),
    ),
    Claim(
        JW,
        "... with a share of instances whose tau is significant (p <= .05) that follows the "
        "texts' length (Sig. Frac.)",
        "SST .59 / .58 (gradient), .47 / .47 (leave-one-out); IMDB 1.0 / .99, .99 / .98 (Table 2)",
        NUMBER_RULE,
        _within("lstm-additive", "sig. frac."),
    ),
    Claim(
        JW,
        "An Average encoder's attention correlates strongly with gradient importance",
        "SST .69 / .69, IMDB .65 / .66; bAbI 1 / 2 / 3 .66 / .84 / .76 (Table 2)",
        NUMBER_RULE,
        _within("average-additive", "tau jw-gradient"),
    ),
    Claim(
        JW,
        "A CNN encoder's attention, and dot-product attention with every encoder, agree with "
        "gradient and leave-one-out importance as weakly or strongly as the authors' runs "
        "record (mean Kendall tau per predicted class)",
        "CNN: SST .45 / .50, IMDB .34 / .40, bAbI 1 / 2 / 3 .13 / .05 / .23 (gradient); dot: "
        "BiLSTM SST -.06 / .20, IMDB .19 / .21, Average SST .39 / .36, CNN SST .31 / .37 "
        "(the authors' result files, with leave-one-out's beside them)",
        NUMBER_RULE,
        _within(("cnn-additive", "lstm-dot", "average-dot", "cnn-dot"), "tau"),
    ),
    Claim(
        JW,
        "Attention agrees less with gradients in a contextual (BiLSTM) encoder than in the "
        "Average encoder",
        "tau ~.1-.45 vs ~.65-.8 on every dataset (Table 2)",
        f"an ordering (Average tau above BiLSTM tau): {ORDER_RULE}",
        _bilstm_below_average,
    ),
    Claim(
        JW,
        "Gradient and leave-one-out importance agree with each other more than either agrees "
        "with attention",
        "Figure 3 (tau between the two importance measures against attention's)",
        f"orderings (each measure's tau with the other above attention's): {ORDER_RULE}",
        _gradient_and_loo_agree_more,
    ),
    Claim(
        JW,
        "Permuting a BiLSTM's attention barely changes its output (median absolute change per "
        "max-attention bin)",
        "SST .020-.080; IMDB .05-.06 negative, .26-.54 positive (read off the authors' figure "
        "files)",
        NUMBER_RULE,
        _within("lstm-additive", "permutation"),
    ),
    Claim(
        JW,
        "Adversarial attention far from the original (JSD near the .69 maximum) leaves a "
        "BiLSTM's prediction within eps for most instances (median eps-max JSD)",
        "SST .54 / .50, IMDB .61 / .56 (read off the authors' figure files)",
        NUMBER_RULE,
        _within("lstm-additive", "adversarial median JSD"),
    ),
    Claim(
        JW,
        "... and for a large share of instances the adversary reaches JSD >= .5",
        "SST .60 / .46, IMDB .98 / .86 (read off the authors' figure files)",
        NUMBER_RULE,
        _within("lstm-additive", "adversarial share >= .5"),
    ),
    Claim(
        WP,
        "Freezing attention to uniform costs a BiLSTM little F1 on these tasks",
        "IMDb .902 -> .879, SST .831 -> .822 (Table 2)",
        "the paper's F1 drop inside our paired bootstrap interval of the drop, widened by the "
        "stand-in allowance, per dataset",
        _uniform_costs_little,
    ),
    Claim(
        WP,
        "Retraining with another seed already moves attention; J&W's adversaries must be read "
        "against it, and they move it much further",
        "figure only (seed JSD vs adversaries)",
        f"an ordering (adversaries' median JSD above the seeds'): {ORDER_RULE}",
        _adversaries_beyond_seeds,
    ),
    Claim(
        WP,
        "A model trained to be consistent with the base model's predictions can still move "
        "its attention far at an output change within seed variance",
        "Table 4: SST lambda 5.25e-4, F1 .823, TVD .036, JSD .514; IMDb lambda 8e-4, F1 .906, "
        "TVD .014, JSD .405",
        "per Table 4 dataset: our most distant adversary within the seeds' output change "
        "reaches the paper's JSD (its interval's upper end plus the allowance)",
        _consistent_adversary_reaches_table_4,
    ),
    Claim(
        WP,
        "J&W's per-instance adversaries are not what a model can learn: a trained adversary "
        "whose attention is as far from the base model's changes the output far more",
        "Figure 5 (J&W's adversaries near zero output change, the trained adversaries' curve "
        "above them)",
        f"an ordering (the nearest trained adversary at least as distant moves the output more "
        f"than J&W's): {ORDER_RULE}",
        _trained_adversary_moves_more,
    ),
    Claim(
        JW,
        "In pair tasks (question answering, NLI) permuting attention changes the output far "
        "more than in single-text classification (Vashishth et al. 2019 make it the rule)",
        "bAbI 2 medians .82-.99 against SST .02-.08 by max-attention bin (figures, derived)",
        "per model, the lower end of every pair-task dataset's interval of the median output "
        "change at least twice the upper end of every single-text dataset's",
        _pairs_move_more_under_permutation,
    ),
    Claim(
        WP,
        "Diagnostic MLP: the base model's attention helps at least as much as attention the "
        "MLP learns, which beats uniform (base >= trained > uniform)",
        "Table 3: SST base .824, trained .817, uniform .812; IMDb .905, .888, .863",
        f"orderings (trained above uniform; base not below trained): {ORDER_RULE}",
        _diagnostic_ranking,
    ),
    Claim(
        WP,
        "Diagnostic MLP: attention from adversaries does worse than the base model's",
        "Table 3: adversary .592 against base .824 (SST), .700 against .905 (IMDb)",
        f"an ordering (base F1 above the adversary's) for every adversary MLP: {ORDER_RULE}",
        _diagnostic_adversaries,
    ),
)

UNTESTABLE: tuple[tuple[str, str, str], ...] = (
    (
        f"{JW}, {WP}",
        "Every Diabetes and Anemia number (MIMIC-III), incl. W&P's 'attention matters where "
        "uniform clearly hurts'",
        "MIMIC-III needs credentialed access; no package ships it.",
    ),
    (
        f"{JW}, {WP}",
        "AG News and 20 Newsgroups numbers",
        "Not obtainable offline; bbc-politics-business and bbc-tech-entertainment run the same "
        "experiments, but with other texts their numbers are not comparable.",
    ),
    (
        JW,
        "ADR tweets numbers",
        "The ADR tweet corpus is not redistributable; sentiment tweets stand in (no comparison).",
    ),
    (
        JW,
        "SNLI and CNN question answering results",
        "Neither corpus ships in a package: `attnexplain run` takes SNLI's own JSONL files "
        "(jain_wallace_qa.yaml's models on a file entry), the CNN stories are not to be had.",
    ),
    (
        f"{JW}, {WP}",
        "SST exactly",
        "rt-sentences (the same Rotten Tomatoes sentences, labelled by the sign of the crowd "
        "score, with our own split) stands in; comparisons with SST numbers are approximate.",
    ),
)


def judge(results: Iterable[RunResult]) -> pd.DataFrame:
    """:func:`verdicts` on the evidence of ``results``."""
    return verdicts(Evidence.of(results))


def verdicts(evidence: Evidence) -> pd.DataFrame:
    """One row per claim of :data:`CLAIMS`: ``paper``, ``claim``, ``paper_number``, ``ours``,
    ``holds`` (``yes`` / ``no`` / ``no paper number`` / ``not run``) and ``rule``."""
    rows = []
    for claim in CLAIMS:
        verdict = claim.judge(evidence)
        rows.append(
            {
                "paper": claim.paper,
                "claim": claim.claim,
                "paper_number": claim.paper_number,
                "ours": "not in these runs" if verdict is None else verdict.ours,
                "holds": _holds(verdict),
                "rule": claim.rule,
            }
        )
    return pd.DataFrame(rows)


def _holds(verdict: Verdict | None) -> str:
    if verdict is None:
        return "not run"
    if verdict.holds is None:
        return "no paper number"
    return "yes" if verdict.holds else "no"


def claims_prose(table: pd.DataFrame) -> str:
    """What :func:`judge`'s ``table`` says, in sentences a README can hold: how many claims
    hold, and each claim that holds and that does not with our numbers beside the paper's.
    Generated, so that prose about results cannot drift from the judged claims."""
    counts = table["holds"].value_counts()
    judged = int(counts.get("yes", 0) + counts.get("no", 0))
    lines = [
        f"Judged by the rule: {counts.get('yes', 0)} of {judged} claims hold and "
        f"{counts.get('no', 0)} do not; {counts.get('not run', 0)} are not tested by these "
        f"runs and {counts.get('no paper number', 0)} have no paper number to judge; "
        f"{len(UNTESTABLE)} cannot be tested here at all (the data cannot be had)."
    ]
    for verdict, heading in (("yes", "Holds"), ("no", "Does not hold")):
        rows = table[table["holds"] == verdict]
        if len(rows):
            lines += ["", f"{heading}:", ""]
            lines += [
                f"- {row.paper}: {row.claim} (paper: {row.paper_number}). Ours: {row.ours}."
                for row in rows.itertuples()
            ]
    return "\n".join(lines) + "\n"


def readme_block(table: pd.DataFrame) -> str:
    """The prose and the table of a set of judged claims, as a README section's body."""
    return claims_prose(table) + "\n" + claims_markdown(table, untestable=False)


def replace_readme_block(text: str, name: str, table: pd.DataFrame) -> str:
    """``text`` (a README) with the block between ``<!-- claims:NAME -->`` and
    ``<!-- /claims:NAME -->`` replaced by :func:`readme_block` of ``table``; an error when
    the README has no such block."""
    start, end = f"<!-- claims:{name} -->", f"<!-- /claims:{name} -->"
    if start not in text or end not in text:
        raise InvalidInputError(
            f"the README has no block {start} ... {end} to write the claims into: add the two "
            f"lines where they belong"
        )
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{readme_block(table)}{end}{tail}"


def claims_markdown(table: pd.DataFrame, untestable: bool = True) -> str:
    """:func:`judge`'s table and (``untestable``) :data:`UNTESTABLE` as Markdown."""
    lines = [
        "| paper | claim | paper's number | ours (95% interval; * outside) | holds? | rule |",
        "|---|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        lines.append(
            f"| {row.paper} | {row.claim} | {row.paper_number} | {row.ours} | {row.holds} | "
            f"{row.rule} |"
        )
    if untestable:
        lines += ["", "| paper | claim | why it cannot be tested here |", "|---|---|---|"]
        lines += [f"| {paper} | {claim} | {why} |" for paper, claim, why in UNTESTABLE]
    return "\n".join(lines) + "\n"
