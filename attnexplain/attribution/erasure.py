"""Erasure: run a model on copies of its instances with some content tokens deleted, many
copies per forward pass. Leave-one-out here, and ERASER comprehensiveness / sufficiency and
decision flips in :mod:`attnexplain.faithfulness`, are built on it.

Deleting (rather than masking or zeroing) is J&W's leave-one-out: the token is gone and the
sequence closes up, special tokens (``<SOS>``/``<EOS>``, ``[CLS]``/``[SEP]``) stay.
"""

from __future__ import annotations

import torch

from attnexplain.attribution.adapter import Model, output_distribution, pad_id
from attnexplain.attribution.result import MethodOutput
from attnexplain.data.batching import Batch
from attnexplain.metrics import tvd


def erase(batch: Batch, rows: torch.Tensor, keep: torch.Tensor, pad: int) -> Batch:
    """A new batch of ``len(rows)`` variants: variant i is ``batch`` row ``rows[i]`` with the
    content tokens where ``keep[i]`` is False deleted.

    rows: [variants] long; keep: [variants, tokens] bool (read at content positions only);
    pad: the padding id. The result is as narrow as its longest variant; its ``index`` and
    ``labels`` are those of the source rows.
    """
    content = batch.content_mask[rows]
    kept = batch.padding_mask[rows].bool() & (~content | keep)
    lengths = kept.sum(-1)
    width = int(lengths.max())
    # Kept positions first, in their order; deleted tokens and padding after them.
    order = (~kept).to(torch.uint8).argsort(dim=-1, stable=True)[:, :width]
    inside = torch.arange(width, device=lengths.device) < lengths.unsqueeze(1)
    return Batch(
        token_ids=batch.token_ids[rows].gather(1, order).masked_fill(~inside, pad),
        lengths=lengths,
        content_mask=content.gather(1, order) & inside,
        labels=None if batch.labels is None else batch.labels[rows],
        index=batch.index[rows],
    )


def erased_probabilities(
    model: Model, batch: Batch, rows: torch.Tensor, keep: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """Class probabilities [variants, num_classes] of the variants :func:`erase` describes,
    ``batch_size`` variants per forward pass."""
    pad = pad_id(model)
    chunks = [
        output_distribution(
            model, erase(batch, rows[i : i + batch_size], keep[i : i + batch_size], pad)
        )
        for i in range(0, len(rows), batch_size)
    ]
    return torch.cat(chunks)


def leave_one_out(model: Model, batch: Batch, batch_size: int = 64) -> MethodOutput:
    """J&W leave-one-out (papers-spec A3): score_t = TVD(p(x without token t), p(x)), the
    change of the whole output distribution (binary: |y(x_-t) - y(x)|).

    All deletions of all instances run as batches of ``batch_size`` variants; an instance
    with one content token is scored by the model's output on an empty content (classic
    models: NaN, since their attention has nothing to attend to).
    Returns scores [batch, tokens], 0 outside the content mask.
    """
    rows, positions = batch.content_mask.nonzero(as_tuple=True)
    keep = batch.content_mask[rows].clone()
    keep[torch.arange(len(rows), device=rows.device), positions] = False
    erased = erased_probabilities(model, batch, rows, keep, batch_size)
    full = output_distribution(model, batch)
    scores = torch.zeros(batch.content_mask.shape, device=full.device)
    scores[rows, positions] = tvd(erased, full[rows]).float()
    return MethodOutput(scores)
