"""Jain & Wallace 2019, "Attention is not Explanation" (papers-spec A3-A5), on both model
families through the shared encode -> attention -> decode interface.

Each experiment is ``run(checkpoint, frame, params, progress) -> DataFrame`` (one row per
instance), with ``summary(df)`` and ``figure(df)``:

- ``correlation``: Kendall tau-b of attention against the J&W gradient and leave-one-out (and
  any other registered attribution), per instance, on the content tokens;
- ``permutation``: ``permutations`` random permutations of the attention over its support,
  decoded in one batch from one encoding; per instance the median output TVD (= |dy| for
  binary tasks);
- ``adversarial``: K attentions per instance that move far from the model's own (JSD) and from
  each other while the output moves by at most ``eps_optimise``; reported: the largest JSD
  among candidates whose output moved by at most ``eps_report``, the model's own attention
  included (JSD 0), and the adversaries themselves (kept for Wiegreffe & Pinter).

For transformers the site is the last layer's row that the classifier reads, all heads; JSD
and TVD of attention are averaged over heads, and max-attention bins use the head mean.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from attnexplain.device import draw, seeded_generator, to_numpy
from attnexplain.experiments.paper_numbers import ALL_CLASSES
from attnexplain.experiments.shared_scores import method_scores
from attnexplain.experiments.site_attention import (
    SiteBatch,
    attention_bin,
    decode_probabilities,
    instance_columns,
    iterate_site_batches,
    token_attention,
)
from attnexplain.hooks.interventions import shuffle_allowed
from attnexplain.metrics import entropy, jsd, kendall_tau, tvd
from attnexplain.models.checkpoint import Checkpoint
from attnexplain.uncertainty import bootstrap, interval_columns

PERMUTATION_DEFAULTS = {"permutations": 100, "batch_size": 32, "seed": 0}
ADVERSARIAL_DEFAULTS = {
    "adversaries": 5,
    "steps": 500,
    "lr": 0.01,
    "eps_optimise": 0.01,
    "eps_report": 0.05,
    "penalty": 500.0,
    # 64 instances per optimiser run faster per instance than 32 for the classic models
    # (1.0-1.5x over six runs of benchmarks/jain_wallace_batching.py, 1.2x on IMDB reviews)
    "batch_size": 64,
    "seed": 0,
}
CORRELATION_DEFAULTS = {"methods": ["jw-gradient", "leave-one-out"], "batch_size": 32}
# what each parameter means (batch_size: see the registry's SHARED_PARAMETERS)
CORRELATION_PARAMETERS = {
    "methods": "attribution methods whose token importance attention is compared with",
}
PERMUTATION_PARAMETERS = {
    "permutations": "random permutations of the attention per instance",
    "seed": "seed of the permutations",
}
ADVERSARIAL_PARAMETERS = {
    "adversaries": "adversarial attentions searched per instance",
    "steps": "optimiser steps of each search",
    "lr": "Adam learning rate of the search",
    "eps_optimise": "output change (TVD) the search may make before its penalty applies",
    "eps_report": "output change (TVD) within which an adversary counts as found",
    "penalty": "weight of the penalty on output change beyond eps_optimise",
    "seed": "seed of the searches' starting points",
}


def _head_mean(values: torch.Tensor, dims: int) -> torch.Tensor:
    """Average away site dimensions (heads) so that one number per candidate remains."""
    while values.dim() > dims:
        values = values.mean(-1)
    return values


def violins_by_bin(df: pd.DataFrame, column: str, ax: plt.Axes) -> None:
    """Violins of ``column`` per max-attention bin, split by predicted class (J&W's figures)."""
    sns.violinplot(
        data=df.assign(bin=attention_bin(df["max_attention"])),
        x="bin",
        y=column,
        hue="predicted_class",
        cut=0,
        density_norm="width",
        ax=ax,
    )
    ax.set(xlabel="max attention")


def _class_histogram(
    df: pd.DataFrame, column: str, bins: int, binrange: tuple[float, float], ax: plt.Axes
) -> None:
    """Step histograms of ``column``, one per predicted class."""
    sns.histplot(
        data=df,
        x=column,
        hue="predicted_class",
        bins=bins,
        binrange=binrange,
        element="step",
        ax=ax,
    )


# ---------------------------------------------------------------- permutation (A4)


def permutation_deltas(
    checkpoint: Checkpoint, site: SiteBatch, permutations: int, generator: torch.Generator
) -> torch.Tensor:
    """Output TVD [batch, permutations] under random permutations of the site attention."""
    expanded = site.attention.unsqueeze(1).expand(-1, permutations, *site.attention.shape[1:])
    shuffled = shuffle_allowed(expanded, site.support.unsqueeze(1), generator)
    with torch.no_grad():
        outputs = decode_probabilities(checkpoint, site, shuffled)
    return tvd(outputs, site.probabilities.unsqueeze(1))


def run_permutation(
    checkpoint: Checkpoint, frame: pd.DataFrame, params: dict | None = None, progress: bool = True
) -> pd.DataFrame:
    params = {**PERMUTATION_DEFAULTS, **(params or {})}
    generator = seeded_generator(params["seed"])
    parts = []
    for site in iterate_site_batches(
        checkpoint, frame, params["batch_size"], progress, "permutation"
    ):
        deltas = permutation_deltas(checkpoint, site, params["permutations"], generator)
        parts.append(
            pd.DataFrame(
                {
                    **instance_columns(frame, checkpoint.classes, site),
                    "median_output_change": to_numpy(deltas.median(1).values),
                    "mean_output_change": to_numpy(deltas.mean(1)),
                }
            )
        )
    return pd.concat(parts).sort_values("instance").reset_index(drop=True)


def summarise_permutation(df: pd.DataFrame) -> pd.DataFrame:
    """Median of the per-instance median output change by max-attention bin and class, with
    its 95% bootstrap interval (``median_low``, ``median_high``); then per bin over every
    class (class ``all``), and a last row (bin and class ``all``) over every instance."""
    binned = df.assign(bin=attention_bin(df["max_attention"]))
    rows = [
        {"bin": str(b), "predicted_class": label, **_median_columns(group)}
        for (b, label), group in binned.groupby(["bin", "predicted_class"], observed=True)
    ]
    rows += [
        {"bin": str(b), "predicted_class": ALL_CLASSES, **_median_columns(group)}
        for b, group in binned.groupby("bin", observed=True)
    ]
    rows.append({"bin": ALL_CLASSES, "predicted_class": ALL_CLASSES, **_median_columns(df)})
    return pd.DataFrame(rows)


def _median_columns(group: pd.DataFrame) -> dict[str, float]:
    changes = group["median_output_change"].to_numpy()
    return interval_columns("median", changes, np.median) | {"count": len(changes)}


def figure_permutation(df: pd.DataFrame) -> plt.Figure:
    """Violins of the median output change per max-attention bin, split by predicted class."""
    fig, ax = plt.subplots(figsize=(7, 4))
    violins_by_bin(df, "median_output_change", ax)
    ax.set(ylabel="median output change (TVD)", title="Permuting attention")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- adversarial (A5)


def adversarial_search(
    checkpoint: Checkpoint, site: SiteBatch, params: dict, generator: torch.Generator
) -> torch.Tensor:
    """K adversarial attentions per instance, [batch, K, *site, tokens], optimised together
    for the whole batch (model frozen, encoding fixed)."""
    k, shape = params["adversaries"], site.attention.shape
    support = site.support.unsqueeze(1)
    lengths = site.support.sum(-1, keepdim=True).unsqueeze(1).float()
    noise = draw(torch.randn, (shape[0], k, *shape[1:]), generator, site.attention.device)
    # J&W's init; -inf outside the support stays -inf (zero gradient, so Adam never moves it),
    # which spares a masking op in every step.
    logits = torch.log(1.0 / lengths) + 3.0 * noise
    logits = logits.masked_fill(~support, float("-inf")).requires_grad_(True)
    optimiser = torch.optim.Adam([logits], lr=params["lr"], amsgrad=True, fused=True)
    own, own_output = site.attention.unsqueeze(1), site.probabilities.unsqueeze(1)
    own_entropy = entropy(own)
    first, second = torch.triu_indices(k, k, offset=1)
    for _ in range(params["steps"]):
        candidates = torch.softmax(logits, dim=-1)
        outputs = decode_probabilities(checkpoint, site, candidates)
        moved = tvd(outputs, own_output)
        # one entropy per candidate serves its JSD from the model's attention and all its pairs
        entropies = entropy(candidates)
        distance = _head_mean(jsd(candidates, own, entropies=(entropies, own_entropy)), 2)
        # mean over all K x K pairs of a symmetric, zero-diagonal JSD matrix, from the
        # K (K - 1) / 2 pairs above the diagonal
        pairs = (candidates.index_select(1, first), candidates.index_select(1, second))
        pair_entropies = (entropies.index_select(1, first), entropies.index_select(1, second))
        pairwise = jsd(*pairs, entropies=pair_entropies)
        mutual = _head_mean(pairwise, 2).sum(1) * (2 / k**2)
        penalty = params["penalty"] * torch.relu(moved - params["eps_optimise"])
        loss = (penalty - distance).sum() - mutual.sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return torch.softmax(logits.detach(), dim=-1)


def run_adversarial(
    checkpoint: Checkpoint, frame: pd.DataFrame, params: dict | None = None, progress: bool = True
) -> pd.DataFrame:
    params = {**ADVERSARIAL_DEFAULTS, **(params or {})}
    generator = seeded_generator(params["seed"])
    for parameter in checkpoint.model.parameters():
        parameter.requires_grad_(False)
    parts = []
    for site in iterate_site_batches(
        checkpoint, frame, params["batch_size"], progress, "adversarial"
    ):
        adversaries = adversarial_search(checkpoint, site, params, generator)
        with torch.no_grad():
            moved = tvd(
                decode_probabilities(checkpoint, site, adversaries), site.probabilities.unsqueeze(1)
            )
        distance = _head_mean(
            jsd(adversaries, site.attention.unsqueeze(1), site.support.unsqueeze(1)), 2
        )
        within = moved <= params["eps_report"]
        # The model's own attention (JSD 0, output unmoved) always qualifies.
        best = torch.where(within, distance, torch.zeros_like(distance)).max(1)
        lengths = site.batch.lengths.tolist()
        parts.append(
            pd.DataFrame(
                {
                    **instance_columns(frame, checkpoint.classes, site),
                    "eps_max_jsd": to_numpy(best.values),
                    "adversaries_within_eps": to_numpy(within.sum(1)),
                    "adversary_output_change": [row.tolist() for row in moved],
                    "adversary_jsd": [row.tolist() for row in distance],
                    "adversaries": [
                        adv[..., :n].tolist() for adv, n in zip(adversaries, lengths, strict=True)
                    ],
                    "eps_optimise": params["eps_optimise"],
                    "eps_report": params["eps_report"],
                }
            )
        )
    return pd.concat(parts).sort_values("instance").reset_index(drop=True)


def summarise_adversarial(df: pd.DataFrame) -> pd.DataFrame:
    """Per predicted class and over all instances (class ``all``): median eps-max JSD and the
    share of instances >= 0.5, each with its 95% bootstrap interval (``_low``, ``_high``)."""
    rows = [
        {
            "predicted_class": label,
            **interval_columns("median_eps_max_jsd", group["eps_max_jsd"], np.median),
            **interval_columns("share_at_least_0.5", group["eps_max_jsd"] >= 0.5),
            "count": len(group),
        }
        for label, group in _by_class_and_all(df)
    ]
    return pd.DataFrame(rows)


def _by_class_and_all(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(class, rows) per predicted class, then (``all``, every row)."""
    return [*df.groupby("predicted_class"), (ALL_CLASSES, df)]


def figure_adversarial(df: pd.DataFrame) -> plt.Figure:
    """Histogram of eps-max JSD per class (40 bins on [0, 0.7]) and violins by max-attention
    bin."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    _class_histogram(df, "eps_max_jsd", bins=40, binrange=(0, 0.7), ax=left)
    eps = df["eps_report"].iloc[0] if len(df) else float("nan")
    left.set(
        xlabel=f"max JSD of adversaries with output change <= {eps:g}",
        title="Adversarial attention",
    )
    violins_by_bin(df, "eps_max_jsd", right)
    right.set(ylabel="eps-max JSD")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- correlation (A3)


def run_correlation(
    checkpoint: Checkpoint, frame: pd.DataFrame, params: dict | None = None, progress: bool = True
) -> pd.DataFrame:
    """Kendall tau-b (and its p-value) of attention vs each method, per instance, on content
    tokens; transformers' attention is the head mean of the site row."""
    params = {**CORRELATION_DEFAULTS, **(params or {})}
    parts = []
    for site in iterate_site_batches(
        checkpoint, frame, params["batch_size"], progress, "correlation"
    ):
        attention = token_attention(site)
        columns = instance_columns(frame, checkpoint.classes, site)
        mask = site.batch.content_mask
        for method in params["methods"]:
            scores = method_scores(checkpoint, site.batch, method)
            correlation = kendall_tau(attention, scores, mask)
            columns[f"tau_{method}"] = correlation.statistic
            columns[f"p_{method}"] = correlation.pvalue
        parts.append(pd.DataFrame(columns))
    return pd.concat(parts).sort_values("instance").reset_index(drop=True)


def summarise_correlation(df: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per method, per predicted class and over all instances (class ``all``): mean and std
    (ddof 0) of tau over defined instances, the share with p <= ``alpha`` ("Sig. Frac."), each
    mean with its 95% bootstrap interval (``_low``, ``_high``), and how many instances had no
    tau (NaN)."""
    rows = []
    methods = [c[len("tau_") :] for c in df.columns if c.startswith("tau_")]
    for method in methods:
        for label, group in _by_class_and_all(df):
            tau = group[f"tau_{method}"].to_numpy()
            defined = ~np.isnan(tau)
            significant = group[f"p_{method}"].to_numpy()[defined] <= alpha
            rows.append(
                {
                    "method": method,
                    "predicted_class": label,
                    **interval_columns("mean_tau", tau[defined]),
                    "std_tau": float(tau[defined].std()) if defined.any() else float("nan"),
                    **interval_columns("sig_frac", significant.astype(float)),
                    "count": int(defined.sum()),
                    "undefined": int((~defined).sum()),
                }
            )
    return pd.DataFrame(rows)


def figure_correlation(df: pd.DataFrame) -> plt.Figure:
    """Histograms of per-instance tau for each method, split by predicted class, with the
    mean over all instances and its 95% bootstrap interval as a band."""
    methods = [c[len("tau_") :] for c in df.columns if c.startswith("tau_")]
    fig, axes = plt.subplots(1, len(methods), figsize=(5.5 * len(methods), 4), squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        _class_histogram(df, f"tau_{method}", bins=30, binrange=(-1, 1), ax=ax)
        mean = bootstrap(df[f"tau_{method}"])
        if mean.count:
            ax.axvspan(mean.low, mean.high, color="black", alpha=0.15, lw=0)
            ax.axvline(mean.value, color="black", lw=1)
            ax.text(0.02, 0.97, f"mean {mean}", transform=ax.transAxes, va="top", fontsize=8)
        ax.set(xlabel=f"Kendall tau: attention vs {method}", title="Attention vs importance")
    fig.tight_layout()
    return fig
