"""Padded, length-bucketed batches with the content mask that keeps SOS/EOS/PAD out of
attention."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attnexplain.data.text import SOS_EOS, Framing


@dataclass
class Batch:
    """One padded batch.

    Attributes
    ----------
    token_ids : LongTensor [batch, tokens]
        ``<SOS> w_1 ... w_n <EOS>`` then PAD.
    lengths : LongTensor [batch]
        Sequence lengths including SOS and EOS.
    content_mask : BoolTensor [batch, tokens]
        True at the content tokens w_1..w_n; False at SOS, EOS and PAD.
    labels : LongTensor [batch] or None
    index : LongTensor [batch]
        Position of each row in the list the batch was cut from.
    """

    token_ids: torch.Tensor
    lengths: torch.Tensor
    content_mask: torch.Tensor
    labels: torch.Tensor | None
    index: torch.Tensor

    def __len__(self) -> int:
        return self.token_ids.shape[0]

    @property
    def padding_mask(self) -> torch.Tensor:
        """[batch, tokens] long: 1 inside each sequence, 0 on padding (transformers'
        ``attention_mask``)."""
        positions = torch.arange(self.token_ids.shape[1])
        return (positions < self.lengths.unsqueeze(1)).long()


def collate(
    sequences: Sequence[Sequence[int]],
    labels: Sequence[int] | None = None,
    index: Sequence[int] | None = None,
    framing: Framing = SOS_EOS,
) -> Batch:
    """Pad id sequences into a :class:`Batch` whose content mask leaves out the special tokens
    that ``framing`` describes (default: one before, one after, as ``<SOS> ... <EOS>``)."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    width = int(lengths.max())
    token_ids = torch.full((len(sequences), width), framing.pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        token_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    positions = torch.arange(width)
    content_mask = (positions >= framing.lead) & (
        positions < (lengths - framing.trail).unsqueeze(1)
    )
    return Batch(
        token_ids=token_ids,
        lengths=lengths,
        content_mask=content_mask,
        labels=None if labels is None else torch.as_tensor(labels, dtype=torch.long),
        index=torch.as_tensor(range(len(sequences)) if index is None else index),
    )


def bucketed_batches(
    sequences: Sequence[Sequence[int]],
    labels: Sequence[int] | None = None,
    batch_size: int = 32,
    shuffle_seed: int | None = None,
    pool_batches: int = 50,
    framing: Framing = SOS_EOS,
) -> Iterator[Batch]:
    """Batches of similar length (less padding, faster recurrent encoders).

    Without ``shuffle_seed`` the rows are sorted by length and batches come in order (for
    evaluation: use ``batch.index`` to restore the input order). With it, rows are shuffled,
    sorted by length within pools of ``pool_batches`` batches, and the batches shuffled.
    """
    lengths = np.array([len(s) for s in sequences])
    if shuffle_seed is None:
        pools = [np.argsort(lengths, kind="stable")]
        rng = None
    else:
        rng = np.random.default_rng(shuffle_seed)
        order = rng.permutation(len(sequences))
        pool = batch_size * pool_batches
        pools = [
            chunk[np.argsort(lengths[chunk], kind="stable")]
            for chunk in np.split(order, range(pool, len(order), pool))
        ]
    chunks = [pool[i : i + batch_size] for pool in pools for i in range(0, len(pool), batch_size)]
    if rng is not None:
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    for chunk in chunks:
        yield collate(
            [sequences[i] for i in chunk],
            None if labels is None else [labels[i] for i in chunk],
            chunk.tolist(),
            framing,
        )
