"""Images for the attribution methods: a token of an image is a square block of pixels (a
ViT's patch, an attention CNN's cell; :class:`~attnexplain.data.image_tokens.BlockLayout`),
its input vector is those pixels, and erasing it blacks it out (occlusion).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from attnexplain.data.batching import Batch
from attnexplain.data.image_tokens import BlockLayout


def occlude(batch: Batch, rows: torch.Tensor, keep: torch.Tensor) -> Batch:
    """``len(rows)`` variants of an image batch: variant i is row ``rows[i]`` with the blocks
    of the content positions where ``keep[i]`` is False set to 0 (black). rows: [variants]
    long; keep: [variants, tokens] bool. Positions stay where they are (a ViT still sees the
    occluded patch, as a black one)."""
    layout = BlockLayout.of(batch)
    content = batch.content_mask[rows]
    blocks = layout.to_blocks(batch.pixels[rows])
    kept = keep[content].reshape(len(rows), -1, 1).to(blocks.dtype)
    return replace(
        batch,
        token_ids=batch.token_ids[rows],
        lengths=batch.lengths[rows],
        content_mask=content,
        labels=None if batch.labels is None else batch.labels[rows],
        index=batch.index[rows],
        pixels=layout.to_pixels(blocks * kept),
    )


class PixelForward(nn.Module):
    """An image model as a function of its tokens' pixels, with the signature of
    :class:`~attnexplain.attribution.adapter.EmbeddingForward`:

        forward(content [B, T, E], framing [B, T, E], padding_mask [B, T], content_mask [B, T])
            -> class probabilities [B, num_classes]

    ``content`` holds each content position's block of pixels (E = C * h * w; zero at [CLS]),
    ``framing`` is all zero (an image has no special-token inputs). A zero baseline is a black
    image; gradient x input sums over a block's pixels."""

    def __init__(self, model: nn.Module, layout: BlockLayout) -> None:
        super().__init__()
        self.model = model
        self.layout = layout

    @property
    def embedding_dim(self) -> int:
        return self.layout.block_dim

    def inputs(self, batch: Batch) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """``(content, (framing, padding_mask, content_mask))`` for ``batch``, detached."""
        blocks = self.layout.to_blocks(batch.pixels.detach())
        content = blocks.new_zeros(*batch.token_ids.shape, self.embedding_dim)
        content[batch.content_mask] = blocks.reshape(-1, self.embedding_dim)
        return content, (torch.zeros_like(content), batch.padding_mask, batch.content_mask)

    def forward(
        self,
        content: torch.Tensor,
        framing: torch.Tensor,
        padding_mask: torch.Tensor,
        content_mask: torch.Tensor,
    ) -> torch.Tensor:
        rows = content.shape[0]
        blocks = (content + framing)[content_mask].reshape(rows, -1, self.embedding_dim)
        lengths = padding_mask.sum(-1)
        positions = torch.arange(padding_mask.shape[1]).expand(rows, -1)
        batch = Batch(
            positions,
            lengths,
            content_mask,
            None,
            torch.arange(rows),
            self.layout.to_pixels(blocks),
        )
        return self.model.probabilities(self.model.forward_batch(batch))
