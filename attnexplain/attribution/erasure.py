"""Erasure: run a model on copies of its instances with some content tokens deleted, many
copies per forward pass. Leave-one-out here, and ERASER comprehensiveness / sufficiency and
decision flips in :mod:`attnexplain.faithfulness`, are built on it.

Deleting (rather than masking or zeroing) is J&W's leave-one-out: the token is gone and the
sequence closes up, special tokens (``<SOS>``/``<EOS>``, ``[CLS]``/``[SEP]``) stay.

Two paths give the same numbers. The generic one re-runs the model on every variant, in
batches of variants of similar length (less padding); it is the only one for transformers,
where a deletion changes every hidden state. Classic models take the fast paths of
:mod:`attnexplain.attribution.fast_erasure` by default, which recompute only what a deletion
changes; ``fast=False`` forces the generic path (tests and benchmarks compare the two), and
hooks or interventions on the model force it too.
"""

from __future__ import annotations

import torch

from attnexplain.attribution import decoder_erasure, fast_erasure
from attnexplain.attribution.adapter import Model, output_distribution, pad_id
from attnexplain.attribution.result import MethodOutput
from attnexplain.data.batching import Batch
from attnexplain.metrics import tvd


def erase(batch: Batch, rows: torch.Tensor, keep: torch.Tensor, pad: int) -> Batch:
    """A new batch of ``len(rows)`` variants: variant i is ``batch`` row ``rows[i]`` with the
    content tokens where ``keep[i]`` is False deleted.

    rows: [variants] long; keep: [variants, tokens] bool (read at content positions only);
    pad: the padding id. The result is as narrow as its longest variant; its ``index``,
    ``labels`` and a text pair's question (``pair_ids``, never erased) are those of the
    source rows. An image's tokens cannot close up: their blocks
    of pixels are blacked out instead (:func:`~attnexplain.attribution.pixels.occlude`).
    """
    if batch.pixels is not None:
        from attnexplain.attribution.pixels import occlude

        return occlude(batch, rows, keep)
    content = batch.content_mask[rows]
    order, inside = closing_order(batch, rows, keep)
    lengths = inside.sum(-1)
    return Batch(
        token_ids=batch.token_ids[rows].gather(1, order).masked_fill(~inside, pad),
        lengths=lengths,
        content_mask=content.gather(1, order) & inside,
        labels=None if batch.labels is None else batch.labels[rows],
        index=batch.index[rows],
        segments=None
        if batch.segments is None
        else batch.segments[rows].gather(1, order).masked_fill(~inside, 0),
        pair_ids=None if batch.pair_ids is None else batch.pair_ids[rows],
        pair_lengths=None if batch.pair_lengths is None else batch.pair_lengths[rows],
    )


def closing_order(
    batch: Batch, rows: torch.Tensor, keep: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where :func:`erase`'s variants read their positions from: ``order`` [variants, width],
    the source position of each kept position (kept tokens first, in their order), and
    ``inside`` [variants, width] bool, True where the variant has a token (not padding).
    A value per source token [variants, tokens] follows the tokens by
    ``value.gather(1, order)``."""
    kept = batch.padding_mask[rows].bool() & (~batch.content_mask[rows] | keep)
    lengths = kept.sum(-1)
    width = int(lengths.max())
    order = (~kept).to(torch.uint8).argsort(dim=-1, stable=True)[:, :width]
    inside = torch.arange(width, device=lengths.device) < lengths.unsqueeze(1)
    return order, inside


def erased_probabilities(
    model: Model,
    batch: Batch,
    rows: torch.Tensor,
    keep: torch.Tensor,
    batch_size: int = 64,
    fast: bool = True,
) -> torch.Tensor:
    """Class probabilities [variants, num_classes] of the variants :func:`erase` describes.

    rows: [variants] long; keep: [variants, tokens] bool. Variants that delete the same
    tokens of the same row are computed once. The generic path re-runs the model on
    ``batch_size`` variants per forward pass, longest variants first. With ``fast`` a
    classic model with the average encoder re-encodes nothing
    (:mod:`attnexplain.attribution.fast_erasure`). The CNN and BiLSTM fast paths are left to
    :func:`leave_one_out`: they recompute few states per variant but first make per-token
    work for the whole batch, which pays off for one variant per token, not for the handful
    per instance that ERASER's bins and decision flips make (measured: CNN decision flip 0.7x).
    """
    rows, keep, inverse = _distinct_variants(batch, rows, keep)
    if fast and fast_erasure.erases_any_set_fast(model):
        return fast_erasure.kept_probabilities(model, batch, rows, keep)[inverse]
    return _rerun(model, batch, rows, keep, batch_size)[inverse]


def _distinct_variants(
    batch: Batch, rows: torch.Tensor, keep: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The distinct (row, kept content tokens) pairs among the variants: their ``rows``
    [distinct] and ``keep`` [distinct, tokens], and the index [variants] of each variant's
    distinct one. ``keep`` is read at content positions only, so it is compared there."""
    if len(rows) == 0:
        return rows, keep, rows
    kept = (keep & batch.content_mask[rows]).to(rows.dtype)
    distinct, inverse = torch.unique(
        torch.cat([rows.unsqueeze(1), kept], 1), dim=0, return_inverse=True
    )
    return distinct[:, 0], distinct[:, 1:].bool(), inverse


def _rerun(
    model: Model, batch: Batch, rows: torch.Tensor, keep: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """The generic path of :func:`erased_probabilities`: every variant through the model."""
    if len(rows) == 0:
        return torch.zeros(0, model.num_classes)
    pad = pad_id(model)
    lengths = (batch.padding_mask[rows].bool() & (~batch.content_mask[rows] | keep)).sum(-1)
    order = lengths.argsort(descending=True, stable=True)
    chunks = [
        output_distribution(model, erase(batch, rows[part], keep[part], pad))
        for part in order.split(batch_size)
    ]
    probabilities = chunks[0].new_empty(len(rows), chunks[0].shape[-1])
    probabilities[order] = torch.cat(chunks)
    return probabilities


def leave_one_out(
    model: Model, batch: Batch, batch_size: int = 64, fast: bool = True
) -> MethodOutput:
    """J&W leave-one-out (papers-spec A3): score_t = TVD(p(x without token t), p(x)), the
    change of the whole output distribution (binary: |y(x_-t) - y(x)|).

    With ``fast`` (the default) a classic model with learned or uniform attention and no
    hooks recomputes only the states each deletion changes (average: none; CNN: the
    positions within the widest kernel's reach; BiLSTM: the forward states after the token
    and the backward states before it), all deletions of the batch together; see
    :mod:`attnexplain.attribution.fast_erasure`. A causal LM read as a classifier runs each
    deletion from the key/value cache of the tokens before it
    (:mod:`attnexplain.attribution.decoder_erasure`). Otherwise (encoders, where every state
    changes; ``fast=False``; hooks) every deletion is re-run, ``batch_size`` variants of
    similar length per forward pass. All give the same scores up to float rounding.

    An instance with one content token is scored by the model's output on an empty content
    (classic models: NaN, since their attention has nothing to attend to).
    Returns scores [batch, tokens], 0 outside the content mask.
    """
    rows, positions = batch.content_mask.nonzero(as_tuple=True)
    if fast and fast_erasure.blocker(model) is None:
        erased = fast_erasure.deletion_probabilities(model, batch, rows, positions)
    elif fast and decoder_erasure.blocker(model) is None and bool((batch.lengths > 1).all()):
        erased = decoder_erasure.deletion_probabilities(model, batch, rows, positions)
    else:
        keep = batch.content_mask[rows].clone()
        keep[torch.arange(len(rows), device=rows.device), positions] = False
        erased = _rerun(model, batch, rows, keep, batch_size)
    full = output_distribution(model, batch)
    scores = torch.zeros(batch.content_mask.shape, device=full.device)
    scores[rows, positions] = tvd(erased, full[rows]).float()
    return MethodOutput(scores)
