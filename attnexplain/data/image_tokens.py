"""Images as token sequences: a vision model attends over positions (a ViT's [CLS] and
patches, an attention CNN's feature-map cells), so an image enters the text machinery
(batching, training, every experiment) as the sequence of those positions, carrying its
pixels along.

:class:`ImageSequence` is what :class:`ImagePipeline` ``.encode_split`` gives per image; the
batching functions turn a list of them into a :class:`~attnexplain.data.Batch` whose
``token_ids`` are the position ids and whose ``pixels`` are the images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from attnexplain.data.text import Framing
from attnexplain.errors import InvalidInputError

if TYPE_CHECKING:
    from attnexplain.data.batching import Batch

IMAGE_COLUMN = "image"


class ImageSequence(Sequence[int]):
    """The positions 0..tokens-1 a model attends over for one image, with the image's pixels
    (float32 [channels, height, width])."""

    def __init__(self, pixels: torch.Tensor, tokens: int) -> None:
        self.pixels = pixels
        self.tokens = tokens

    def __len__(self) -> int:
        return self.tokens

    def __getitem__(self, index):  # positions are their own ids
        return range(self.tokens)[index]


@dataclass(frozen=True)
class ImagePipeline:
    """Feeds images to a vision model: ``tokens`` positions per image, the first ``lead`` of
    them not image content (ViT: 1 for [CLS]; attention CNN: 0). The image counterpart of
    the text pipelines (``framing``, ``encode_split``, ``decode``)."""

    tokens: int
    lead: int
    image_shape: tuple[int, int, int]

    @property
    def framing(self) -> Framing:
        return Framing(pad_id=0, lead=self.lead, trail=0)

    @property
    def grid(self) -> tuple[int, int]:
        """Rows and columns of the content positions (patches or cells), row-major."""
        side = round((self.tokens - self.lead) ** 0.5)
        return side, (self.tokens - self.lead) // side

    def encode(self, image: np.ndarray) -> ImageSequence:
        """One image, float [channels, height, width] in [0, 1]."""
        if isinstance(image, str):
            raise InvalidInputError(
                f"this model reads images, not text (got {image[:40]!r}): give it image arrays "
                f"[channels, height, width] from Python, or run a plan on an image dataset"
            )
        pixels = torch.as_tensor(np.asarray(image, dtype=np.float32))
        if tuple(pixels.shape) != tuple(self.image_shape):
            raise InvalidInputError(
                f"this model reads images of shape {tuple(self.image_shape)} (channels, height, "
                f"width), got {tuple(pixels.shape)}: resize the images or train a model on them"
            )
        return ImageSequence(pixels, self.tokens)

    def encode_split(self, frame: pd.DataFrame) -> list[ImageSequence]:
        if IMAGE_COLUMN not in frame.columns:
            raise InvalidInputError(
                f"a vision model reads an {IMAGE_COLUMN!r} column; this split has "
                f"{', '.join(map(str, frame.columns))}: pass an image dataset"
            )
        return [self.encode(image) for image in frame[IMAGE_COLUMN]]

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Position names: ``[CLS]`` and ``r2c5`` (the content position at row 2, column 5)."""
        columns = self.grid[1]
        cells = [divmod(i - self.lead, columns) for i in ids]
        return [
            "[CLS]" if i < self.lead else f"r{row}c{column}"
            for i, (row, column) in zip(ids, cells, strict=True)
        ]

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "lead": self.lead, "image_shape": list(self.image_shape)}

    @classmethod
    def from_dict(cls, data: dict) -> ImagePipeline:
        return cls(int(data["tokens"]), int(data["lead"]), tuple(data["image_shape"]))


@dataclass(frozen=True)
class BlockLayout:
    """``side`` x ``side`` blocks of ``height`` x ``width`` pixels over ``channels`` channels."""

    channels: int
    side: int
    height: int
    width: int

    @property
    def block_dim(self) -> int:
        """Pixels in one block, over all channels: a token's input vector length."""
        return self.channels * self.height * self.width

    @classmethod
    def of(cls, batch: Batch) -> BlockLayout:
        """The layout of ``batch``'s images over its content positions: P content positions
        on an H x W image are a sqrt(P) x sqrt(P) grid of (H / sqrt(P)) x (W / sqrt(P))
        blocks, row-major."""
        channels, height, width = batch.pixels.shape[1:]
        positions = int(batch.content_mask[0].sum())
        side = round(positions**0.5)
        if side * side != positions or height % side or width % side:
            raise InvalidInputError(
                f"{positions} content positions do not tile a {height}x{width} image in square "
                f"blocks: an image model's patches or cells must form a square grid that "
                f"divides the image"
            )
        return cls(channels, side, height // side, width // side)

    def to_blocks(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, side * side, C * h * w], blocks row-major."""
        b = pixels.shape[0]
        grid = pixels.reshape(b, self.channels, self.side, self.height, self.side, self.width)
        return grid.permute(0, 2, 4, 1, 3, 5).reshape(b, self.side**2, self.block_dim)

    def to_pixels(self, blocks: torch.Tensor) -> torch.Tensor:
        """[B, side * side, C * h * w] -> [B, C, H, W]: the inverse of :meth:`to_blocks`."""
        b = blocks.shape[0]
        grid = blocks.reshape(b, self.side, self.side, self.channels, self.height, self.width)
        return grid.permute(0, 3, 1, 4, 2, 5).reshape(
            b, self.channels, self.side * self.height, self.side * self.width
        )
