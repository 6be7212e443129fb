"""Training and evaluation of the image models (:mod:`attnexplain.models.vision`).

One recipe for both families: cross-entropy (a sigmoid logit for binary attention CNNs),
AdamW with a linear warm-up and a cosine decay of the learning rate per epoch, shuffled
batches, optional random shifts of up to ``SHIFT`` pixels, and the epoch with the best dev
accuracy kept (its weights are restored at the end). The pass over one epoch's batches is
:func:`attnexplain.models.epochs.fit_epoch`, shared with the text trainers.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from attnexplain.data.batching import Batch
from attnexplain.device import draw, random_order, seeded_generator
from attnexplain.errors import InvalidInputError
from attnexplain.models.epochs import fit_epoch
from attnexplain.models.vision import batch_images

SHIFT = 2  # augmentation: random shifts of up to this many pixels in each direction
Split = tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]


def shift_images(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image [N, C, H, W] moved by its own random offset of -SHIFT..SHIFT pixels along
    height and width; the uncovered border is 0."""
    count, _, height, width = images.shape
    padded = F.pad(images, (SHIFT,) * 4)
    dy, dx = draw(partial(torch.randint, 0, 2 * SHIFT + 1), (2, count, 1), generator, images.device)
    rows = (dy + torch.arange(height))[:, :, None]  # [N, H, 1]
    cols = (dx + torch.arange(width))[:, None, :]  # [N, 1, W]
    moved = padded[torch.arange(count)[:, None, None], :, rows, cols]  # [N, H, W, C]
    return moved.permute(0, 3, 1, 2)


def _tensors(split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """(images float32 [N, C, H, W], labels int64 [N]) of a split given as arrays or tensors."""
    images, labels = (torch.as_tensor(part) for part in split)
    if images.dim() != 4 or len(images) != len(labels) or len(images) == 0:
        raise InvalidInputError(
            f"a split must be (images [N, channels, height, width], labels [N]) with N > 0, got "
            f"shapes {tuple(images.shape)} and {tuple(labels.shape)}"
        )
    return images.float(), labels.long()


def _batches(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    order: torch.Tensor | None = None,
) -> Iterator[Batch]:
    """Image batches for ``model`` over rows ``order`` (default: in order)."""
    order = torch.arange(len(images)) if order is None else order
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        yield batch_images(model, images[rows], labels[rows], rows)


def _loss(model: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean loss of logits [B, C] against labels [B]: cross-entropy, or binary cross-entropy
    for a model with one (sigmoid) logit."""
    if model.output_size == 1:
        return F.binary_cross_entropy_with_logits(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels)


def _schedule(epochs: int, warmup: int) -> Callable[[int], float]:
    """Learning-rate factor per finished epoch: linear warm-up over ``warmup`` epochs, then
    a cosine decay towards 0 at the end of training."""

    def factor(epoch: int) -> float:
        if epoch < warmup:
            return (epoch + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (epoch - warmup) / max(epochs - warmup, 1)))

    return factor


@torch.no_grad()
def accuracy(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    batch_size: int = 256,
) -> float:
    """Fraction of images [N, C, H, W] whose most probable class is the label [N]."""
    images, labels = _tensors((images, labels))
    model.eval()
    correct = 0
    for batch in _batches(model, images, labels, batch_size):
        predicted = model.probabilities(model.forward_batch(batch)).argmax(-1)
        correct += int((predicted == batch.labels).sum())
    return correct / len(labels)


def train_image_model(
    model: nn.Module,
    train: Split,
    dev: Split,
    epochs: int = 60,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    augment: bool = True,
    weight_decay: float = 0.05,
    warmup: int = 2,
    progress: bool = True,
) -> dict:
    """Train an image model (:mod:`attnexplain.models.vision`) in place and keep its best epoch.

    ``train`` and ``dev`` are (images float32 [N, C, H, W] in [0, 1], labels int64 [N]).
    AdamW (``lr``, ``weight_decay``), ``warmup`` epochs of linear warm-up then cosine decay,
    batches shuffled by ``seed``; ``augment`` shifts every training image by up to
    :data:`SHIFT` pixels each epoch. After training the weights of the epoch with the best dev
    accuracy are restored.

    Returns ``{"history": [{"epoch", "train_loss", "dev_accuracy", "lr"}, ...],
    "best_epoch", "best_dev_accuracy", "seconds"}``.
    """
    if min(epochs, batch_size) < 1 or lr <= 0 or weight_decay < 0 or warmup < 0:
        raise InvalidInputError(
            f"epochs and batch_size must be >= 1, lr > 0, weight_decay and warmup >= 0; got "
            f"epochs {epochs}, batch_size {batch_size}, lr {lr}, weight_decay {weight_decay}, "
            f"warmup {warmup}"
        )
    started = time.perf_counter()
    images, labels = _tensors(train)
    generator = seeded_generator(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(epochs, warmup))
    best = {"best_epoch": 0, "best_dev_accuracy": -1.0, "weights": None}
    history = []
    for epoch in range(1, epochs + 1):
        epoch_images = shift_images(images, generator) if augment else images
        order = random_order(len(images), generator)
        rate = optimizer.param_groups[0]["lr"]
        loss = fit_epoch(
            model,
            optimizer,
            _batches(model, epoch_images, labels, batch_size, order),
            lambda batch: _loss(model, model.forward_batch(batch), batch.labels),
            progress,
            f"epoch {epoch}/{epochs}",
        )
        scheduler.step()
        dev_accuracy = accuracy(model, *dev, batch_size=max(batch_size, 256))
        history.append(
            {"epoch": epoch, "train_loss": loss, "dev_accuracy": dev_accuracy, "lr": rate}
        )
        if progress:
            tqdm.write(
                f"epoch {epoch}: loss {loss:.4f}  dev accuracy {dev_accuracy:.4f}", file=sys.stderr
            )
        if dev_accuracy > best["best_dev_accuracy"]:
            weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best = {"best_epoch": epoch, "best_dev_accuracy": dev_accuracy, "weights": weights}
    model.load_state_dict(best.pop("weights"))
    model.eval()
    return {"history": history, **best, "seconds": time.perf_counter() - started}
