"""The verdict a reader can act on: per model (and layer), how far attention agrees with the
model's own importance, how fragile it is, and which method explains the model most
faithfully, each with its evidence and a 95% bootstrap interval over instances.

It reads the per-instance tables of whichever of these experiments a run holds
(``predictions``, ``jain_wallace.*``, ``serrano_smith.zero_top``, ``league.methods``) and
leaves out the questions whose experiment did not run. The thresholds that turn a number into
a word are fixed here, before any number is seen, and printed beside every answer:

- agreement (mean Kendall tau of attention with the J&W gradient and leave-one-out, the
  larger of the two): weak below .3, moderate below .6, strong from .6 (J&W read their
  .2-.5 taus as weak);
- permutation (median over instances of the median output TVD under 100 permutations): the
  output hardly moves below .05, moves somewhat below .2, strongly from .2;
- adversarial (share of instances where an attention at least .5 JSD away keeps the output
  within .05 TVD): robust below .2, partly fragile below .5, fragile from .5;
- erasure (Serrano & Smith: share of instances where removing the top-attended token moves
  the output more than removing a random one): attention points at what matters when the
  interval's lower end exceeds .5, no better than chance when the interval holds .5;
- the most faithful method: the highest mean AOPC comprehensiveness (ERASER); "tied" with
  the runner-up when the paired bootstrap interval of their difference holds 0;
- whether the faithfulness measures agree (where the league ran more than ERASER's pair):
  the mean Spearman rho between the methods' ranking under AOPC comprehensiveness and under
  each other measure; unlike below .3, partly alike below .6, alike from .6;
- the sanity checks (where the league ran them): a method fails one when the 95% interval
  of its mean similarity to its scores on the randomised model lies above .5.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from attnexplain.experiments.league import measure_agreement, measured_by, summarise_league
from attnexplain.measures import DEFAULT_MEASURES, SANITY_CHECKS, SANITY_FAILS
from attnexplain.uncertainty import Interval, bootstrap, paired_difference

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from attnexplain.runner.run import RunResult

COLUMNS = [
    "dataset",
    "model",
    "layer",
    "question",
    "answer",
    "statement",
    "value",
    "low",
    "high",
    "count",
    "evidence",
]
AGREEMENT = ((0.3, "weak"), (0.6, "moderate"), (float("inf"), "strong"))
PERMUTATION = ((0.05, "hardly moves"), (0.2, "moves somewhat"), (float("inf"), "moves strongly"))
ADVERSARIAL = ((0.2, "robust"), (0.5, "partly fragile"), (float("inf"), "fragile"))
ADVERSARIAL_JSD = 0.5
MEASURES_AGREE = ((0.3, "unlike"), (0.6, "partly alike"), (float("inf"), "alike"))
# what a question finds: the answer (a word or a method), the sentence that says it with its
# evidence, and the number it rests on with its interval
Finding = tuple[str, str, Interval]
ERASURE = ((0.5, "chance"), (float("inf"), ""))
# the questions the figure draws, their thresholds and axes
SCALES = {
    "agreement": AGREEMENT,
    "permutation": PERMUTATION,
    "adversarial": ADVERSARIAL,
    "erasure": ERASURE,
}
AXES = {
    "agreement": "mean Kendall tau",
    "permutation": "median output TVD",
    "adversarial": "share with a .5-JSD adversary",
    "erasure": "share top token > random",
}


def verdict(result: RunResult) -> pd.DataFrame:
    """One row per dataset, model and question the run can answer (see the module
    docstring), in the plan's order; empty when it holds none of the experiments."""
    tables = _instance_tables(result)
    rows = []
    for dataset in result.plan.datasets:
        for entry in result.plan.models:
            layer = _layer_name(entry)
            for experiment, question, judge in QUESTIONS:
                table = _rows_of(tables, experiment, dataset.label, entry.label)
                found = None if table is None else judge(table)
                if found is not None:
                    answer, statement, interval = found
                    rows.append(
                        {
                            "dataset": dataset.label,
                            "model": entry.label,
                            "layer": layer,
                            "question": question,
                            "answer": answer,
                            "statement": statement,
                            "value": interval.value,
                            "low": interval.low,
                            "high": interval.high,
                            "count": interval.count,
                            "evidence": experiment,
                        }
                    )
    return pd.DataFrame(rows, columns=COLUMNS)


def _layer_name(entry) -> str:
    if not entry.transformer:
        return "the attention"
    return "last layer" if entry.site_layer is None else f"layer {entry.site_layer}"


def _instance_tables(result: RunResult) -> dict[str, pd.DataFrame]:
    """Every experiment's per-instance rows of the plan's first seed, stacked by name."""
    stacked: dict[str, list[pd.DataFrame]] = {}
    for index, entry in enumerate(result.plan.experiments):
        table = result.results(index)
        if len(table):
            table = table[table["seed"] == result.plan.seeds[0]]
            stacked.setdefault(entry.name, []).append(table)
    return {name: pd.concat(parts, ignore_index=True) for name, parts in stacked.items()}


def _rows_of(
    tables: dict[str, pd.DataFrame], name: str, dataset: str, model: str
) -> pd.DataFrame | None:
    table = tables.get(name)
    if table is None:
        return None
    rows = table[(table["dataset"] == dataset) & (table["model"] == model)]
    return rows if len(rows) else None


def _word(value: float, scale: tuple[tuple[float, str], ...]) -> str:
    return next(word for bound, word in scale if value < bound)


def _share(interval: Interval) -> str:
    return f"{interval.value:.0%} [{interval.low:.0%}, {interval.high:.0%}]"


def accuracy(rows: pd.DataFrame) -> Finding | None:
    correct = bootstrap(rows["correct"].astype(float))
    from sklearn.metrics import f1_score

    f1 = f1_score(rows["label"], rows["predicted"], average="macro", zero_division=0)
    statement = (
        f"accuracy {correct} and macro F1 {f1:.3f} on the {correct.count} labelled instances"
    )
    return f"{correct.value:.1%} accurate", statement, correct


def agreement(rows: pd.DataFrame) -> Finding | None:
    references = {"gradient": "tau_jw-gradient", "leave-one-out": "tau_leave-one-out"}
    found = {name: bootstrap(rows[column]) for name, column in references.items() if column in rows}
    if not found:
        return None
    best = max(found.values(), key=lambda interval: interval.value)
    word = _word(best.value, AGREEMENT)
    parts = ", ".join(f"with {name} {interval}" for name, interval in found.items())
    statement = (
        f"attention agrees {word}ly with the model's own token importance: mean Kendall tau "
        f"{parts} (weak < .3 <= moderate < .6 <= strong)"
    )
    return word, statement, best


def permutation(rows: pd.DataFrame) -> Finding | None:
    change = bootstrap(rows["median_output_change"], np.median)
    word = _word(change.value, PERMUTATION)
    consequence = (
        "the prediction hardly depends on which token gets which weight"
        if word == "hardly moves"
        else "the prediction depends on where the weight goes"
    )
    statement = (
        f"shuffling the attention, the output {word}: median output TVD {change}; "
        f"{consequence} (hardly < .05 <= somewhat < .2 <= strongly)"
    )
    return word, statement, change


def adversarial(rows: pd.DataFrame) -> Finding | None:
    share = bootstrap((rows["eps_max_jsd"] >= ADVERSARIAL_JSD).astype(float))
    word = _word(share.value, ADVERSARIAL)
    eps = rows["eps_report"].iloc[0] if "eps_report" in rows else 0.05
    statement = (
        f"for {_share(share)} of instances an attention at least {ADVERSARIAL_JSD} JSD away "
        f"from the model's own gives the same output (within {eps} TVD): attention is "
        f"{word} as an explanation (robust < 20% <= partly fragile < 50% <= fragile)"
    )
    return word, statement, share


def erasure(rows: pd.DataFrame) -> Finding | None:
    defined = rows.dropna(subset=["jsd_top", "jsd_random"])
    larger = bootstrap((defined["jsd_top"] > defined["jsd_random"]).astype(float))
    if larger.count == 0:
        return None
    if larger.low > 0.5:
        word = "points at what matters"
    elif larger.high < 0.5:
        word = "points away from what matters"
    else:
        word = "no better than chance"
    flips = rows[["flipped_top", "flipped_random"]].astype(float).mean()
    statement = (
        f"removing the most-attended token moves the output more than removing a random one "
        f"for {_share(larger)} of instances (it flips the decision for "
        f"{flips['flipped_top']:.0%}, a random token for {flips['flipped_random']:.0%}): "
        f"attention {word}"
    )
    return word, statement, larger


def most_faithful(rows: pd.DataFrame) -> Finding | None:
    scored = rows.dropna(subset=["comprehensiveness"])
    by_method = {
        method: group.set_index("instance")["comprehensiveness"]
        for method, group in scored.groupby("method", sort=True)
    }
    if not by_method:
        return None
    ranked = sorted(by_method, key=lambda method: -by_method[method].mean())
    best = ranked[0]
    interval = bootstrap(by_method[best])
    answer, tie = best, ""
    if len(ranked) > 1:
        runner = ranked[1]
        first, second = by_method[best].align(by_method[runner], join="inner")
        difference = paired_difference(first, second)
        if difference.low <= 0:
            answer, tie = (
                f"{best} (tied with {runner})",
                (f"; not distinguishable from {runner} (difference {difference})"),
            )
    attention = (
        f"; raw attention ranks {ranked.index('attention') + 1} of {len(ranked)} "
        f"({by_method['attention'].mean():.3f})"
        if "attention" in by_method
        else ""
    )
    statement = (
        f"of the {len(ranked)} methods scored, {best} explains this model most faithfully: "
        f"AOPC comprehensiveness {interval} "
        f"(the output drop when its top tokens are deleted){tie}{attention}"
    )
    return answer, statement, interval


def measures_agree(rows: pd.DataFrame) -> Finding | None:
    """Where the league ran several faithfulness measures: do they rank the methods as AOPC
    comprehensiveness does? The mean Spearman rho of the rankings, the best method under
    each measure and raw attention's rank."""
    measures = measured_by(rows)
    if "comprehensiveness" not in measures or set(measures) <= set(DEFAULT_MEASURES):
        return None  # ERASER's pair alone: the default league, whose verdict is the best method
    interval = measure_agreement(rows)
    word = _word(interval.value, MEASURES_AGREE)
    summary = summarise_league(rows).set_index("method")
    best = {name: summary[f"rank_{name}"].idxmin() for name in measures}
    attention = (
        "; raw attention ranks "
        + ", ".join(f"{summary.at['attention', f'rank_{name}']:.0f}" for name in measures)
        + f" of {summary[f'rank_{measures[0]}'].notna().sum()} under them"
        if "attention" in summary.index
        else ""
    )
    statement = (
        f"the {len(measures) - 1} other faithfulness measures rank the methods {word} with "
        f"AOPC comprehensiveness: mean Spearman rho {interval}. Most faithful by "
        + ", ".join(f"{name}: {method}" for name, method in best.items())
        + attention
    )
    return word, statement, interval


def sanity_checks(rows: pd.DataFrame) -> Finding | None:
    """Where the league ran sanity checks: which methods fail each (the interval of their
    mean similarity to the scores on the destroyed model above :data:`SANITY_FAILS`), and
    raw attention's similarity under the first check run."""
    checks = [name for name in SANITY_CHECKS if name in measured_by(rows)]
    if not checks:
        return None
    failing: dict[str, list[str]] = {}
    intervals: dict[str, dict[str, Interval]] = {}
    for name in checks:
        intervals[name] = {
            method: bootstrap(group[name]) for method, group in rows.groupby("method", sort=True)
        }
        failing[name] = [m for m, i in intervals[name].items() if i.low > SANITY_FAILS]
    attention_fails = [name for name in checks if "attention" in failing[name]]
    if "attention" in intervals[checks[0]]:
        answer = (
            "attention fails " + ", ".join(attention_fails)
            if attention_fails
            else ("attention passes")
        )
        interval = intervals[checks[0]]["attention"]
    else:
        answer, interval = "attention not scored", next(iter(intervals[checks[0]].values()))
    statement = (
        f"a method fails a check when more than {SANITY_FAILS:.1f} of its ranking survives "
        f"destroying the model (the 95% interval of the mean similarity above it): "
        + "; ".join(f"{name}: {', '.join(failing[name]) or 'none fails'}" for name in checks)
        + f". Raw attention under {checks[0]}: {interval}"
    )
    return answer, statement, interval


# experiment -> (the question its per-instance table answers, how), in the verdict's order
QUESTIONS: list[tuple[str, str, Callable[[pd.DataFrame], Finding | None]]] = [
    ("predictions", "performance", accuracy),
    ("jain_wallace.correlation", "agreement", agreement),
    ("jain_wallace.permutation", "permutation", permutation),
    ("jain_wallace.adversarial", "adversarial", adversarial),
    ("serrano_smith.zero_top", "erasure", erasure),
    ("league.methods", "most faithful method", most_faithful),
    ("league.methods", "measures agree", measures_agree),
    ("league.methods", "sanity checks", sanity_checks),
]


def figure_verdict(frame: pd.DataFrame) -> Figure:
    """The verdict's numbers with their 95% intervals: one panel per question, one row per
    model / layer (a forest plot), the thresholds drawn where the answer changes."""
    import matplotlib.pyplot as plt

    shown = frame[frame["question"].isin(SCALES)]
    questions = [q for q in SCALES if q in set(shown["question"])]
    panels = max(len(questions), 1)
    height = 1.2 + 0.4 * (shown.groupby("question").size().max() if len(shown) else 1)
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, height), squeeze=False)
    for ax, question in zip(axes[0], questions, strict=False):
        rows = shown[shown["question"] == question].reset_index(drop=True)
        names = rows["dataset"] + " / " + rows["model"]
        ax.errorbar(
            rows["value"],
            range(len(rows)),
            xerr=[rows["value"] - rows["low"], rows["high"] - rows["value"]],
            fmt="o",
            capsize=3,
        )
        for bound, _ in SCALES[question][:-1]:
            ax.axvline(bound, color="0.6", linestyle=":", linewidth=1)
        ax.set(title=question, yticks=range(len(rows)), yticklabels=names, xlabel=AXES[question])
        ax.invert_yaxis()
    fig.tight_layout()
    return fig
