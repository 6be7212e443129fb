"""Image classifiers behind the package's one model interface (encode -> attention -> decode).

Two families, as for text:

- :class:`AttentionCNN`, the classic-model counterpart: a small CNN whose feature-map cells
  (row-major) are the tokens, pooled by the classic additive or dot attention, then the
  classic linear decoder (:class:`~attnexplain.models.classic.AttendingClassifier`);
- :func:`make_vit`, a randomly initialised ``transformers`` ViT wrapped in the same
  :class:`~attnexplain.models.hf.HFClassifier` as the text transformers: its tokens are
  ``[CLS]`` + patches and the site is the last layer's ``[CLS]`` row.

Both read image batches (:class:`~attnexplain.data.Batch`) made by :func:`batch_images`:
pixels plus the token positions and content mask the model attends over.

Example
-------
>>> model = make_attention_cnn(AttentionCNNConfig(channels=1, image_size=28, num_classes=10))
>>> batch = batch_images(model, images)            # images [B, 1, 28, 28]
>>> state = model.encode_batch(batch)
>>> model.decode(state, model.attention(state))    # [B, 10]
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn

from attnexplain.data.batching import Batch, image_batch
from attnexplain.data.image_tokens import BlockLayout
from attnexplain.errors import InvalidInputError, UnknownNameError
from attnexplain.models.classic import ATTENTIONS, AttendingClassifier, EncodedState
from attnexplain.models.hf import HFClassifier

# "fixed": the weights come with every call (W&P's diagnostic with a given attention).
CNN_ATTENTION_MODES = ("learned", "uniform", "fixed")
# conv: the attention CNN; blocks: each cell's pixels alone, W&P's diagnostic MLP on images.
CNN_ENCODERS = ("conv", "blocks")
# Feature maps are halved (2x2 max pooling) while they are even and at least this wide:
# 28x28 MNIST -> 7x7 cells, 8x8 digits -> 4x4, 16 -> 4, 32 -> 4.
MIN_POOLED_SIZE = 8


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's CPU generator seeded by ``seed``; restore it afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass
class AttentionCNNConfig:
    """Architecture of an :class:`AttentionCNN` for square images.

    ``channels``: input channels (1 grayscale, 3 RGB); ``image_size``: height = width in
    pixels; ``hidden``: channels of the last conv block (the width of each cell's state);
    ``attention``: ``additive`` or ``dot`` (scaled); ``attention_mode``: ``learned``,
    ``uniform`` (frozen 1/n over the cells: global average pooling, W&P's baseline) or
    ``fixed`` (the weights are given with every call). ``encoder``: ``conv`` (the conv
    blocks) or ``blocks``, a tanh projection of each cell's own pixels with no context (W&P's
    diagnostic MLP on images: the image counterpart of the Average encoder), on a ``grid`` x
    ``grid`` layout of cells (default: the conv blocks' map).
    """

    channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    hidden: int = 64
    attention: str = "additive"
    attention_mode: str = "learned"
    encoder: str = "conv"
    grid: int | None = None

    def __post_init__(self) -> None:
        for value, allowed, what in (
            (self.attention, ATTENTIONS, "attention"),
            (self.attention_mode, CNN_ATTENTION_MODES, "attention mode"),
            (self.encoder, CNN_ENCODERS, "encoder"),
        ):
            if value not in allowed:
                raise UnknownNameError(
                    f"unknown {what} {value!r} for an attention CNN; choose one of "
                    f"{', '.join(allowed)}"
                )
        for name, least in (("channels", 1), ("image_size", 1), ("num_classes", 2), ("hidden", 2)):
            if getattr(self, name) < least:
                raise InvalidInputError(
                    f"{name} must be >= {least} for an attention CNN, got "
                    f"{getattr(self, name)}: pass a larger {name}"
                )
        if self.grid is not None and (self.encoder != "blocks" or self.image_size % self.grid):
            raise InvalidInputError(
                f"grid {self.grid} needs the blocks encoder and must divide image_size "
                f"{self.image_size}: pass encoder='blocks' and a divisor"
            )

    @property
    def pools(self) -> int:
        """How many conv blocks end in 2x2 max pooling (see :data:`MIN_POOLED_SIZE`)."""
        size, pools = self.image_size, 0
        while size % 2 == 0 and size >= MIN_POOLED_SIZE:
            size, pools = size // 2, pools + 1
        return pools

    @property
    def map_size(self) -> int:
        """Height = width of the final feature map, in cells."""
        if self.grid is not None:
            return self.grid
        return self.image_size // 2**self.pools

    @property
    def tokens(self) -> int:
        """Cells of the final feature map: the positions the attention weighs."""
        return self.map_size**2

    @property
    def output_size(self) -> int:
        """Logits per instance: 1 (sigmoid) for binary tasks, else one per class (as
        :class:`~attnexplain.models.classic.ClassicConfig`)."""
        return 1 if self.num_classes == 2 else self.num_classes

    def to_dict(self) -> dict:
        return asdict(self)


class ConvEncoder(nn.Module):
    """``pools`` blocks conv3x3-BatchNorm-ReLU-maxpool2, then one conv3x3-BatchNorm-ReLU (batch
    norm: 3x faster training to a better accuracy on MNIST-5k); the last block is
    ``hidden`` channels wide and each one before it half as wide as the next (28x28: 16, 32,
    64 for hidden 64): images [B, C, S, S] -> cell states [B, T, hidden], T = map_size**2
    (row-major)."""

    def __init__(self, config: AttentionCNNConfig) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = config.channels
        for block in range(config.pools + 1):
            out = max(config.hidden >> (config.pools - block), 1)
            blocks += [nn.Conv2d(width, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            if block < config.pools:
                blocks.append(nn.MaxPool2d(2))
            width = out
        self.blocks = nn.Sequential(*blocks)
        self.output_size = config.hidden

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.blocks(pixels).flatten(2).transpose(1, 2)


class BlockEncoder(nn.Module):
    """Each cell's own pixels, projected: tanh(W x_t + b) for the block x_t of pixels under
    cell t, no context: images [B, C, S, S] -> cell states [B, T, hidden] (row-major)."""

    def __init__(self, config: AttentionCNNConfig) -> None:
        super().__init__()
        side = config.image_size // config.map_size
        self.layout = BlockLayout(config.channels, config.map_size, side, side)
        self.projection = nn.Linear(self.layout.block_dim, config.hidden)
        self.output_size = config.hidden

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.projection(self.layout.to_blocks(pixels)))


class AttentionCNN(AttendingClassifier):
    """Conv blocks -> cells h [B, T, H] -> classic attention alpha [B, T] -> linear decoder.

    The classic models' interface on images: ``encode_batch`` -> :class:`EncodedState`,
    ``attention`` (hooked at site ``attention``), ``decode`` for [B, T] or [B, K, T]
    candidates, ``probabilities`` and ``forward_with_attention`` all come from
    :class:`AttendingClassifier`. The conv blocks use batch norm: put the model in eval mode
    for outputs that do not depend on the rest of the batch.
    """

    def __init__(self, config: AttentionCNNConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = (ConvEncoder if config.encoder == "conv" else BlockEncoder)(config)
        self._build_head(self.encoder.output_size)

    def encode(
        self, pixels: torch.Tensor, content_mask: torch.Tensor | None = None
    ) -> EncodedState:
        """pixels [B, C, S, S] -> cell states [B, T, H]; ``content_mask`` [B, T] bool (default:
        every cell) is where attention may put mass."""
        hidden = self.encoder(pixels)
        if content_mask is None:
            content_mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
        return self._encoded(hidden, content_mask)

    def encode_batch(self, batch: Batch) -> EncodedState:
        """:meth:`encode` for an image batch of :func:`batch_images`."""
        self._check_batch(batch)
        return self.encode(batch.pixels, batch.content_mask)

    def forward(
        self,
        pixels: torch.Tensor,
        content_mask: torch.Tensor | None = None,
        attention: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [B, C]; ``attention`` [B, T] replaces the model's own when given."""
        return self._attend_and_decode(self.encode(pixels, content_mask), attention)

    def forward_batch(self, batch: Batch) -> torch.Tensor:
        """Logits [B, C] for an image batch of :func:`batch_images`."""
        self._check_batch(batch)
        return self(batch.pixels, batch.content_mask)

    def _check_batch(self, batch: Batch) -> None:
        if batch.pixels is None or batch.token_ids.shape[1] != self.config.tokens:
            raise InvalidInputError(
                f"an attention CNN reads image batches of {self.config.tokens} cells each, got "
                f"{'a text batch' if batch.pixels is None else batch.token_ids.shape[1]}: "
                f"build the batch with batch_images(model, images)"
            )


def make_attention_cnn(config: AttentionCNNConfig | None = None, seed: int = 0) -> AttentionCNN:
    """An :class:`AttentionCNN` (default config: MNIST, 28x28x1, 10 classes), its weights
    drawn from ``seed`` (torch's global generator is left as it was)."""
    with _seeded(seed):
        return AttentionCNN(config or AttentionCNNConfig())


def make_vit(
    image_size: int = 28,
    channels: int = 1,
    num_classes: int = 10,
    patch_size: int = 7,
    hidden_size: int = 64,
    layers: int = 4,
    heads: int = 4,
    seed: int = 0,
) -> HFClassifier:
    """A randomly initialised ``transformers`` ViT (nothing is downloaded; eager attention,
    no dropout) in an :class:`HFClassifier`: tokens are ``[CLS]`` + (image_size /
    patch_size)^2 patches, the site is the last layer's ``[CLS]`` row, which the classifier
    head reads. The MLP is 2 x ``hidden_size`` wide. Weights drawn from ``seed``."""
    from transformers import ViTConfig, ViTForImageClassification

    if image_size % patch_size or hidden_size % heads:
        raise InvalidInputError(
            f"a ViT needs patch_size to divide image_size and heads to divide hidden_size, got "
            f"image_size {image_size}, patch_size {patch_size}, hidden_size {hidden_size}, "
            f"heads {heads}: pick divisors (e.g. patch_size 4 or 7 for 28x28 images)"
        )
    config = ViTConfig(
        image_size=image_size,
        patch_size=patch_size,
        num_channels=channels,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden_size,
        num_labels=num_classes,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    config._attn_implementation = "eager"
    with _seeded(seed):
        model = ViTForImageClassification(config)
    return HFClassifier(model)


def image_tokens(model: nn.Module) -> tuple[int, int]:
    """(tokens, lead) of an image model: the positions it attends over per image and how many
    of them lead the content (ViT: 1 + patches and 1 for [CLS]; attention CNN: cells and 0)."""
    if isinstance(model, AttentionCNN):
        return model.config.tokens, 0
    config = getattr(getattr(model, "model", None), "config", None)
    if isinstance(model, HFClassifier) and hasattr(config, "patch_size"):
        return 1 + (config.image_size // config.patch_size) ** 2, 1
    raise InvalidInputError(
        f"{type(model).__name__} is not an image model of this package: pass an AttentionCNN "
        f"or the HFClassifier of make_vit"
    )


def batch_images(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    index: torch.Tensor | None = None,
) -> Batch:
    """:func:`~attnexplain.data.batching.image_batch` of images [B, C, H, W] with the token
    count and lead of ``model`` (see :func:`image_tokens`)."""
    return image_batch(images, *image_tokens(model), labels, index)
