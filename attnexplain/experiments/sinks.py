"""Attention sinks, measured: how much of a decoder's attention lands on the first token and
on other "sink" positions, and whether attention agrees with gradient and leave-one-out
importance once the sinks are discounted, beside the norm-based scores (Kobayashi et al.),
which weigh attention by what the attended token adds.

The rule for a sink. In one layer and head of one prompt's pattern A [tokens, tokens]
(causal: row i attends to keys 0..i), key j is a sink when the rows after it put on it, on
average, at least ``threshold`` of their mass (default 0.3: a third of every later row's
attention on one token), mean_{i > j} A[i, j] >= threshold, and at least ``min_readers``
rows come after it (default 4, so that the last few tokens, read by one or two rows, are not
called sinks by chance). The first token's share, mean_{i >= 1} A[i, 0], is reported
whether or not it passes; the other sinks' share is mean_{i >= 1} sum_{sinks j != 0, j < i}
A[i, j].

Agreement is measured as J&W do (Kendall tau-b over the tokens), for the next token the LM
predicts after each prompt, at the site layer's last row (heads averaged): attention and the
norm-based scores against the J&W gradient and leave-one-out, over every token and with the
site layer's sinks (of any head) left out and the remaining scores renormalised to sum 1
(which leaves tau unchanged but is what a reader of the renormalised attention sees).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from attnexplain.attribution import attribute
from attnexplain.data.batching import collate
from attnexplain.data.text import Framing
from attnexplain.device import to_numpy
from attnexplain.errors import InvalidInputError
from attnexplain.experiments.shared_scores import method_scores
from attnexplain.experiments.site_attention import (
    instance_columns,
    iterate_site_batches,
    token_attention,
)
from attnexplain.hooks import capture, list_sites
from attnexplain.hooks.target import hooked_module
from attnexplain.metrics import kendall_tau
from attnexplain.models.causal_lm import NextTokenLM
from attnexplain.models.checkpoint import Checkpoint
from attnexplain.models.hf import HFClassifier
from attnexplain.uncertainty import interval_columns

SINK_THRESHOLD = 0.3
MIN_READERS = 4
EXPLAINERS = ("attention", "attention-norm")
REFERENCES = ("jw-gradient", "leave-one-out")


@dataclass
class SinkReport:
    """``heads``: one row per (prompt, layer, head): ``first_share``, ``other_sink_share``,
    ``sinks`` (the sink positions, comma-separated). ``agreement``: one row per (prompt,
    scores, reference): ``tau`` over every token, ``tau_without_sinks`` with the site layer's
    sinks left out, ``sinks_left_out`` (how many)."""

    heads: pd.DataFrame
    agreement: pd.DataFrame


def sink_positions(
    pattern: torch.Tensor, threshold: float, min_readers: int, causal: bool = True
) -> torch.Tensor:
    """[heads, tokens] bool: the sinks of each head of one pattern [heads, tokens, tokens] by
    the module docstring's rule; a key's readers are the rows after it (``causal``) or every
    other row (an encoder's)."""
    readers = _readers(pattern.shape[-1], causal, pattern.device)
    received = (pattern * readers).sum(-2) / readers.sum(0).clamp_min(1)
    return (received >= threshold) & (readers.sum(0) >= min_readers)


def _readers(tokens: int, causal: bool, device: torch.device) -> torch.Tensor:
    """[tokens, tokens] bool: row i reads key j for i != j (causal: i > j)."""
    ones = torch.ones(tokens, tokens, dtype=torch.bool, device=device)
    return ones.tril(-1) if causal else ones & ~torch.eye(tokens, dtype=torch.bool, device=device)


def sink_shares(
    pattern: torch.Tensor, sinks: torch.Tensor, causal: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per head of ``pattern`` [heads, tokens, tokens] with its ``sinks`` [heads, tokens]:
    the mean share of a row's attention on the first token, and on the other sinks, over the
    rows that read the first token ([heads] each)."""
    rows = _readers(pattern.shape[-1], causal, pattern.device)[:, 0]
    others = sinks.clone()
    others[:, 0] = False
    read = pattern[:, rows]
    return read[..., 0].mean(-1), (read * others[:, None, :]).sum(-1).mean(-1)


def _head_rows(
    prompt: int, layer: int, pattern: torch.Tensor, sinks: torch.Tensor
) -> list[tuple[int, int, int, float, float, str]]:
    """Rows of :attr:`SinkReport.heads` for one layer's causal pattern [heads, tokens, tokens]
    and its sinks [heads, tokens]."""
    first, other = sink_shares(pattern, sinks)
    return [
        (
            prompt,
            layer,
            head,
            float(first[head]),
            float(other[head]),
            ",".join(map(str, sinks[head].nonzero().flatten().tolist())),
        )
        for head in range(pattern.shape[0])
    ]


def _renormalised(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``scores`` [tokens] over the kept tokens, summing to 1 there (as magnitudes)."""
    kept = scores.abs() * keep
    return kept / kept.sum().clamp_min(torch.finfo(kept.dtype).tiny)


def attention_sinks(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    layer: int = -1,
    threshold: float = SINK_THRESHOLD,
    min_readers: int = MIN_READERS,
) -> SinkReport:
    """Sink shares per layer and head, and agreement with and without sinks (module
    docstring), for each of ``prompts`` read by ``model`` (a transformers ``...ForCausalLM``
    the hooks support) with its ``tokenizer``; ``layer``: the site of the agreement figures.
    """
    if not prompts or not 0 < threshold <= 1 or min_readers < 1:
        raise InvalidInputError(
            "pass at least one prompt, a threshold in (0, 1] and min_readers >= 1; got "
            f"{len(prompts)} prompts, threshold {threshold}, min_readers {min_readers}"
        )
    classifier = HFClassifier(NextTokenLM(model), site_layer=layer)
    classifier.check_site()
    sites = list_sites(model)
    site = layer % len(sites)
    heads, agreement = [], []
    for number, prompt in enumerate(prompts):
        ids = tokenizer(prompt)["input_ids"]
        if not ids:
            raise InvalidInputError(f"prompt {number} has no tokens: pass non-empty prompts")
        batch = collate([ids], framing=Framing(0, 0, 0))
        with torch.no_grad(), capture(model) as cache:
            model(**batch.model_inputs())
        site_sinks = None
        for index, name in enumerate(sites):
            pattern = cache[name][0].float()
            sinks = sink_positions(pattern, threshold, min_readers)
            heads += _head_rows(number, index, pattern, sinks)
            site_sinks = sinks.any(0) if index == site else site_sinks
        scores = {
            method: attribute(classifier, batch, method).scores[0]
            for method in (*EXPLAINERS, *REFERENCES)
        }
        keep = ~site_sinks
        for explainer in EXPLAINERS:
            for reference in REFERENCES:
                x, y = scores[explainer][None], scores[reference][None]
                without = (
                    _renormalised(scores[explainer], keep)[None],
                    _renormalised(scores[reference], keep)[None],
                )
                agreement.append(
                    (
                        number,
                        explainer,
                        reference,
                        float(kendall_tau(x, y).statistic[0]),
                        float(kendall_tau(*without, keep[None]).statistic[0]),
                        int(site_sinks.sum()),
                    )
                )
    return SinkReport(
        pd.DataFrame(
            heads, columns=["prompt", "layer", "head", "first_share", "other_sink_share", "sinks"]
        ),
        pd.DataFrame(
            agreement,
            columns=["prompt", "scores", "reference", "tau", "tau_without_sinks", "sinks_left_out"],
        ),
    )


# --- the registered experiment: sinks on any transformer checkpoint, per instance ---------

SINKS_DEFAULTS = {
    "threshold": SINK_THRESHOLD,
    "min_readers": MIN_READERS,
    "scores": list(EXPLAINERS),
    "references": list(REFERENCES),
    "batch_size": 16,
}
SINKS_PARAMETERS = {
    "threshold": "a key is a sink when the rows that read it give it this share on average",
    "min_readers": "how many rows must read a key for it to count as a sink",
    "scores": "the attention scores whose agreement is measured (attention is the site row)",
    "references": "the importance measures they are compared with (Kendall tau)",
}


def run_sinks(
    checkpoint: Checkpoint, frame: pd.DataFrame, params: dict | None = None, progress: bool = True
) -> pd.DataFrame:
    """Per instance: the share of attention on the first token and on other sinks (the module
    docstring's rule; the mean over every layer and head, ``first_share`` and
    ``other_sink_share``, and each layer's head mean, ``first_share_layer<l>``), how many
    content tokens are sinks at the site layer (``site_sinks``), and for each of ``scores``
    and ``references`` the Kendall tau over the content tokens, with (``tau_<s>_<r>``) and
    without the site layer's sinks (``..._without_sinks``).

    Raises :class:`InvalidInputError` for a classic model, whose one attention distribution
    has no layers and heads to measure.
    """
    params = {**SINKS_DEFAULTS, **(params or {})}
    model = checkpoint.model
    if not isinstance(model, HFClassifier):
        raise InvalidInputError(
            "attention sinks are measured per layer and head of a transformer; a classic "
            "model has one attention distribution (run jain_wallace.correlation on it)"
        )
    # Imported here: it needs transformers, which `import attnexplain` avoids.
    from attnexplain.hooks.transformers_backend import attention_sites

    sites = list_sites(model)
    causal = any(module.is_causal for module in attention_sites(hooked_module(model)).values())
    site_layer = model.site_layer % len(sites)
    parts = []
    for site in iterate_site_batches(checkpoint, frame, params["batch_size"], progress, "sinks"):
        batch = site.batch
        with torch.no_grad(), capture(model) as cache:
            model.forward_batch(batch)
        columns = instance_columns(frame, checkpoint.classes, site)
        at_site = torch.zeros_like(batch.content_mask, dtype=torch.bool)
        first = torch.zeros(len(batch), len(sites))
        other = torch.zeros(len(batch), len(sites))
        for layer, name in enumerate(sites):
            for row, length in enumerate(batch.lengths.tolist()):
                pattern = cache[name][row, :, :length, :length].float()
                sinks = sink_positions(pattern, params["threshold"], params["min_readers"], causal)
                shares = sink_shares(pattern, sinks, causal)
                first[row, layer], other[row, layer] = (share.mean() for share in shares)
                if layer == site_layer:
                    at_site[row, :length] = sinks.any(0)
        columns |= {"first_share": first.mean(-1), "other_sink_share": other.mean(-1)}
        columns |= {f"first_share_layer{layer}": first[:, layer] for layer in range(len(sites))}
        content = batch.content_mask.bool()
        kept = content & ~at_site
        columns["site_sinks"] = to_numpy((content & at_site).sum(-1))
        truths = {name: method_scores(checkpoint, batch, name) for name in params["references"]}
        for name in params["scores"]:
            scores = (
                token_attention(site)
                if name == "attention"
                else method_scores(checkpoint, batch, name)
            )
            for reference, truth in truths.items():
                column = f"tau_{name}_{reference}"
                columns[column] = kendall_tau(scores, truth, content).statistic
                columns[f"{column}_without_sinks"] = kendall_tau(scores, truth, kept).statistic
        parts.append(pd.DataFrame({key: _plain(value) for key, value in columns.items()}))
    return pd.concat(parts).sort_values("instance").reset_index(drop=True)


def _plain(values) -> np.ndarray:
    return to_numpy(values) if isinstance(values, torch.Tensor) else np.asarray(values)


def summarise_sinks(df: pd.DataFrame) -> pd.DataFrame:
    """Long rows ``quantity``, ``layer`` (a number, ``all``, or ``site`` for the agreement),
    the mean over instances with its 95% bootstrap interval (``value``, ``value_low``,
    ``value_high``) and ``count``: the first-token share per layer and over all, the other
    sinks' share, the site's sink count, and each tau with and without the sinks."""
    rows = []

    def add(quantity: str, layer: str, column: str) -> None:
        values = df[column].to_numpy(dtype=float)
        values = values[~np.isnan(values)]
        rows.append(
            {"quantity": quantity, "layer": layer, **interval_columns("value", values)}
            | {"count": len(values)}
        )

    add("first-token share", "all", "first_share")
    for column in sorted(c for c in df.columns if c.startswith("first_share_layer")):
        add("first-token share", column.removeprefix("first_share_layer"), column)
    add("other sinks' share", "all", "other_sink_share")
    add("sinks among the content tokens", "site", "site_sinks")
    for column in (c for c in df.columns if c.startswith("tau_") and "without" not in c):
        scores = column.removeprefix("tau_").replace("_", " vs ", 1)
        add(f"tau {scores}", "site", column)
        add(f"tau {scores}, sinks left out", "site", f"{column}_without_sinks")
    return pd.DataFrame(rows)


def figure_sinks(df: pd.DataFrame) -> plt.Figure:
    """The first-token share per layer, and each tau with and without the sinks."""
    summary = summarise_sinks(df)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    layers = summary[(summary["quantity"] == "first-token share") & (summary["layer"] != "all")]
    _bars(left, layers, layers["layer"].tolist())
    left.set(xlabel="layer", ylabel="share of attention", title="on the first token")
    taus = summary[summary["quantity"].str.startswith("tau ")]
    _bars(right, taus, [q.removeprefix("tau ") for q in taus["quantity"]])
    right.set(ylabel="mean Kendall tau", title="agreement, with and without the sinks")
    right.tick_params(axis="x", rotation=30, labelsize=7)
    fig.tight_layout()
    return fig


def _bars(ax: plt.Axes, rows: pd.DataFrame, labels: list[str]) -> None:
    """Bars of ``rows``' values with their intervals as error bars."""
    values = rows["value"].to_numpy()
    errors = np.abs(np.vstack([values - rows["value_low"], rows["value_high"] - values]))
    ax.bar(range(len(rows)), values, yerr=errors, color="#4c72b0", capsize=3)
    ax.set_xticks(range(len(rows)), labels)


REGISTRATIONS = [
    {
        "name": "sinks",
        "function": run_sinks,
        "summary": summarise_sinks,
        "figure": figure_sinks,
        "defaults": SINKS_DEFAULTS,
        "parameters": SINKS_PARAMETERS,
        "description": "attention sinks per layer (first token, other sinks) and the agreement "
        "of attention with importance with and without them",
    }
]
