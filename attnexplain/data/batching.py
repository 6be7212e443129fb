"""Padded, length-bucketed batches with the content mask that keeps SOS/EOS/PAD out of
attention; image batches whose "tokens" are the positions a vision model attends over."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attnexplain.data.image_tokens import ImageSequence
from attnexplain.data.text import SOS_EOS, Framing, PairSequence
from attnexplain.errors import InvalidInputError


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
    pixels : FloatTensor [batch, channels, height, width] or None
        The images of an image batch (see :func:`image_batch`); None for text. The model
        reads these instead of ``token_ids``, which then hold position ids.
    segments : LongTensor [batch, tokens] or None
        Which text of a pair each position belongs to (transformers' ``token_type_ids``),
        for text pairs of a tokenizer that marks them; None otherwise.
    pair_ids : LongTensor [batch, pair tokens] or None
        The second text of a pair (question, hypothesis), ``<SOS> ... <EOS>`` then PAD, for
        the pair models (:mod:`attnexplain.models.pair`), which encode it apart from the
        passage in ``token_ids``; None otherwise. Attention, attributions and erasure read the
        passage only: the question is part of the encoded state.
    pair_lengths : LongTensor [batch] or None
        Lengths of ``pair_ids``' rows, SOS and EOS included.
    """

    token_ids: torch.Tensor
    lengths: torch.Tensor
    content_mask: torch.Tensor
    labels: torch.Tensor | None
    index: torch.Tensor
    pixels: torch.Tensor | None = None
    segments: torch.Tensor | None = None
    pair_ids: torch.Tensor | None = None
    pair_lengths: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.token_ids.shape[0]

    @property
    def padding_mask(self) -> torch.Tensor:
        """[batch, tokens] long: 1 inside each sequence, 0 on padding (transformers'
        ``attention_mask``)."""
        positions = torch.arange(self.token_ids.shape[1])
        return (positions < self.lengths.unsqueeze(1)).long()

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """transformers' keyword inputs for this batch (see :func:`model_inputs`)."""
        return model_inputs(self.token_ids, self.padding_mask, self.pixels, self.segments)


def model_inputs(
    token_ids: torch.Tensor,
    padding_mask: torch.Tensor,
    pixels: torch.Tensor | None = None,
    segments: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """transformers' keyword inputs: ``pixel_values`` [batch, channels, height, width] for
    images, else ``input_ids`` and ``attention_mask`` (both [batch, tokens]), and
    ``token_type_ids`` [batch, tokens] for text pairs with ``segments``."""
    if pixels is not None:
        return {"pixel_values": pixels}
    return {"input_ids": token_ids, "attention_mask": padding_mask} | segment_inputs(segments)


def segment_inputs(segments: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """``{"token_type_ids": segments}`` for a text pair's segments, else nothing."""
    return {} if segments is None else {"token_type_ids": segments}


class TokenSequence(list):
    """Token ids that carry their own content flags (1: a token of the text, 0: a special
    token such as ``[CLS]`` or a pair's middle ``[SEP]``) and, for text pairs, the segment of
    each position; what a pair tokenizer's ``encode_split`` gives, read by :func:`collate`."""

    def __init__(self, ids: Sequence[int], content: Sequence[int], segments=None) -> None:
        super().__init__(ids)
        self.content = list(content)
        self.segments = None if segments is None else list(segments)


def image_batch(
    images: torch.Tensor,
    tokens: int,
    lead: int,
    labels: torch.Tensor | None = None,
    index: torch.Tensor | None = None,
) -> Batch:
    """A :class:`Batch` of images [batch, channels, height, width] for a model that attends
    over ``tokens`` positions per image, the first ``lead`` of them not image content (a ViT:
    [CLS] + patches, lead 1; an attention CNN: its feature-map cells, lead 0).

    ``token_ids`` [batch, tokens] are the position ids 0..tokens-1, ``lengths`` [batch] are all
    ``tokens`` (no padding) and ``content_mask`` [batch, tokens] is True at positions >=
    ``lead``. ``labels`` [batch] and ``index`` [batch] (default 0..batch-1) as for text.
    """
    if not 0 <= lead < tokens:
        raise InvalidInputError(
            f"an image batch needs 0 <= lead < tokens, got lead {lead}, tokens {tokens}: "
            f"pass the model's token count and how many of them are not patches or cells"
        )
    if images.dim() != 4:
        raise InvalidInputError(
            f"images must be [batch, channels, height, width], got shape {tuple(images.shape)}"
        )
    count = images.shape[0]
    positions = torch.arange(tokens)
    return Batch(
        token_ids=positions.expand(count, tokens).clone(),
        lengths=torch.full((count,), tokens, dtype=torch.long),
        content_mask=(positions >= lead).expand(count, tokens).clone(),
        labels=None if labels is None else torch.as_tensor(labels, dtype=torch.long),
        index=torch.arange(count) if index is None else torch.as_tensor(index),
        pixels=images.float(),
    )


def collate(
    sequences: Sequence[Sequence[int]],
    labels: Sequence[int] | None = None,
    index: Sequence[int] | None = None,
    framing: Framing = SOS_EOS,
) -> Batch:
    """Pad id sequences into a :class:`Batch` whose content mask leaves out the special tokens
    that ``framing`` describes (default: one before, one after, as ``<SOS> ... <EOS>``).
    Images (:class:`~attnexplain.data.image_tokens.ImageSequence` items) bring their pixels
    along as ``pixels`` [batch, channels, height, width]; text pairs
    (:class:`~attnexplain.data.text.PairSequence` items) their questions as ``pair_ids``
    [batch, pair tokens] and ``pair_lengths`` [batch]."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    width = int(lengths.max())
    token_ids = torch.full((len(sequences), width), framing.pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        token_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    positions = torch.arange(width)
    content_mask = (positions >= framing.lead) & (
        positions < (lengths - framing.trail).unsqueeze(1)
    )
    if isinstance(sequences[0], TokenSequence):  # flags from the tokenizer (text pairs)
        content_mask = _padded([s.content for s in sequences], width).bool()
    segments = sequences[0].segments if isinstance(sequences[0], TokenSequence) else None
    pairs = [s.pair for s in sequences] if isinstance(sequences[0], PairSequence) else None
    return Batch(
        token_ids=token_ids,
        lengths=lengths,
        content_mask=content_mask,
        labels=None if labels is None else torch.as_tensor(labels, dtype=torch.long),
        index=torch.as_tensor(range(len(sequences)) if index is None else index),
        pixels=_stacked_pixels(sequences),
        segments=None if segments is None else _padded([s.segments for s in sequences], width),
        pair_ids=None if pairs is None else _padded(pairs, max(map(len, pairs)), framing.pad_id),
        pair_lengths=None if pairs is None else torch.tensor([len(p) for p in pairs]),
    )


def _padded(rows: Sequence[Sequence[int]], width: int, pad: int = 0) -> torch.Tensor:
    """[len(rows), width] long: each row, then ``pad``."""
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out


def _stacked_pixels(sequences: Sequence[Sequence[int]]) -> torch.Tensor | None:
    """[batch, channels, height, width] when the sequences are images, else None."""
    if not isinstance(sequences[0], ImageSequence):
        return None
    # images are loaded before a run picks its device: move them to where the batch computes
    return torch.stack([sequence.pixels for sequence in sequences]).to(torch.get_default_device())


# The most padded positions (rows x longest row) one batch may hold: long inputs come in
# fewer rows, so memory stays bounded (32 rows of 512 wordpieces; every batch of 32 texts of
# the registered datasets fits, so their batches are as they were).
TOKEN_BUDGET = 32 * 512


def bucketed_batches(
    sequences: Sequence[Sequence[int]],
    labels: Sequence[int] | None = None,
    batch_size: int = 32,
    shuffle_seed: int | None = None,
    pool_batches: int = 50,
    framing: Framing = SOS_EOS,
    token_budget: int = TOKEN_BUDGET,
) -> Iterator[Batch]:
    """Batches of similar length (less padding, faster recurrent encoders) of at most
    ``batch_size`` rows and ``token_budget`` padded positions (a single longer row still
    forms a batch of its own).

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
    chunks = [
        chunk
        for pool in pools
        for chunk in _budgeted_chunks(pool, lengths[pool], batch_size, token_budget)
    ]
    if rng is not None:
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    for chunk in chunks:
        yield collate(
            [sequences[i] for i in chunk],
            None if labels is None else [labels[i] for i in chunk],
            chunk.tolist(),
            framing,
        )


def _budgeted_chunks(
    rows: np.ndarray, lengths: np.ndarray, batch_size: int, token_budget: int
) -> list[np.ndarray]:
    """``rows`` (sorted by ascending ``lengths``) cut in order into chunks of at most
    ``batch_size`` rows whose row count times longest length stays within ``token_budget``."""
    chunks, start = [], 0
    for end in range(1, len(rows) + 1):
        rows_in = end - start
        if rows_in > batch_size or (rows_in > 1 and rows_in * lengths[end - 1] > token_budget):
            chunks.append(rows[start : end - 1])
            start = end - 1
    if start < len(rows):
        chunks.append(rows[start:])
    return chunks
