"""What the J&W experiments share: run a model split at its attention site over a dataset split,
batch by batch, and describe each instance's attention.

Works for both families through the shared interface (``encode_batch``, ``attention``,
``decode``, ``probabilities``). Attention at the site is [batch, *site, tokens]: ``site`` is
empty for classic models and (heads,) for transformers; candidates add a K dimension after
the batch. Candidate attentions live on ``state.support`` (classic: content tokens;
transformers: every unpadded key of the classifier's row).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from attnexplain.data.batching import Batch, bucketed_batches
from attnexplain.device import to_numpy
from attnexplain.models.checkpoint import Checkpoint

# Right-open bins; the last edge sits just above 1 so that a weight of exactly 1 (a one-token
# text) falls in the top bin, which is closed as in J&W's figures.
MAX_ATTENTION_BINS = (0.0, 0.25, 0.5, 0.75, 1.0 + 1e-9)
BIN_LABELS = ("[0, .25)", "[.25, .5)", "[.5, .75)", "[.75, 1]")


@dataclass
class SiteBatch:
    """One batch at the site: ``attention`` [batch, *site, tokens], ``support`` [batch, 1..,
    tokens] bool broadcastable to it, ``probabilities`` [batch, classes] of the model's own
    output, ``rows`` the frame rows (original order) of the batch."""

    batch: Batch
    state: object
    attention: torch.Tensor
    support: torch.Tensor
    probabilities: torch.Tensor
    rows: np.ndarray


def site_batches(
    checkpoint: Checkpoint, frame: pd.DataFrame, batch_size: int = 32
) -> Iterator[SiteBatch]:
    """Encode ``frame`` batch by batch (no gradients through the encoder)."""
    model, pipeline = checkpoint.model, checkpoint.pipeline
    model.eval()
    sequences = pipeline.encode_split(frame)
    for batch in bucketed_batches(sequences, batch_size=batch_size, framing=pipeline.framing):
        yield site_batch(model, batch)


def iterate_site_batches(
    checkpoint: Checkpoint, frame: pd.DataFrame, batch_size: int, progress: bool, what: str
) -> Iterator[SiteBatch]:
    """:func:`site_batches` behind a progress bar labelled ``what``, the loop every
    per-instance experiment runs."""
    return tqdm(
        site_batches(checkpoint, frame, batch_size),
        total=math.ceil(len(frame) / batch_size),
        disable=not progress,
        desc=what,
        leave=False,
    )


def site_batch(model, batch: Batch) -> SiteBatch:
    """One batch encoded at the site: its attention, support and the model's own output."""
    with torch.no_grad():
        state = model.encode_batch(batch)
        attention = model.attention(state)
        probabilities = model.probabilities(model.decode(state, attention))
    support = state.support.reshape(len(batch), *[1] * (attention.dim() - 2), -1)
    return SiteBatch(batch, state, attention, support, probabilities, to_numpy(batch.index))


def decode_probabilities(
    checkpoint: Checkpoint, site: SiteBatch, candidates: torch.Tensor
) -> torch.Tensor:
    """Output distributions [batch, K, classes] for candidates [batch, K, *site, tokens]."""
    model = checkpoint.model
    return model.probabilities(model.decode(site.state, candidates))


def token_attention(site: SiteBatch) -> torch.Tensor:
    """[batch, tokens]: the site attention, averaged over heads for transformers."""
    attention = site.attention
    while attention.dim() > 2:
        attention = attention.mean(1)
    return attention


def max_attention(site: SiteBatch) -> np.ndarray:
    """[batch]: the largest weight of each instance's (head-averaged) attention, the quantity
    J&W bin instances by."""
    return to_numpy(token_attention(site).max(-1).values)


def instance_columns(frame: pd.DataFrame, classes: list[str], site: SiteBatch) -> dict:
    """The columns every per-instance table starts with."""
    predicted = to_numpy(site.probabilities.argmax(-1))
    return {
        "instance": site.rows,
        "label": frame["label"].to_numpy()[site.rows],
        "predicted": predicted,
        "predicted_class": [classes[i] for i in predicted],
        "max_attention": max_attention(site),
    }


def attention_bin(values: pd.Series) -> pd.Series:
    """J&W's max-attention bins [0, .25), [.25, .5), [.5, .75), [.75, 1]."""
    return pd.cut(values, MAX_ATTENTION_BINS, labels=list(BIN_LABELS), right=False)


@dataclass
class SiteOutputs:
    """A model's own attention and output on every row of a frame, in the frame's order.

    ``attention``: per row, [*site, support] float32 (classic: the content tokens; transformers:
    every unpadded key, per head); ``probabilities``: [rows, classes]."""

    attention: list[np.ndarray]
    probabilities: np.ndarray


def site_outputs(checkpoint: Checkpoint, frame: pd.DataFrame, batch_size: int = 64) -> SiteOutputs:
    """The model's attention on its support and its output distribution for every row of
    ``frame`` (what W&P's comparisons and adversaries are trained against)."""
    attention: list[np.ndarray | None] = [None] * len(frame)
    probabilities = np.zeros((len(frame), len(checkpoint.classes)), dtype=np.float64)
    for site in site_batches(checkpoint, frame, batch_size):
        probabilities[site.rows] = to_numpy(site.probabilities.double())
        for row, weights, support in zip(site.rows, site.attention, site.support, strict=True):
            attention[row] = to_numpy(weights[..., support.reshape(-1)].float())
    return SiteOutputs(attention, probabilities)
