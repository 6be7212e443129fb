"""Training against per-instance targets: Wiegreffe & Pinter's diagnostic models, whose
attention is frozen to given weights, and their model-consistent adversaries, trained to match
a base model's outputs while moving its attention away (papers-spec B3-B4).

Both keep the J&W recipe's optimiser and batching, resume after an interruption like
:func:`~attnexplain.models.train.train`, and leave a checkpoint marked ``finished`` that a
second call loads instead of training again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from attnexplain.data.batching import Batch, bucketed_batches
from attnexplain.data.image_tokens import ImagePipeline
from attnexplain.data.registry import Dataset
from attnexplain.data.text import SOS_EOS, Framing, TextPipeline
from attnexplain.device import to_numpy
from attnexplain.errors import InvalidInputError
from attnexplain.metrics import kl, tvd
from attnexplain.models.checkpoint import CONFIG_FILE, Checkpoint, load_checkpoint, save_checkpoint
from attnexplain.models.classic import AttendingClassifier
from attnexplain.models.epochs import fit_epoch, run_epochs
from attnexplain.models.hf import HFClassifier
from attnexplain.models.train import (
    TrainConfig,
    _loss_function,
    _optimizer,
    build_model,
    epoch_batches,
    predict_proba,
)
from attnexplain.models.train_state import clear_train_state


def rows_on_support(
    values: Sequence[np.ndarray], batch: Batch, support: torch.Tensor
) -> torch.Tensor:
    """Per-row weights placed at each row's support positions.

    values: one array [*site, n_b] per row of the list the batch was cut from (indexed by
    ``batch.index``); support: [batch, tokens] bool with n_b True entries in row b.
    Returns [batch, *site, tokens], zero off the support.
    """
    first = np.asarray(values[int(batch.index[0])])
    out = torch.zeros(len(batch), *first.shape[:-1], support.shape[1])
    for row, index in enumerate(batch.index.tolist()):
        weights = torch.as_tensor(np.asarray(values[index]), dtype=out.dtype)
        count = int(support[row].sum())
        if weights.shape[-1] != count:
            raise InvalidInputError(
                f"row {index} has {weights.shape[-1]} attention weights for {count} tokens: "
                f"the weights must come from the same texts and tokenisation"
            )
        out[row, ..., support[row]] = weights
    return out


def _finished(out_dir: Path) -> Checkpoint | None:
    """The checkpoint in ``out_dir`` if a previous call finished training it."""
    if not (out_dir / CONFIG_FILE).is_file():
        return None
    checkpoint = load_checkpoint(out_dir)
    return checkpoint if checkpoint.metadata.get("finished") else None


def _finish(out_dir: Path, checkpoint: Checkpoint, metadata: dict) -> Checkpoint:
    """Mark the best checkpoint finished and drop the resume state."""
    save_checkpoint(
        out_dir,
        checkpoint.model,
        checkpoint.pipeline,
        checkpoint.classes,
        {**checkpoint.metadata, **metadata, "finished": True},
    )
    clear_train_state(out_dir)
    return load_checkpoint(out_dir)


# ---------------------------------------------------------------- diagnostic (B3)

DIAGNOSTIC_ARCHITECTURE = {"encoder": "average", "attention": "additive"}


def train_diagnostic(
    dataset: Dataset,
    out_dir: str | os.PathLike,
    attention_mode: str,
    train_weights: Sequence[np.ndarray] | None = None,
    config: TrainConfig | None = None,
    cache: str | os.PathLike | None = None,
    progress: bool = True,
    grid: int | None = None,
) -> Checkpoint:
    """W&P's diagnostic MLP on ``dataset.train``: the Average encoder (a per-token tanh
    projection, no context) and the J&W decoder, with attention ``learned`` (its own),
    ``uniform`` (frozen 1/n) or ``fixed`` to ``train_weights`` (one array [content tokens]
    per training row: a base model's or an adversary's attention). Images: the same MLP on
    each cell's block of pixels, ``grid`` x ``grid`` cells (the base model's patches or
    cells, :func:`diagnostic_model`).

    Trained for ``config.epochs`` epochs and the last epoch kept: fixed weights exist for the
    training and test rows only, so no variant selects its epoch on dev (every variant gets
    the same recipe). Resumable in ``out_dir``.
    """
    out_dir, config = Path(out_dir), config or TrainConfig()
    if (done := _finished(out_dir)) is not None:
        return done
    fixed = attention_mode == "fixed"
    if fixed and (train_weights is None or len(train_weights) != len(dataset.train)):
        raise InvalidInputError(
            "fixed attention needs one weight array per training row "
            f"({len(dataset.train)}), got {None if train_weights is None else len(train_weights)}"
        )
    model, pipeline = diagnostic_model(dataset, attention_mode, config, cache, grid)
    sequences = pipeline.encode_split(dataset.train)
    labels = dataset.train["label"].to_numpy()
    loss_fn, optimizer = _loss_function(model, labels), _optimizer(model, config)

    def batch_loss(batch: Batch) -> torch.Tensor:
        weights = rows_on_support(train_weights, batch, batch.content_mask) if fixed else None
        logits = _logits(model, batch, weights)
        target = batch.labels.float().unsqueeze(1) if model.output_size == 1 else batch.labels
        return loss_fn(logits, target)

    def train_epoch(epoch: int) -> float:
        batches = epoch_batches(sequences, labels, config, epoch, pipeline.framing)
        return fit_epoch(model, optimizer, batches, batch_loss, progress, f"diagnostic {epoch}")

    metadata = {"diagnostic": attention_mode, "train_config": config.identity()}
    run_epochs(
        out_dir,
        model,
        optimizer,
        {"diagnostic": attention_mode, "sizes": dataset.sizes(), "train_config": config.identity()},
        config.epochs,
        train_epoch,
        evaluate_dev=dict,
        select_by=None,
        save_best=lambda epoch, dev: save_checkpoint(
            out_dir, model, pipeline, dataset.classes, {**metadata, "best_epoch": epoch}
        ),
        progress=progress,
    )
    return _finish(out_dir, load_checkpoint(out_dir), {})


def diagnostic_model(
    dataset: Dataset,
    attention_mode: str,
    config: TrainConfig,
    cache: str | os.PathLike | None = None,
    grid: int | None = None,
) -> tuple[AttendingClassifier, TextPipeline | ImagePipeline]:
    """A fresh diagnostic MLP for ``dataset`` and its pipeline: text, the Average encoder on
    the vocabulary; images, the blocks encoder on ``grid`` x ``grid`` cells."""
    architecture = {**DIAGNOSTIC_ARCHITECTURE, "attention_mode": attention_mode}
    if dataset.modality == "text":
        return build_model(dataset, architecture, config, cache=cache)
    from attnexplain.models.vision import AttentionCNNConfig, make_attention_cnn

    channels, size, _ = dataset.train["image"].iloc[0].shape
    del architecture["encoder"]
    image_config = AttentionCNNConfig(
        channels, size, dataset.num_classes, encoder="blocks", grid=grid, **architecture
    )
    model = make_attention_cnn(image_config, config.seed)
    return model, ImagePipeline(image_config.tokens, 0, (channels, size, size))


def _logits(model: AttendingClassifier, batch: Batch, weights: torch.Tensor | None) -> torch.Tensor:
    """Logits [batch, C] with the model's own attention, or ``weights`` [batch, tokens]."""
    state = model.encode_batch(batch)
    return model.decode(state, model.attention(state) if weights is None else weights)


@torch.no_grad()
def predict_with_attention(
    model: AttendingClassifier,
    sequences: Sequence[Sequence[int]],
    weights: Sequence[np.ndarray] | None,
    framing: Framing = SOS_EOS,
) -> np.ndarray:
    """Class distributions [rows, classes] of a diagnostic model whose attention is given
    (``weights``: one array [content tokens] per row) or its own (None)."""
    if weights is None:
        return predict_proba(model, sequences, framing)
    model.eval()
    out = np.zeros((len(sequences), model.num_classes))
    for batch in bucketed_batches(sequences, batch_size=64, framing=framing):
        attention = rows_on_support(weights, batch, batch.content_mask)
        out[to_numpy(batch.index)] = to_numpy(model.probabilities(_logits(model, batch, attention)))
    return out


# ---------------------------------------------------------------- consistent adversary (B4)


@dataclass(frozen=True)
class AdversaryConfig:
    """W&P's model-consistent adversary: loss TVD(y_adv, y_base) - lam * KL(a_adv || a_base)
    per instance; up to ``epochs`` epochs, the lowest training loss kept, stop after
    ``patience`` epochs without improvement (the authors: 80 and 10)."""

    lam: float
    epochs: int = 80
    patience: int = 10

    def __post_init__(self) -> None:
        if not self.lam >= 0:
            raise InvalidInputError(f"lambda must be >= 0, got {self.lam}")


def train_consistent_adversary(
    base: Checkpoint,
    dataset: Dataset,
    base_attention: Sequence[np.ndarray],
    base_probabilities: np.ndarray,
    out_dir: str | os.PathLike,
    adversary: AdversaryConfig,
    config: TrainConfig,
    cache: str | os.PathLike | None = None,
    progress: bool = True,
) -> Checkpoint:
    """A NEW model of ``base``'s architecture (both families) trained on ``dataset.train``
    against the base model's outputs ``base_probabilities`` [rows, classes] and attentions
    ``base_attention`` (one [*site, support] array per training row, from
    :func:`~attnexplain.experiments.site_attention.site_outputs`).

    Per instance: TVD(y_adv, y_base) - lam * KL(alpha_adv || alpha_base) on the attention's
    support (averaged over heads for transformers), weighted by class like the base loss
    (positives by N_neg / N_pos), mean over the batch. Resumable in ``out_dir``.
    """
    out_dir = Path(out_dir)
    if (done := _finished(out_dir)) is not None:
        return done
    pretrained, kwargs = _architecture_of(base)
    model, pipeline = build_model(dataset, kwargs, config, pretrained, cache)
    sequences = pipeline.encode_split(dataset.train)
    labels = dataset.train["label"].to_numpy()
    positives = max(int((labels == 1).sum()), 1)
    class_weight = torch.ones(dataset.num_classes)
    if dataset.num_classes == 2:
        class_weight[1] = (len(labels) - positives) / positives
    targets = torch.as_tensor(base_probabilities, dtype=torch.float32)
    optimizer = _optimizer(model, config)

    def batch_loss(batch: Batch) -> torch.Tensor:
        logits, attention = model.forward_with_attention(batch)
        transformer = isinstance(model, HFClassifier)
        support = batch.padding_mask.bool() if transformer else batch.content_mask
        target_attention = rows_on_support(base_attention, batch, support)
        moved = tvd(model.probabilities(logits), targets[batch.index])
        mask = support.reshape(len(batch), *[1] * (attention.dim() - 2), -1)
        divergence = kl(attention, target_attention, mask)
        while divergence.dim() > 1:  # heads
            divergence = divergence.mean(-1)
        loss = (moved - adversary.lam * divergence) * class_weight[batch.labels]
        return loss.mean()

    def train_epoch(epoch: int) -> float:
        batches = epoch_batches(sequences, labels, config, epoch, pipeline.framing)
        return fit_epoch(model, optimizer, batches, batch_loss, progress, f"adversary {epoch}")

    metadata = {"adversary": asdict(adversary), "train_config": config.identity()}
    run_epochs(
        out_dir,
        model,
        optimizer,
        {**metadata, "sizes": dataset.sizes()},
        adversary.epochs,
        train_epoch,
        evaluate_dev=dict,
        select_by="train_loss",
        save_best=lambda epoch, dev: save_checkpoint(
            out_dir, model, pipeline, dataset.classes, {**metadata, "best_epoch": epoch}
        ),
        progress=progress,
        minimise=True,
        patience=adversary.patience,
    )
    return _finish(out_dir, load_checkpoint(out_dir), {})


def _architecture_of(checkpoint: Checkpoint) -> tuple[str | None, dict]:
    """(pretrained name or None, the architecture keywords of
    :func:`~attnexplain.models.train.build_model`) to build a fresh model like it."""
    model = checkpoint.model
    if isinstance(checkpoint.pipeline, ImagePipeline):
        if isinstance(model, HFClassifier):
            return None, {"vision": "vit"}
        return None, {"vision": "attention-cnn", "attention": model.config.attention}
    if isinstance(model, HFClassifier):
        name = checkpoint.metadata.get("pretrained")
        if not name:
            raise InvalidInputError(
                "the base transformer's checkpoint does not say which pretrained model it was "
                "fine-tuned from (metadata 'pretrained'): train it with attnexplain"
            )
        return name, {}
    config = model.config
    return None, {
        "encoder": config.encoder,
        "attention": config.attention,
        "hidden_size": config.hidden_size,
    }
