"""Training with the Jain & Wallace recipe (papers-spec A2), and evaluation.

Adam (amsgrad, lr 1e-3, weight decay 1e-5 except on attention), batch 32, 8 epochs,
BCE-with-logits with ``pos_weight = N_neg / N_pos`` for binary tasks (cross-entropy otherwise),
length-bucketed batches, best epoch by dev ROC-AUC (binary) or accuracy (multi-class).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from torch import nn
from tqdm.auto import tqdm

from attnexplain.data.batching import bucketed_batches
from attnexplain.data.glove import GLOVE_DIM, glove_matrix
from attnexplain.data.registry import Dataset
from attnexplain.data.text import TextPipeline, Vocabulary
from attnexplain.errors import InvalidInputError
from attnexplain.models.checkpoint import load_checkpoint, save_checkpoint
from attnexplain.models.classic import ClassicConfig, ClassicModel
from attnexplain.models.train_state import clear_train_state, load_train_state, save_train_state

EMBEDDINGS = ("random", "glove")


@dataclass
class TrainConfig:
    """Training hyperparameters (defaults: J&W).

    ``embeddings``: ``glove`` (default: GloVe 6B 50d, fine-tuned; the papers also start from
    pretrained vectors, fastText 300d, which no package ships) or ``random`` (N(0, 1),
    ``embed_dim`` wide)."""

    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-5
    seed: int = 10
    embeddings: str = "glove"
    embed_dim: int = 300

    def __post_init__(self) -> None:
        if self.embeddings not in EMBEDDINGS:
            raise InvalidInputError(
                f"unknown embeddings {self.embeddings!r}; choose one of {', '.join(EMBEDDINGS)}"
            )
        if self.epochs < 1 or self.batch_size < 1:
            raise InvalidInputError("epochs and batch_size must be >= 1")


@dataclass
class TrainResult:
    """What a training run produced. Metrics are dicts of accuracy / f1 / roc_auc."""

    checkpoint: Path
    test: dict[str, float]
    dev: dict[str, float]
    best_epoch: int
    wall_time_s: float
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        payload = asdict(self)
        payload["checkpoint"] = str(self.checkpoint)
        return payload


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """labels [N] ints, probabilities [N, C] -> accuracy, F1 (positive class for binary, macro
    otherwise) and ROC-AUC (one-vs-rest macro for multi-class; NaN if a class is absent)."""
    predicted = probabilities.argmax(1)
    binary = probabilities.shape[1] == 2
    f1 = f1_score(labels, predicted, average="binary" if binary else "macro", zero_division=0)
    try:
        auc = roc_auc_score(
            labels,
            probabilities[:, 1] if binary else probabilities,
            multi_class="ovr",
            labels=list(range(probabilities.shape[1])),
        )
    except ValueError:
        auc = float("nan")
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1": float(f1),
        "roc_auc": float(auc),
    }


@torch.no_grad()
def predict_proba(
    model: ClassicModel, sequences: list[list[int]], batch_size: int = 64
) -> np.ndarray:
    """Class distributions [N, num_classes] for id sequences, in input order."""
    model.eval()
    out = np.zeros((len(sequences), model.config.num_classes), dtype=np.float64)
    for batch in bucketed_batches(sequences, batch_size=batch_size):
        logits = model(batch.token_ids, batch.lengths, batch.content_mask)
        out[batch.index.numpy()] = model.probabilities(logits).double().numpy()
    return out


def evaluate(model: ClassicModel, pipeline: TextPipeline, frame) -> dict[str, float]:
    """Metrics of ``model`` on a split frame (columns ``tokens``, ``label``)."""
    sequences = encode_frame(pipeline, frame)
    return classification_metrics(frame["label"].to_numpy(), predict_proba(model, sequences))


def encode_frame(pipeline: TextPipeline, frame) -> list[list[int]]:
    return [pipeline.vocab.ids(["<SOS>", *tokens, "<EOS>"]) for tokens in frame["tokens"]]


def _loss_function(model: ClassicModel, labels: np.ndarray) -> nn.Module:
    if model.config.output_size == 1:
        positives = max(int(labels.sum()), 1)
        pos_weight = torch.tensor([(len(labels) - positives) / positives])
        return nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    return nn.CrossEntropyLoss()


def _optimizer(model: ClassicModel, config: TrainConfig) -> torch.optim.Optimizer:
    attention = {id(p) for p in model.attention_parameters()}
    groups = [
        {
            "params": [p for p in model.parameters() if id(p) not in attention],
            "weight_decay": config.weight_decay,
        },
        {"params": [p for p in model.parameters() if id(p) in attention], "weight_decay": 0.0},
    ]
    return torch.optim.Adam(groups, lr=config.lr, amsgrad=True)


def build_model(
    dataset: Dataset,
    pipeline: TextPipeline,
    model_kwargs: dict,
    config: TrainConfig,
    cache: str | os.PathLike | None = None,
) -> ClassicModel:
    """A fresh seeded model for ``dataset``; GloVe rows copied in when asked."""
    torch.manual_seed(config.seed)
    embed_dim = GLOVE_DIM if config.embeddings == "glove" else config.embed_dim
    model = ClassicModel(
        ClassicConfig(
            vocab_size=len(pipeline.vocab),
            num_classes=dataset.num_classes,
            embed_dim=embed_dim,
            **model_kwargs,
        )
    )
    if config.embeddings == "glove":
        matrix, _ = glove_matrix(pipeline.vocab, cache, seed=config.seed)
        model.embedding.weight.data.copy_(matrix)
    return model


def train(
    dataset: Dataset,
    out_dir: str | os.PathLike,
    model_kwargs: dict | None = None,
    config: TrainConfig | None = None,
    cache: str | os.PathLike | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a classic model on ``dataset`` and save the best epoch's checkpoint to ``out_dir``.

    ``model_kwargs`` go to :class:`ClassicConfig` (encoder, attention, hidden_size,
    attention_mode). The checkpoint is rewritten atomically whenever dev improves, and the
    training state after every epoch: calling ``train`` again with the same arguments after a
    crash or Ctrl-C resumes from the last finished epoch and gives the same result.
    """
    config = config or TrainConfig()
    started = time.perf_counter()
    pipeline = TextPipeline(Vocabulary.build(dataset.train["tokens"], min_df=dataset.min_df))
    model = build_model(dataset, pipeline, model_kwargs or {}, config, cache)
    train_ids = encode_frame(pipeline, dataset.train)
    train_labels = dataset.train["label"].to_numpy()
    loss_fn = _loss_function(model, train_labels)
    optimizer = _optimizer(model, config)
    select_by = "roc_auc" if dataset.num_classes == 2 else "accuracy"
    fingerprint = {
        "dataset": dataset.name,
        "sizes": dataset.sizes(),
        "model": model.config.to_dict(),
        "train_config": asdict(config),
    }
    metadata = {
        "dataset": dataset.name,
        "train_config": asdict(config),
        "selected_by": f"dev {select_by}",
    }
    state = load_train_state(out_dir, model, optimizer, fingerprint) or {
        "fingerprint": fingerprint,
        "epoch": 0,
        "best": -np.inf,
        "best_epoch": 0,
        "history": [],
    }
    if state["epoch"] and progress:
        tqdm.write(f"resuming after epoch {state['epoch']}", file=sys.stderr)
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        loss = _train_epoch(
            model, optimizer, loss_fn, train_ids, train_labels, config, epoch, progress
        )
        dev = evaluate(model, pipeline, dataset.dev)
        state["history"].append({"epoch": epoch, "train_loss": loss, **dev})
        if progress:
            tqdm.write(
                f"epoch {epoch}: loss {loss:.4f}  dev "
                + "  ".join(f"{k} {v:.4f}" for k, v in dev.items()),
                file=sys.stderr,
            )
        if dev[select_by] > state["best"]:
            state["best"], state["best_epoch"] = dev[select_by], epoch
            save_checkpoint(
                out_dir,
                model,
                pipeline,
                dataset.classes,
                {**metadata, "best_epoch": epoch, "dev": dev},
            )
        state["epoch"] = epoch
        save_train_state(out_dir, model, optimizer, state)
    best_model = load_checkpoint(out_dir).model
    test = evaluate(best_model, pipeline, dataset.test)
    history, best_epoch = state["history"], state["best_epoch"]
    dev = {k: history[best_epoch - 1][k] for k in test}
    wall = time.perf_counter() - started
    save_checkpoint(
        out_dir,
        best_model,
        pipeline,
        dataset.classes,
        {
            **metadata,
            "best_epoch": best_epoch,
            "dev": dev,
            "test": test,
            "wall_time_s": wall,
            "history": history,
        },
    )
    clear_train_state(out_dir)
    return TrainResult(Path(out_dir), test, dev, best_epoch, wall, history)


def _train_epoch(
    model: ClassicModel,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    train_ids: list[list[int]],
    train_labels: np.ndarray,
    config: TrainConfig,
    epoch: int,
    progress: bool,
) -> float:
    """One pass over the training data in seeded length-bucketed batches; mean loss."""
    model.train()
    batches = list(
        bucketed_batches(
            train_ids, train_labels, config.batch_size, shuffle_seed=config.seed * 1000 + epoch
        )
    )
    total = 0.0
    for batch in tqdm(
        batches, desc=f"epoch {epoch}/{config.epochs}", disable=not progress, leave=False
    ):
        optimizer.zero_grad()
        logits = model(batch.token_ids, batch.lengths, batch.content_mask)
        target = (
            batch.labels.float().unsqueeze(1) if model.config.output_size == 1 else batch.labels
        )
        loss = loss_fn(logits, target)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
    return total / len(train_ids)
