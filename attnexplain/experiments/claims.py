"""The papers' claims, each judged on the runs that can test it.

A :class:`Claim` is a statement of Jain & Wallace 2019 or Wiegreffe & Pinter 2019, the paper's
number (or "figure only"), the tolerance we judge it with and a function that reads our runs.
:func:`judge` returns one row per claim: what we measured and whether the claim holds, or that
the runs hold nothing to test it with. :data:`UNTESTABLE` lists the claims no data we can get
can test, and why.

Numbers compare only where a dataset stands in for a paper dataset
(:data:`~attnexplain.experiments.paper_numbers.PAPER_DATASETS`); orderings (BiLSTM below
Average, adversaries beyond seeds, the diagnostic's ranking) are judged on every dataset run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd

from attnexplain.errors import AttnExplainError
from attnexplain.experiments.paper_numbers import run_beside_paper
from attnexplain.runner.run import RunResult

JW = "J&W 2019"
WP = "W&P 2019"


@dataclass(frozen=True)
class Verdict:
    """What our runs say about a claim: ``ours`` in words and numbers, and whether it holds."""

    ours: str
    holds: bool


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

    @classmethod
    def of(cls, results: Iterable[RunResult]) -> Evidence:
        """The evidence in some runs (a unit shared by two runs counts once)."""
        summaries: dict[str, list[pd.DataFrame]] = {}
        beside = []
        for result in results:
            names = {dataset.label: dataset.name for dataset in result.plan.datasets}
            pairs = {dataset.label: dataset.reads_pairs for dataset in result.plan.datasets}
            for index, entry in enumerate(result.plan.experiments):
                summary = result.summary(index)
                if len(summary):
                    summary.insert(1, "dataset_name", summary["dataset"].map(names))
                    summary["pairs"] = summary["dataset"].map(pairs)
                    summary["entry"] = f"{result.plan.name}#{index}"
                    summaries.setdefault(entry.name, []).append(summary)
            beside.append(run_beside_paper(result))
        stacked = {
            name: pd.concat(tables, ignore_index=True).drop_duplicates(
                subset=[c for c in tables[0].columns if c not in ("count", "entry")]
            )
            for name, tables in summaries.items()
        }
        return cls(stacked, pd.concat(beside, ignore_index=True) if beside else pd.DataFrame())

    def summary(self, experiment: str) -> pd.DataFrame:
        """The stacked summaries of ``experiment`` (empty when no run has it)."""
        return self.summaries.get(experiment, pd.DataFrame())

    def paper_rows(self, model: str, quantity: str) -> pd.DataFrame:
        """Rows of the beside-the-papers table for ``model`` whose quantity starts with
        ``quantity`` and has a paper number."""
        if not len(self.beside):
            return self.beside
        rows = self.beside[
            (self.beside["model"] == model)
            & self.beside["quantity"].str.startswith(quantity)
            & self.beside["paper"].notna()
        ]
        return rows.drop_duplicates(subset=["dataset", "model", "quantity", "predicted_class"])


@dataclass(frozen=True)
class Claim:
    paper: str
    claim: str
    paper_number: str
    tolerance: str
    judge: Callable[[Evidence], Verdict | None]


def _within(model: str, quantity: str, tolerance: float) -> Callable[[Evidence], Verdict | None]:
    """Every paper number of ``quantity`` for ``model`` is matched within ``tolerance``."""

    def judge(evidence: Evidence) -> Verdict | None:
        rows = evidence.paper_rows(model, quantity)
        if not len(rows):
            return None
        parts = [
            f"{dataset} {_values(group['ours'])}"
            for dataset, group in rows.groupby("dataset", sort=False)
        ]
        gap = rows["difference"].abs().max()
        return Verdict(f"{', '.join(parts)} (largest gap {gap:.2f})", bool(gap <= tolerance))

    return judge


def _values(values: pd.Series) -> str:
    """Two values (one per class) as ``a/b``, more as their range ``lo-hi``."""
    if len(values) <= 2:
        return "/".join(f"{value:.2f}" for value in values)
    return f"{values.min():.2f}-{values.max():.2f}"


def _bilstm_below_average(evidence: Evidence) -> Verdict | None:
    table = evidence.summary("jain_wallace.correlation")
    if not len(table):
        return None
    table = table[table["method"] == "jw-gradient"]
    keys = ["dataset", "seed", "predicted_class"]
    lstm = table[table["model"] == "lstm-additive"].set_index(keys)["mean_tau"]
    average = table[table["model"] == "average-additive"].set_index(keys)["mean_tau"]
    pairs = pd.concat([lstm.rename("lstm"), average.rename("average")], axis=1).dropna()
    if not len(pairs):
        return None
    below = int((pairs["lstm"] < pairs["average"]).sum())
    return Verdict(
        f"BiLSTM tau {pairs['lstm'].min():.2f}-{pairs['lstm'].max():.2f}, Average "
        f"{pairs['average'].min():.2f}-{pairs['average'].max():.2f}; BiLSTM lower in "
        f"{below} of {len(pairs)} dataset / class pairs",
        below == len(pairs),
    )


def _uniform_costs_little(evidence: Evidence) -> Verdict | None:
    rows = evidence.paper_rows("lstm-additive", "F1 ")
    if not len(rows):
        return None
    parts, holds = [], True
    for dataset, group in rows.groupby("dataset", sort=False):
        values = group.set_index("quantity")
        if {"F1 trained", "F1 uniform"} - set(values.index):
            continue
        ours = values.loc["F1 trained", "ours"] - values.loc["F1 uniform", "ours"]
        paper = values.loc["F1 trained", "paper"] - values.loc["F1 uniform", "paper"]
        holds &= bool(ours <= paper + 0.02)
        parts.append(f"{dataset} drop {ours:+.3f} (paper {paper:+.3f})")
    return Verdict(", ".join(parts), holds) if parts else None


def _adversaries_beyond_seeds(evidence: Evidence) -> Verdict | None:
    table = evidence.summary("wiegreffe_pinter.seeds")
    if not len(table) or table["jw median jsd"].isna().all():
        return None
    table = table.dropna(subset=["jw median jsd"])
    beyond = int((table["jw median jsd"] > table["seed median jsd"]).sum())
    return Verdict(
        f"seeds' median JSD {table['seed median jsd'].min():.2f}-"
        f"{table['seed median jsd'].max():.2f}, J&W adversaries' "
        f"{table['jw median jsd'].min():.2f}-{table['jw median jsd'].max():.2f}; adversaries "
        f"further in {beyond} of {len(table)} dataset / model / class rows",
        beyond == len(table),
    )


def _pairs_move_more_under_permutation(evidence: Evidence) -> Verdict | None:
    """Per model: the median output change under permutation over all instances of every
    pair-task dataset against every single-text one."""
    table = evidence.summary("jain_wallace.permutation")
    if not len(table) or "pairs" not in table:
        return None
    overall = table[table["bin"] == "all"].drop_duplicates(subset=["dataset", "model", "seed"])
    parts, holds = [], True
    for model, group in overall.groupby("model", sort=False):
        pair, single = group[group["pairs"]], group[~group["pairs"].astype(bool)]
        if not len(pair) or not len(single):
            continue
        holds &= bool(pair["median"].min() >= 2 * single["median"].max())
        parts.append(f"{model}: pair tasks {_named(pair)} against single texts {_named(single)}")
    return Verdict("; ".join(parts), holds) if parts else None


def _named(rows: pd.DataFrame) -> str:
    return ", ".join(f"{row.dataset} {row.median:.2f}" for row in rows.itertuples())


DIAGNOSTIC_KEYS = ["dataset", "model", "seed", "entry"]


def _keys(table: pd.DataFrame) -> list[str]:
    """What tells one diagnostic MLP's model apart (``entry`` where the runs give it)."""
    return [key for key in DIAGNOSTIC_KEYS if key in table.columns]


def _diagnostic_table(evidence: Evidence) -> pd.DataFrame | None:
    """The diagnostic summaries, one row per MLP (dataset, model, seed, attention, f1); the
    same MLP seen by two runs counts once."""
    table = evidence.summary("wiegreffe_pinter.diagnostic")
    if not len(table):
        return None
    return table.drop_duplicates(subset=[*_keys(table), "attention", "f1"])


def _one_per_model(table: pd.DataFrame, attentions: list[str]) -> pd.DataFrame:
    """F1 by model (rows) and attention (columns) for ``attentions``, each of which must be
    one MLP per model: :class:`AttnExplainError` names the rows where it is several, rather
    than a pivot keeping one of them (two W&P adversaries at different lambdas share the
    label ``wp-adversary``, so they are judged one by one, never pivoted)."""
    chosen = table[table["attention"].isin(attentions)]
    keys = _keys(table)
    repeated = chosen[chosen.duplicated(subset=[*keys, "attention"], keep=False)]
    if len(repeated):
        raise AttnExplainError(
            "the diagnostic summaries hold several MLPs for one model and attention: "
            + repeated[[*keys, "attention", "f1"]].to_string(index=False)
        )
    return chosen.pivot(index=keys, columns="attention", values="f1")


def _diagnostic_ranking(evidence: Evidence) -> Verdict | None:
    table = _diagnostic_table(evidence)
    ranked = ["uniform", "trained", "base"]
    if table is None or not set(ranked) <= set(table["attention"]):
        return None
    table = _one_per_model(table, ranked).dropna(subset=ranked)
    ordered = (table["base"] >= table["trained"]) & (table["trained"] > table["uniform"])
    parts = [
        f"{dataset} {model}: base {row.base:.3f}, trained {row.trained:.3f}, "
        f"uniform {row.uniform:.3f}"
        for (dataset, model, *_), row in table.iterrows()
    ]
    return Verdict(
        f"{'; '.join(parts)}; ordering holds in {int(ordered.sum())} of {len(table)}",
        bool(ordered.all()),
    )


def _diagnostic_adversaries(evidence: Evidence) -> Verdict | None:
    """Every adversary MLP against its model's base MLP (adversaries are never pivoted)."""
    table = _diagnostic_table(evidence)
    if table is None or "base" not in set(table["attention"]):
        return None
    base = _one_per_model(table, ["base"])["base"]
    adversaries = table[table["attention"].str.contains("adversary")]
    if not len(adversaries):
        return None
    joined = adversaries.join(base, on=_keys(table))
    paired = joined.dropna(subset=["base"])
    if not len(paired):
        return None
    worse = int((paired["f1"] < paired["base"]).sum())
    gap = paired["base"] - paired["f1"]
    unpaired = len(joined) - len(paired)
    return Verdict(
        f"adversaries' attention below the base model's in {worse} of {len(paired)} MLPs "
        f"(F1 lower by {gap.min():+.3f} to {gap.max():+.3f})"
        + (
            f"; {unpaired} adversary MLPs have no base MLP in their run, not judged"
            if unpaired
            else ""
        ),
        worse == len(paired),
    )


def _consistent_adversary_exists(evidence: Evidence) -> Verdict | None:
    table = evidence.summary("wiegreffe_pinter.consistent")
    if not len(table):
        return None
    found = []
    for (dataset, model, _seed), group in table.groupby(["dataset", "model", "seed"]):
        seeds = group[group["source"] == "seeds"]
        trained = group[group["lambda"].notna()]
        if not len(seeds) or not len(trained):
            continue
        limit = float(seeds["mean output change"].iloc[0])
        good = trained[(trained["mean jsd"] >= 0.5) & (trained["mean output change"] <= limit)]
        if len(good):
            best = good.sort_values("mean jsd").iloc[-1]
            found.append(
                f"{dataset} {model}: lambda {best['lambda']:g}, JSD {best['mean jsd']:.2f} at "
                f"output change {best['mean output change']:.3f} (seeds {limit:.3f})"
            )
    tested = table.groupby(["dataset", "model", "seed"]).ngroups
    summary = "; ".join(found) if found else "none"
    return Verdict(f"{len(found)} of {tested} models: {summary}", bool(found))


CLAIMS: tuple[Claim, ...] = (
    Claim(
        JW,
        "A BiLSTM's attention correlates only weakly with gradient importance (mean Kendall "
        "tau per predicted class)",
        "SST .40 / .38, IMDB .37 / .37 (Table 2)",
        "+-.07 (papers-spec A3: re-runs land within it)",
        _within("lstm-additive", "tau jw-gradient", 0.07),
    ),
    Claim(
        JW,
        "... and weakly with leave-one-out importance",
        "SST .34 / .33, IMDB .30 / .31 (Table 2)",
        "+-.07 (papers-spec A3)",
        _within("lstm-additive", "tau leave-one-out", 0.07),
    ),
    Claim(
        JW,
        "An Average encoder's attention correlates strongly with gradient importance",
        "SST .69 / .69, IMDB .65 / .66 (Table 2)",
        "+-.07 (papers-spec A3)",
        _within("average-additive", "tau jw-gradient", 0.07),
    ),
    Claim(
        JW,
        "Attention agrees less with gradients in a contextual (BiLSTM) encoder than in the "
        "Average encoder",
        "tau ~.1-.45 vs ~.65-.8 on every dataset (Table 2)",
        "an ordering: BiLSTM tau < Average tau for every dataset and class",
        _bilstm_below_average,
    ),
    Claim(
        JW,
        "Permuting a BiLSTM's attention barely changes its output (median absolute change per "
        "max-attention bin)",
        "SST .020-.080; IMDB .05-.06 negative, .26-.54 positive (figures)",
        "+-.05 per bin (ours: the paper's numbers are read off its figures)",
        _within("lstm-additive", "permutation", 0.05),
    ),
    Claim(
        JW,
        "Adversarial attention far from the original (JSD near the .69 maximum) leaves a "
        "BiLSTM's prediction within eps for most instances (median eps-max JSD)",
        "SST .54 / .50, IMDB .61 / .56 (figures)",
        "+-.10 (ours: read off figures)",
        _within("lstm-additive", "adversarial median JSD", 0.10),
    ),
    Claim(
        WP,
        "Freezing attention to uniform costs a BiLSTM little F1 on these tasks",
        "IMDb .902 -> .879, SST .831 -> .822 (Table 2)",
        "our drop at most the paper's + .02",
        _uniform_costs_little,
    ),
    Claim(
        WP,
        "Retraining with another seed already moves attention; J&W's adversaries must be read "
        "against it, and they move it much further",
        "figure only (seed JSD vs adversaries)",
        "an ordering: adversaries' median JSD > seeds' for every row",
        _adversaries_beyond_seeds,
    ),
    Claim(
        WP,
        "A model trained to be consistent with the base model's predictions can still move "
        "its attention far (JSD >= .5) at an output change within seed variance, on some "
        "datasets",
        "Table 4: SST lambda 5.25e-4, F1 .823, TVD .036, JSD .514; IMDb lambda 8e-4, F1 .906, "
        "TVD .014, JSD .405",
        "JSD >= .5 at a mean output change <= the seeds' on at least one model",
        _consistent_adversary_exists,
    ),
    Claim(
        JW,
        "In pair tasks (question answering, NLI) permuting attention changes the output far "
        "more than in single-text classification (Vashishth et al. 2019 make it the rule)",
        "bAbI 2 medians .82-.99 against SST .02-.08 by max-attention bin (figures, derived)",
        "per model, every pair-task dataset's median output change over all instances at "
        "least twice every single-text dataset's",
        _pairs_move_more_under_permutation,
    ),
    Claim(
        WP,
        "Diagnostic MLP: the base model's attention helps at least as much as attention the "
        "MLP learns, which beats uniform (base >= trained > uniform)",
        "Table 3: SST base .824, trained .817, uniform .812; IMDb .905, .888, .863",
        "an ordering, per dataset and base model",
        _diagnostic_ranking,
    ),
    Claim(
        WP,
        "Diagnostic MLP: attention from adversaries does worse than the base model's",
        "Table 3: adversary .592 against base .824 (SST), .700 against .905 (IMDb)",
        "an ordering: adversary F1 < base F1 for every MLP",
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
        "SNLI and question answering (CNN, bAbI) results",
        "The toolkit's models classify single texts; NLI and QA models are not implemented.",
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
    ``holds`` (``yes`` / ``no`` / ``not run``) and ``tolerance``."""
    rows = []
    for claim in CLAIMS:
        verdict = claim.judge(evidence)
        rows.append(
            {
                "paper": claim.paper,
                "claim": claim.claim,
                "paper_number": claim.paper_number,
                "ours": "not in these runs" if verdict is None else verdict.ours,
                "holds": "not run" if verdict is None else ("yes" if verdict.holds else "no"),
                "tolerance": claim.tolerance,
            }
        )
    return pd.DataFrame(rows)


def claims_markdown(table: pd.DataFrame) -> str:
    """:func:`judge`'s table and :data:`UNTESTABLE` as Markdown."""
    lines = [
        "| paper | claim | paper's number | ours | holds? | tolerance |",
        "|---|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        lines.append(
            f"| {row.paper} | {row.claim} | {row.paper_number} | {row.ours} | {row.holds} | "
            f"{row.tolerance} |"
        )
    lines += ["", "| paper | claim | why it cannot be tested here |", "|---|---|---|"]
    lines += [f"| {paper} | {claim} | {why} |" for paper, claim, why in UNTESTABLE]
    return "\n".join(lines) + "\n"
