"""A league table of explanation methods on one model: every attention-derived and gradient
method scored by agreement with gradient and leave-one-out importance (Spearman, Kendall),
faithfulness measures (:mod:`attnexplain.measures`: by default ERASER's AOPC
comprehensiveness and sufficiency and their soft versions; the sanity checks and Captum's
metrics by name) and, where the data plants its rationale (the synthetic task),
plausibility (AUPRC against the planted tokens).

Registered as ``league.methods``; a plan with one model entry per ``site_layer`` gives the
transformer's table per layer (raw attention is read at the site; rollout-style methods
aggregate the layers below it).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from attnexplain.alignment import text_alignment
from attnexplain.attribution import list_methods
from attnexplain.attribution.adapter import predicted_class
from attnexplain.device import to_numpy
from attnexplain.errors import AttnExplainError, HookError, InvalidInputError
from attnexplain.experiments.companions import companion_needs, companion_role
from attnexplain.experiments.needs import Needs, RunContext, Setting
from attnexplain.experiments.shared_scores import method_scores
from attnexplain.experiments.site_attention import SiteBatch, iterate_site_batches
from attnexplain.measures import (
    DEFAULT_MEASURES,
    MEASURES,
    build_measure,
    get_measure,
    list_measures,
    measure_methods,
    method_explainer,
)
from attnexplain.metrics import auprc, kendall_tau, spearman
from attnexplain.models.checkpoint import Checkpoint
from attnexplain.uncertainty import Interval, interval_columns, ranking_agreement

REFERENCES = {"gradient": "jw-gradient", "loo": "leave-one-out"}
SCORED_GRADIENTS = ("saliency", "input-x-gradient", "integrated-gradients")
LEAGUE_DEFAULTS = {"methods": None, "measures": None, "batch_size": 16}
LEAGUE_PARAMETERS = {
    "methods": "attribution methods ranked (None: every attention-derived and gradient one)",
    "measures": "faithfulness measures of attnexplain.measures (None: its DEFAULT_MEASURES, "
    "ERASER's pair)",
}
COMPANION_ACCURACY = "accuracy_"  # + a companion's kind: its per-instance correctness
AGREEMENT = ("spearman_gradient", "kendall_gradient", "spearman_loo", "kendall_loo")


def league_metrics(measures: Sequence[str]) -> tuple[str, ...]:
    """The league's columns: agreement, the faithfulness ``measures`` and plausibility."""
    return (*AGREEMENT, *measures, "auprc")


def default_methods() -> list[str]:
    """Every registered attention-derived method, J&W's gradient and leave-one-out, and the
    plain gradient methods of Captum."""
    return [*list_methods("attention"), *REFERENCES.values(), *SCORED_GRADIENTS]


def validate_league(params: dict) -> None:
    for key, known in (("methods", list_methods()), ("measures", list_measures())):
        names = params.get(key)
        if names is None:
            continue
        unknown = [name for name in names if name not in known]
        if not names or unknown:
            raise InvalidInputError(
                f"{key} must be a non-empty list of registered {key} (or null: all); "
                f"unknown: {unknown}"
            )


def league_needs(params: dict, setting: Setting) -> Needs:
    """The companion models its measures read (data randomisation, F-Fidelity), if any."""
    return companion_needs(list(params["measures"] or DEFAULT_MEASURES))


def measured_models(
    checkpoint: Checkpoint, measures: Sequence[str], context: RunContext | None
) -> dict[str, object]:
    """The model each measure reads: the explained one, or the companion it names (from
    ``context``; an error without one)."""
    models = {}
    for name in measures:
        kind = get_measure(name).companion
        if kind is None:
            models[name] = checkpoint.model
        elif context is None:
            raise InvalidInputError(
                f"measure {name!r} reads a companion model ({kind}) that the runner trains: "
                f"run the league from a plan (attnexplain run), or leave {name!r} out"
            )
        else:
            models[name] = context.checkpoint(companion_role(kind)).model
    return models


def rationale_tensor(frame: pd.DataFrame, site: SiteBatch, pipeline: object) -> torch.Tensor | None:
    """[batch, tokens] 0/1: the planted flag of the word each token belongs to (a wordpiece
    takes its word's flag; specials and padding 0), or None when the data plants no rationale
    or the pipeline's words are not the planted words one to one.

    The text's tokens are the content positions in order, wherever the pipeline puts them: a
    pair read passage-only has its question before the passage (``[CLS] question [SEP]
    passage [SEP]``) or after it (a decoder's ``<s> passage question``)."""
    if "rationale" not in frame.columns:
        return None
    truth = torch.zeros(site.batch.content_mask.shape)
    for row, index in enumerate(site.rows):
        flags = frame["rationale"].iloc[index]
        alignment = text_alignment(pipeline, frame["text"].iloc[index])
        if len(alignment.words) > len(flags):
            return None  # the tokenizer splits words the data does not
        words = [word for word in alignment.word_ids if word is not None]
        positions = site.batch.content_mask[row].nonzero().flatten().tolist()
        for position, word in zip(positions, words, strict=False):
            truth[row, position] = float(flags[word])
    return truth


def _scores(
    checkpoint: Checkpoint, site: SiteBatch, methods: list[str]
) -> dict[str, torch.Tensor | str]:
    """Each method's token scores [batch, tokens], or why the model does not support it."""
    scores: dict[str, torch.Tensor | str] = {}
    for name in methods:
        try:
            scores[name] = method_scores(checkpoint, site.batch, name)
        except HookError as error:
            scores[name] = str(error)
    return scores


def _method_rows(
    site: SiteBatch,
    scores: torch.Tensor,
    references: dict,
    measured: dict[str, torch.Tensor | AttnExplainError],
    truth: torch.Tensor | None,
) -> dict[str, np.ndarray]:
    """One method's columns: agreement with the references, each measure's values
    (``measured``: its [batch] values or the error with which it refused the method, NaN
    then, said in ``not_measured``) and plausibility."""
    mask = site.batch.content_mask
    columns = {}
    for short, reference in REFERENCES.items():
        columns[f"spearman_{short}"] = spearman(scores, references[reference], mask).statistic
        columns[f"kendall_{short}"] = kendall_tau(scores, references[reference], mask).statistic
    refused = []
    for name, values in measured.items():
        if isinstance(values, AttnExplainError):
            columns[name] = np.full(len(site.rows), np.nan)
            refused.append(f"{name}: {values}")
        else:
            columns[name] = to_numpy(values)
    columns["auprc"] = (
        np.full(len(site.rows), np.nan) if truth is None else to_numpy(auprc(scores, truth, mask))
    )
    columns["not_measured"] = "; ".join(refused)
    return columns


def run_league(
    checkpoint: Checkpoint,
    frame: pd.DataFrame,
    params: dict | None = None,
    progress: bool = True,
    context: RunContext | None = None,
) -> pd.DataFrame:
    """One row per instance and method: agreement with the references, one column per
    faithfulness measure (``params["measures"]``, None: ``DEFAULT_MEASURES``), plausibility
    AUPRC (NaN without planted rationales), ``unsupported`` (the HookError message where
    the model cannot run the method) and ``not_measured`` (why a measure refused the
    method, e.g. sensitivity-max an erasure method; its column is NaN there). Measures that
    read a companion model get it from ``context`` (:func:`league_needs`)."""
    params = {**LEAGUE_DEFAULTS, **(params or {})}
    methods = params["methods"] or default_methods()
    measures = params["measures"] or list(DEFAULT_MEASURES)
    models = measured_models(checkpoint, measures, context)
    parts = []
    for site in iterate_site_batches(checkpoint, frame, params["batch_size"], progress, "league"):
        scores = _scores(checkpoint, site, sorted({*methods, *REFERENCES.values()}))
        references = {name: scores[name] for name in REFERENCES.values()}
        if any(isinstance(value, str) for value in references.values()):
            raise AttnExplainError(f"the league's references failed: {references}")
        truth = rationale_tensor(frame, site, checkpoint.pipeline)
        supported = {name: scores[name] for name in methods if not isinstance(scores[name], str)}
        target = predicted_class(checkpoint.model, site.batch)  # what the measures explain
        explainers = {name: method_explainer(name, target) for name in supported}
        measured = {
            measure: measure_methods(
                build_measure(measure), models[measure], site.batch, supported, explainers
            )
            for measure in measures
        }
        for name in methods:
            part = {"instance": site.rows, "method": name}
            if name in supported:
                by_measure = {measure: values[name] for measure, values in measured.items()}
                part |= _method_rows(site, supported[name], references, by_measure, truth)
                part["unsupported"] = ""
            else:
                metrics = league_metrics(measures)
                part |= {metric: np.nan for metric in metrics}
                part |= {"unsupported": scores[name], "not_measured": ""}
            parts.append(pd.DataFrame(part))
    table = pd.concat(parts, ignore_index=True)
    table = table.assign(**companion_accuracy(table["instance"], measures, context))
    return table.sort_values(["method", "instance"], kind="stable").reset_index(drop=True)


def companion_accuracy(
    instances: pd.Series, measures: Sequence[str], context: RunContext | None
) -> dict[str, np.ndarray]:
    """``{"accuracy_<companion>": [rows] 0/1}``: whether each companion the ``measures``
    read predicts the label of each row's instance (its ``companion.train`` table), so that
    the league shows a shuffled-label model near chance and a fine-tuned one near the model,
    as the measures assume."""
    kinds = dict.fromkeys(get_measure(name).companion for name in measures)
    columns = {}
    for kind in (kind for kind in kinds if kind is not None and context is not None):
        correct = context.result(companion_role(kind)).set_index("instance")["correct"]
        columns[f"{COMPANION_ACCURACY}{kind}"] = correct.loc[instances].to_numpy(np.float64)
    return columns


def metrics_of(df: pd.DataFrame) -> tuple[str, ...]:
    """The league columns a per-instance table holds (its measures are those it was run
    with), the companions' accuracy last."""
    known = tuple(metric for metric in league_metrics(list_measures()) if metric in df.columns)
    return known + tuple(c for c in df.columns if c.startswith(COMPANION_ACCURACY))


def summarise_league(df: pd.DataFrame) -> pd.DataFrame:
    """Per method: the mean of every metric over instances where it is defined with its 95%
    bootstrap interval (``metric_low``, ``metric_high``), how many instances it covers,
    ``rank_<measure>`` for each faithfulness measure (1: the most faithful by that measure,
    ties share the best rank), so a reader sees where the measures disagree; methods the
    model does not support keep their reason, measures a method could not take say why."""
    rows = []
    for method, group in df.groupby("method", sort=False):
        row = {"method": method}
        for metric in metrics_of(df):
            row |= interval_columns(metric, group[metric].to_numpy(np.float64))
        row["count"] = int(group["spearman_gradient"].notna().sum())
        row["unsupported"] = next((text for text in group["unsupported"] if text), "")
        if "not_measured" in group:
            row["not_measured"] = next((text for text in group["not_measured"] if text), "")
        rows.append(row)
    summary = pd.DataFrame(rows)
    for name in (metric for metric in metrics_of(df) if metric in MEASURES):
        better_first = not get_measure(name).higher_is_better
        summary[f"rank_{name}"] = summary[name].rank(ascending=better_first, method="min")
    return summary.sort_values("spearman_gradient", ascending=False, na_position="last")


def measured_by(df: pd.DataFrame) -> list[str]:
    """The faithfulness measures a per-instance league table holds values of."""
    return [name for name in metrics_of(df) if name in MEASURES and df[name].notna().any()]


def measure_agreement(df: pd.DataFrame, reference: str = "comprehensiveness") -> Interval:
    """How alike the other measures of ``df`` rank its methods as ``reference`` does: the
    mean Spearman rho of the methods' rankings (:func:`~attnexplain.uncertainty.
    ranking_agreement`) with its bootstrap interval over instances. A method listed twice
    for one instance is an error, not a choice (pivot)."""
    matrices = {}
    for name in measured_by(df):
        sign = 1.0 if get_measure(name).higher_is_better else -1.0
        table = df.pivot(index="method", columns="instance", values=name)
        matrices[name] = sign * table.to_numpy(np.float64)
    if reference not in matrices:
        raise InvalidInputError(f"the league holds no {reference!r} values to compare with")
    return ranking_agreement(matrices, reference)


def figure_league(df: pd.DataFrame) -> plt.Figure:
    """The league as heat maps: methods by metric, means over instances; beside them, where
    the league ran several faithfulness measures, each method's rank under each (1: the most
    faithful), so that where the measures disagree shows at a glance."""
    metrics = list(metrics_of(df))
    summary = summarise_league(df).set_index("method")
    values = summary[metrics].dropna(how="all")
    ranks = [f"rank_{name}" for name in measured_by(df)]
    panels = 2 if len(ranks) > 1 else 1
    widths = [1.3 * len(metrics) + 3] + ([0.6 * len(ranks) + 1] if panels == 2 else [])
    fig, axes = plt.subplots(
        1,
        panels,
        figsize=(sum(widths), 0.45 * len(values) + 2.5),
        gridspec_kw={"width_ratios": widths},
        squeeze=False,
    )
    sns.heatmap(values, annot=True, fmt=".2f", cmap="viridis", cbar=False, ax=axes[0, 0])
    axes[0, 0].set(xlabel="", ylabel="", title="Agreement, faithfulness, plausibility")
    if panels == 2:
        shown = summary.loc[values.index, ranks].rename(columns=lambda c: c[len("rank_") :])
        sns.heatmap(shown, annot=True, fmt=".0f", cmap="viridis_r", cbar=False, ax=axes[0, 1])
        axes[0, 1].set(xlabel="", ylabel="", yticks=[], title="Rank by measure")
    fig.tight_layout()
    return fig


REGISTRATIONS = [
    {
        "name": "league.methods",
        "function": run_league,
        "summary": summarise_league,
        "figure": figure_league,
        "defaults": LEAGUE_DEFAULTS,
        "parameters": LEAGUE_PARAMETERS,
        "description": "League table: every attention-derived and gradient method, scored by "
        "agreement with gradient and leave-one-out, AOPC and plausibility",
        "validate": validate_league,
        "added_later": ("measures",),
        "needs": league_needs,
        "context_optional": True,
    },
]
