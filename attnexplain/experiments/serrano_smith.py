"""Serrano & Smith 2019, "Is Attention Interpretable?", on both model families through the
shared encode -> attention -> decode interface (see :mod:`.site_attention`).

An *item* is a content token at the site (classic models: the tokens attention is over;
transformers: the content keys of the classifier's row, special tokens never removed).
Removing items zeroes their attention in every head and renormalises each head's row over
what is left (:func:`~attnexplain.hooks.interventions.zero_keys`); the encoding is computed
once and every candidate attention of a batch is decoded in one call.

- ``zero_top``: zero the highest-attention item (head mean for transformers) and, for
  comparison, one random other item; per instance the output JSD and decision flip of both,
  and the attention difference between them (S&S section 4).
- ``flip_fraction``: remove items in decreasing order of attention, of gradient importance
  (``gradient_method``, J&W's ``jw-gradient`` by default), of gradient x attention, and in
  random order until the decision flips; per instance and ordering the fraction of items
  removed at the flip (NaN when it never flips with one item left) (S&S section 5).

Both need at least two items; instances with fewer report NaN (and never flip).
"""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from attnexplain.attribution import get_method
from attnexplain.device import draw, seeded_generator, to_numpy
from attnexplain.errors import InvalidInputError
from attnexplain.experiments.shared_scores import method_scores
from attnexplain.experiments.site_attention import (
    SiteBatch,
    decode_probabilities,
    instance_columns,
    iterate_site_batches,
    token_attention,
)
from attnexplain.hooks.interventions import zero_keys
from attnexplain.metrics import jsd
from attnexplain.models.checkpoint import Checkpoint

ORDERINGS = ("attention", "gradient", "gradient_x_attention", "random")
ZERO_TOP_DEFAULTS = {"batch_size": 32, "seed": 0}
FLIP_FRACTION_DEFAULTS = {
    "orderings": list(ORDERINGS),
    "gradient_method": "jw-gradient",
    "batch_size": 16,
    "seed": 0,
}
ZERO_TOP_PARAMETERS = {
    "seed": "seed of the random item zeroed beside the top one",
}
FLIP_FRACTION_PARAMETERS = {
    "orderings": f"orders in which items are removed, of {', '.join(ORDERINGS)}",
    "gradient_method": "the attribution method behind the gradient orderings",
    "seed": "seed of the random ordering",
}


# ---------------------------------------------------------------- shared


def zero_items(attention: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """K candidates per instance from the site attention: each with its ``removed`` items
    zeroed and every row renormalised over the rest.

    attention: [batch, *site, tokens]; removed: [batch, K, tokens] bool.
    Returns [batch, K, *site, tokens] (what :func:`decode_probabilities` takes).
    """
    batch, k = removed.shape[:2]
    shape = attention.shape[1:]
    flat = attention.unsqueeze(1).expand(batch, k, *shape).reshape(batch * k, *shape)
    # the intervention reads only the pattern and the key mask, no SiteCall
    zeroed = zero_keys(removed.reshape(batch * k, -1))(flat, None)
    return zeroed.reshape(batch, k, *shape)


def removal_outputs(checkpoint: Checkpoint, site: SiteBatch, removed: torch.Tensor) -> torch.Tensor:
    """Output distributions [batch, K, classes] with the ``removed`` [batch, K, tokens] items
    of each candidate zeroed at the site, decoded in one call."""
    if removed.shape[1] == 0:  # a batch of one-item instances: nothing to remove
        return site.probabilities.new_zeros(len(site.rows), 0, site.probabilities.shape[-1])
    with torch.no_grad():
        return decode_probabilities(checkpoint, site, zero_items(site.attention, removed))


def flips(outputs: torch.Tensor, site: SiteBatch) -> torch.Tensor:
    """[batch, K] bool: whether each candidate's decision (argmax of ``outputs`` [batch, K,
    classes]) differs from the model's own."""
    return outputs.argmax(-1) != site.probabilities.argmax(-1, keepdim=True)


def item_counts(site: SiteBatch) -> torch.Tensor:
    """[batch] long: how many items (content tokens) each instance has."""
    return site.batch.content_mask.sum(-1)


# ---------------------------------------------------------------- zero top (S&S section 4)


def top_and_random_items(
    attention: torch.Tensor, items: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions [batch] of the highest-attention item and of a random other item.

    attention: [batch, tokens] (head mean); items: [batch, tokens] bool. The random item is
    drawn uniformly among the items other than the top one (any position where there is none).
    """
    top = attention.masked_fill(~items, float("-inf")).argmax(-1)
    others = items.clone()
    others[torch.arange(len(top)), top] = False
    noise = draw(torch.rand, attention.shape, generator, attention.device)
    return top, noise.masked_fill(~others, -1.0).argmax(-1)


def zero_top_columns(
    checkpoint: Checkpoint, site: SiteBatch, generator: torch.Generator
) -> dict[str, object]:
    """Per-instance columns of :func:`run_zero_top` for one batch: JSD, flip and position of
    the top and the random item, and their attention difference."""
    attention, items = token_attention(site), site.batch.content_mask
    top, other = top_and_random_items(attention, items, generator)
    positions = torch.stack([top, other], 1)  # [batch, 2]
    removed = torch.zeros(len(top), 2, attention.shape[-1], dtype=torch.bool)
    removed.scatter_(-1, positions.unsqueeze(-1), True)
    outputs = removal_outputs(checkpoint, site, removed)
    divergence = to_numpy(jsd(outputs, site.probabilities.unsqueeze(1)).double())
    flipped = to_numpy(flips(outputs, site))
    weights = to_numpy(attention.gather(-1, positions).double())
    defined = to_numpy(item_counts(site) >= 2)

    def kept(values: np.ndarray) -> np.ndarray:
        return np.where(defined, values, np.nan)

    def kept_flags(values: np.ndarray) -> pd.arrays.BooleanArray:
        return pd.array(np.where(defined, values, None), dtype="boolean")

    return {
        "items": to_numpy(item_counts(site)),
        "top_item": np.where(defined, to_numpy(top), -1),
        "random_item": np.where(defined, to_numpy(other), -1),
        "jsd_top": kept(divergence[:, 0]),
        "jsd_random": kept(divergence[:, 1]),
        "flipped_top": kept_flags(flipped[:, 0]),
        "flipped_random": kept_flags(flipped[:, 1]),
        "attention_difference": kept(weights[:, 0] - weights[:, 1]),
    }


def run_zero_top(
    checkpoint: Checkpoint, frame: pd.DataFrame, params: dict | None = None, progress: bool = True
) -> pd.DataFrame:
    """One row per instance: ``jsd_top`` / ``jsd_random`` (output JSD after zeroing the top /
    a random item), ``flipped_top`` / ``flipped_random`` (nullable bool) and
    ``attention_difference`` (top weight minus random weight); NaN / NA below two items."""
    params = {**ZERO_TOP_DEFAULTS, **(params or {})}
    generator = seeded_generator(params["seed"])
    parts = []
    for site in iterate_site_batches(checkpoint, frame, params["batch_size"], progress, "zero top"):
        columns = instance_columns(frame, checkpoint.classes, site)
        parts.append(pd.DataFrame({**columns, **zero_top_columns(checkpoint, site, generator)}))
    return pd.concat(parts).sort_values("instance").reset_index(drop=True)


def summarise_zero_top(df: pd.DataFrame) -> pd.DataFrame:
    """One row over the instances with two items or more: ``count``, ``undefined`` (fewer
    items), ``mean_jsd_top``, ``mean_jsd_random``, ``flip_rate_top``, ``flip_rate_random`` and
    ``share_top_larger`` (zeroing the top item moved the output more than the random one)."""
    defined = df[df["items"] >= 2]
    mean = (lambda s: float(s.astype(float).mean())) if len(defined) else (lambda s: np.nan)
    return pd.DataFrame(
        [
            {
                "count": len(defined),
                "undefined": len(df) - len(defined),
                "mean_jsd_top": mean(defined["jsd_top"]),
                "mean_jsd_random": mean(defined["jsd_random"]),
                "flip_rate_top": mean(defined["flipped_top"]),
                "flip_rate_random": mean(defined["flipped_random"]),
                "share_top_larger": mean(defined["jsd_top"] > defined["jsd_random"]),
            }
        ]
    )


def figure_zero_top(df: pd.DataFrame) -> plt.Figure:
    """JSD(top) - JSD(random) against the attention difference (S&S's figure), and the flip
    rates of both removals."""
    summary = summarise_zero_top(df).iloc[0]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.scatter(df["attention_difference"], df["jsd_top"] - df["jsd_random"], s=8, alpha=0.6)
    left.axhline(0.0, color="grey", linewidth=0.8)
    left.set(
        xlabel="attention difference (top - random)",
        ylabel="JSD(top) - JSD(random)",
        title="Zeroing the top attention weight",
    )
    right.bar(["top", "random"], [summary["flip_rate_top"], summary["flip_rate_random"]])
    right.set(ylabel="decision flip rate", ylim=(0, 1), title="Flips after zeroing one item")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- flip fraction (S&S section 5)


def removal_masks(scores: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Cumulative removals in decreasing order of ``scores`` [batch, tokens] among ``items``
    [batch, tokens] bool (ties: earlier position first).

    Returns [batch, K, tokens] bool with K = most items in the batch - 1: candidate k removes
    the k + 1 top items (every item once k + 1 reaches an instance's count)."""
    order = scores.masked_fill(~items, float("-inf")).argsort(dim=-1, descending=True, stable=True)
    ranks = order.argsort(-1)
    steps = max(int(items.sum(-1).max()) - 1, 0)
    return (ranks.unsqueeze(1) <= torch.arange(steps).view(1, -1, 1)) & items.unsqueeze(1)


def fraction_at_flip(flipped: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """[batch] float64: the fraction of items removed at the first flip, NaN where none.

    flipped: [batch, K] bool, candidate k having removed k + 1 items; counts: [batch] items.
    Only candidates that leave an item count (k + 1 < count)."""
    removed = torch.arange(1, flipped.shape[1] + 1)
    flipped = flipped & (removed.unsqueeze(0) < counts.unsqueeze(1))
    if flipped.shape[1] == 0:
        return torch.full(counts.shape, float("nan"), dtype=torch.float64)
    first = flipped.to(torch.uint8).argmax(1) + 1  # argmax: the first maximum
    fraction = first.double() / counts.double()
    return torch.where(flipped.any(1), fraction, torch.nan)


def ordering_scores(
    checkpoint: Checkpoint,
    site: SiteBatch,
    orderings: list[str],
    gradient_method: str,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Scores [batch, tokens] that each ordering removes items by, highest first: attention
    (head mean), the gradient method's importance, their product, and uniform noise."""
    attention = token_attention(site)
    gradient = (
        method_scores(checkpoint, site.batch, gradient_method)
        if {"gradient", "gradient_x_attention"} & set(orderings)
        else None
    )
    makers: dict[str, Callable[[], torch.Tensor]] = {
        "attention": lambda: attention,
        "gradient": lambda: gradient,
        "gradient_x_attention": lambda: gradient * attention,
        "random": lambda: draw(torch.rand, attention.shape, generator, attention.device),
    }
    return {name: makers[name]() for name in orderings}


def flip_fraction_columns(
    checkpoint: Checkpoint, site: SiteBatch, params: dict, generator: torch.Generator
) -> dict[str, np.ndarray]:
    """``fraction_<ordering>`` and ``never_flipped_<ordering>`` for one batch, each ordering's
    removals decoded in one call."""
    items, counts = site.batch.content_mask, item_counts(site)
    scores = ordering_scores(
        checkpoint, site, params["orderings"], params["gradient_method"], generator
    )
    columns: dict[str, np.ndarray] = {"items": to_numpy(counts)}
    for name, values in scores.items():
        removed = removal_masks(values, items)
        flipped = flips(removal_outputs(checkpoint, site, removed), site)
        fraction = to_numpy(fraction_at_flip(flipped, counts))
        columns[f"fraction_{name}"] = fraction
        columns[f"never_flipped_{name}"] = np.isnan(fraction)
    return columns


def validate_flip_fraction(params: dict) -> None:
    """Known, distinct orderings (at least one) and a registered gradient method."""
    orderings = params["orderings"]
    unknown = [o for o in orderings if o not in ORDERINGS]
    if not orderings or unknown or len(set(orderings)) != len(orderings):
        raise InvalidInputError(
            f"orderings must be distinct names among {', '.join(ORDERINGS)}, got {orderings!r}"
        )
    get_method(params["gradient_method"])


def run_flip_fraction(
    checkpoint: Checkpoint, frame: pd.DataFrame, params: dict | None = None, progress: bool = True
) -> pd.DataFrame:
    """One row per instance: ``items`` and, per ordering, ``fraction_<ordering>`` (items
    removed at the decision flip / items; NaN if it never flips) and
    ``never_flipped_<ordering>``."""
    params = {**FLIP_FRACTION_DEFAULTS, **(params or {})}
    validate_flip_fraction(params)
    generator = seeded_generator(params["seed"])
    parts = []
    for site in iterate_site_batches(
        checkpoint, frame, params["batch_size"], progress, "flip fraction"
    ):
        columns = instance_columns(frame, checkpoint.classes, site)
        columns |= flip_fraction_columns(checkpoint, site, params, generator)
        parts.append(pd.DataFrame(columns))
    return pd.concat(parts).sort_values("instance").reset_index(drop=True)


def _orderings(df: pd.DataFrame) -> list[str]:
    return [c[len("fraction_") :] for c in df.columns if c.startswith("fraction_")]


def summarise_flip_fraction(df: pd.DataFrame) -> pd.DataFrame:
    """Per ordering: ``median_fraction`` (items removed at the flip, over the instances that
    flip), ``never_flipped`` (share that never flip), ``flipped`` and ``count``."""
    rows = []
    for name in _orderings(df):
        fraction = df[f"fraction_{name}"].to_numpy(dtype=float)
        flipped = ~np.isnan(fraction)
        rows.append(
            {
                "ordering": name,
                "median_fraction": float(np.median(fraction[flipped])) if flipped.any() else np.nan,
                "never_flipped": float((~flipped).mean()) if len(df) else np.nan,
                "flipped": int(flipped.sum()),
                "count": len(df),
            }
        )
    return pd.DataFrame(
        rows, columns=["ordering", "median_fraction", "never_flipped", "flipped", "count"]
    )


def figure_flip_fraction(df: pd.DataFrame) -> plt.Figure:
    """Boxes of the fraction removed at the flip per ordering (flipped instances) and the
    share of instances that never flip."""
    names = _orderings(df)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    fractions = [df[f"fraction_{n}"].dropna().to_numpy(dtype=float) for n in names]
    left.boxplot([f if len(f) else [np.nan] for f in fractions], tick_labels=names)
    left.set(ylabel="fraction of items removed at the flip", ylim=(0, 1), title="Removal order")
    summary = summarise_flip_fraction(df)
    right.bar(summary["ordering"], summary["never_flipped"])
    right.set(ylabel="share never flipped", ylim=(0, 1), title="Decision never flips")
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    return fig


REGISTRATIONS = [
    {
        "name": "serrano_smith.zero_top",
        "function": run_zero_top,
        "summary": summarise_zero_top,
        "figure": figure_zero_top,
        "defaults": ZERO_TOP_DEFAULTS,
        "parameters": ZERO_TOP_PARAMETERS,
        "description": "S&S: output change when the top vs a random attention item is zeroed",
    },
    {
        "name": "serrano_smith.flip_fraction",
        "function": run_flip_fraction,
        "summary": summarise_flip_fraction,
        "figure": figure_flip_fraction,
        "defaults": FLIP_FRACTION_DEFAULTS,
        "parameters": FLIP_FRACTION_PARAMETERS,
        "description": "S&S: fraction of items removed until the decision flips, per ordering",
        "validate": validate_flip_fraction,
    },
]
