"""A league table of explanation methods on one model: every attention-derived and gradient
method scored by agreement with gradient and leave-one-out importance (Spearman, Kendall),
ERASER faithfulness (AOPC comprehensiveness and sufficiency) and, where the data plants its
rationale (the synthetic task), plausibility (AUPRC against the planted tokens).

Registered as ``league.methods``; a plan with one model entry per ``site_layer`` gives the
transformer's table per layer (raw attention is read at the site; rollout-style methods
aggregate the layers below it).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from attnexplain.alignment import text_alignment
from attnexplain.attribution import list_methods
from attnexplain.device import to_numpy
from attnexplain.errors import AttnExplainError, HookError, InvalidInputError
from attnexplain.experiments.shared_scores import method_scores
from attnexplain.experiments.site_attention import SiteBatch, iterate_site_batches
from attnexplain.faithfulness import aopc, eraser_curves
from attnexplain.metrics import auprc, kendall_tau, spearman
from attnexplain.models.checkpoint import Checkpoint

REFERENCES = {"gradient": "jw-gradient", "loo": "leave-one-out"}
SCORED_GRADIENTS = ("saliency", "input-x-gradient", "integrated-gradients")
LEAGUE_DEFAULTS = {"methods": None, "batch_size": 16}
METRICS = (
    "spearman_gradient",
    "kendall_gradient",
    "spearman_loo",
    "kendall_loo",
    "comprehensiveness",
    "sufficiency",
    "auprc",
)


def default_methods() -> list[str]:
    """Every registered attention-derived method, J&W's gradient and leave-one-out, and the
    plain gradient methods of Captum."""
    return [*list_methods("attention"), *REFERENCES.values(), *SCORED_GRADIENTS]


def validate_league(params: dict) -> None:
    methods = params.get("methods")
    if methods is None:
        return
    known = set(list_methods())
    unknown = [name for name in methods if name not in known]
    if not methods or unknown:
        raise InvalidInputError(
            f"methods must be a non-empty list of registered methods; unknown: {unknown}"
        )


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
    site: SiteBatch, scores: torch.Tensor, references: dict, curves: dict, truth
) -> dict[str, np.ndarray]:
    mask = site.batch.content_mask
    columns = {}
    for short, reference in REFERENCES.items():
        columns[f"spearman_{short}"] = spearman(scores, references[reference], mask).statistic
        columns[f"kendall_{short}"] = kendall_tau(scores, references[reference], mask).statistic
    for metric, per_bin in curves.items():
        columns[metric] = to_numpy(aopc(per_bin))
    columns["auprc"] = (
        np.full(len(site.rows), np.nan) if truth is None else to_numpy(auprc(scores, truth, mask))
    )
    return columns


def run_league(
    checkpoint: Checkpoint, frame: pd.DataFrame, params: dict | None = None, progress: bool = True
) -> pd.DataFrame:
    """One row per instance and method: agreement with the references, AOPC comprehensiveness
    and sufficiency (ERASER bins), plausibility AUPRC (NaN without planted rationales) and
    ``unsupported`` (the HookError message where the model cannot run the method)."""
    params = {**LEAGUE_DEFAULTS, **(params or {})}
    methods = params["methods"] or default_methods()
    model, parts = checkpoint.model, []
    for site in iterate_site_batches(checkpoint, frame, params["batch_size"], progress, "league"):
        scores = _scores(checkpoint, site, sorted({*methods, *REFERENCES.values()}))
        references = {name: scores[name] for name in REFERENCES.values()}
        if any(isinstance(value, str) for value in references.values()):
            raise AttnExplainError(f"the league's references failed: {references}")
        truth = rationale_tensor(frame, site, checkpoint.pipeline)
        supported = {name: scores[name] for name in methods if not isinstance(scores[name], str)}
        curves = eraser_curves(model, site.batch, supported)
        for name in methods:
            part = {"instance": site.rows, "method": name}
            if name in supported:
                part |= _method_rows(site, supported[name], references, curves[name], truth)
                part["unsupported"] = ""
            else:
                part |= {metric: np.nan for metric in METRICS} | {"unsupported": scores[name]}
            parts.append(pd.DataFrame(part))
    table = pd.concat(parts, ignore_index=True)
    return table.sort_values(["method", "instance"], kind="stable").reset_index(drop=True)


def summarise_league(df: pd.DataFrame) -> pd.DataFrame:
    """Per method: the mean of every metric over instances where it is defined, and how many
    instances it covers; methods the model does not support keep their reason."""
    rows = []
    for method, group in df.groupby("method", sort=False):
        row = {"method": method, **{metric: group[metric].mean() for metric in METRICS}}
        row["count"] = int(group["spearman_gradient"].notna().sum())
        row["unsupported"] = next((text for text in group["unsupported"] if text), "")
        rows.append(row)
    return pd.DataFrame(rows).sort_values("spearman_gradient", ascending=False, na_position="last")


def figure_league(df: pd.DataFrame) -> plt.Figure:
    """The league as a heat map: methods by metric, means over instances."""
    summary = summarise_league(df).set_index("method")[list(METRICS)].dropna(how="all")
    fig, ax = plt.subplots(figsize=(1.3 * len(METRICS) + 3, 0.45 * len(summary) + 1.5))
    sns.heatmap(summary, annot=True, fmt=".2f", cmap="viridis", cbar=False, ax=ax)
    ax.set(xlabel="", ylabel="", title="Explanation methods: agreement, faithfulness, plausibility")
    fig.tight_layout()
    return fig


REGISTRATIONS = [
    {
        "name": "league.methods",
        "run": run_league,
        "summary": summarise_league,
        "figure": figure_league,
        "defaults": LEAGUE_DEFAULTS,
        "description": "League table: every attention-derived and gradient method, scored by "
        "agreement with gradient and leave-one-out, AOPC and plausibility",
        "validate": validate_league,
    },
]
