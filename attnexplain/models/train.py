"""Training and evaluation for both model families.

Classic models: the Jain & Wallace recipe (papers-spec A2): Adam (amsgrad, lr 1e-3, weight
decay 1e-5 except on attention), batch 32, 8 epochs, BCE-with-logits with
``pos_weight = N_neg / N_pos`` for binary tasks (cross-entropy otherwise). Pretrained
transformers: AdamW (lr 5e-5, weight decay 0.01), batch 32, 3 epochs, cross-entropy. Both:
length-bucketed batches, best epoch by dev ROC-AUC (binary) or accuracy (multi-class).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from torch import nn
from tqdm.auto import tqdm

from attnexplain.data.batching import Batch, Framing, bucketed_batches
from attnexplain.data.glove import GLOVE_DIM, glove_matrix
from attnexplain.data.image_tokens import ImagePipeline
from attnexplain.data.registry import Dataset
from attnexplain.data.text import PAIR_COLUMN, SOS_EOS, TextPipeline, Vocabulary, pair_documents
from attnexplain.device import to_numpy
from attnexplain.errors import CheckpointError, InvalidInputError
from attnexplain.models.checkpoint import (
    CONFIG_FILE,
    Checkpoint,
    checkpoint_metadata,
    load_checkpoint,
    save_checkpoint,
)
from attnexplain.models.classic import ClassicConfig, ClassicModel
from attnexplain.models.epochs import fit_epoch, run_epochs
from attnexplain.models.hf import PRETRAINED, HFClassifier, WordpieceTokenizer, load_pretrained
from attnexplain.models.pair import PairModel, classic_model
from attnexplain.models.train_state import PROGRESS_FILE, clear_train_state

EMBEDDINGS = ("random", "glove")
# Image models: AdamW with warm-up and cosine decay, shifted images; tuned on mnist-5k.
# Image models by name (build_image_model): ``{"vision": name}`` in model keywords and plans.
VISION_MODELS = ("vit", "attention-cnn")
# The ViT of a plan sees its images as VIT_GRID x VIT_GRID patches (MNIST: 7x7 pixels each).
VIT_GRID = 4
VISION_RECIPE = {"epochs": 60, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.05}
# Decoder LMs trained from scratch (models/decoder_train.py): AdamW, prompts of up to 1024
# words (bAbI 3's longest); no embeddings to load. The first 10 epochs train on the shortest
# prompts only: on every prompt the 2-layer Llama stays at answering the last sentence's place
# (experiments/babi_decoder.yaml), on short ones it learns to match the question's actor.
DECODER_RECIPE = {
    "epochs": 30,
    "short_epochs": 10,
    "batch_size": 32,
    "lr": 1e-3,
    "weight_decay": 0.01,
    "embeddings": "random",
    "max_length": 1024,
}


@dataclass
class TrainConfig:
    """Training hyperparameters (defaults: J&W; :meth:`finetuning` for transformers).

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
    max_length: int = 128
    patience: int | None = None  # stop after this many epochs without a better dev score
    # decoders: the first this many epochs train on the shortest prompts only (decoder_train)
    short_epochs: int | None = None

    def identity(self) -> dict:
        """The fields as a dict, ``patience`` and ``short_epochs`` only where set: what decides
        a trained model (checkpoints and run keys made before they existed keep their
        identity)."""
        fields = asdict(self)
        for name in ("patience", "short_epochs"):
            if fields[name] is None:
                del fields[name]
        return fields

    @classmethod
    def finetuning(cls, **overrides) -> TrainConfig:
        """Defaults for fine-tuning a pretrained transformer (``max_length`` in wordpieces)."""
        return cls(**{"epochs": 3, "lr": 5e-5, "weight_decay": 0.01, **overrides})

    @classmethod
    def decoder(cls, **overrides) -> TrainConfig:
        """Defaults for training a decoder LM from scratch
        (:func:`~attnexplain.models.decoder_train.train_decoder`'s recipe; ``max_length`` in
        words)."""
        return cls(**{**DECODER_RECIPE, **overrides})

    @classmethod
    def vision(cls, **overrides) -> TrainConfig:
        """Defaults for training an image model from scratch
        (:func:`~attnexplain.models.vision_train.train_image_model`'s recipe)."""
        return cls(**{**VISION_RECIPE, **overrides})

    def __post_init__(self) -> None:
        if self.embeddings not in EMBEDDINGS:
            raise InvalidInputError(
                f"unknown embeddings {self.embeddings!r}; choose one of {', '.join(EMBEDDINGS)}"
            )
        for name in ("epochs", "batch_size", "embed_dim", "max_length", "patience", "short_epochs"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise InvalidInputError(
                f"seed must be >= 0, got {self.seed}: pass a non-negative seed (e.g. 10)"
            )
        if self.lr <= 0 or self.weight_decay < 0:
            raise InvalidInputError(
                f"lr must be > 0 and weight_decay >= 0, got lr {self.lr}, "
                f"weight_decay {self.weight_decay}"
            )


@dataclass
class TrainResult:
    """What a training run produced. Metrics are dicts of accuracy / f1 / roc_auc."""

    checkpoint: Path
    test: dict[str, float]
    dev: dict[str, float]
    best_epoch: int
    wall_time_s: float
    selected_by: str
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
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1": float(f1),
        "roc_auc": _roc_auc(labels, probabilities),
    }


def _roc_auc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """ROC-AUC (one-vs-rest macro for multi-class); NaN where it is undefined: a class absent
    from ``labels``, or scores that are not finite."""
    classes = probabilities.shape[1]
    if len(np.unique(labels)) < classes:
        return float("nan")
    try:
        return float(
            roc_auc_score(
                labels,
                probabilities[:, 1] if classes == 2 else probabilities,
                multi_class="ovr",
                labels=list(range(classes)),
            )
        )
    except ValueError:
        return float("nan")


@torch.no_grad()
def predict_proba(
    model: torch.nn.Module,
    sequences: list[list[int]],
    framing: Framing = SOS_EOS,
    batch_size: int = 64,
) -> np.ndarray:
    """Class distributions [N, num_classes] for id sequences, in input order.

    ``model`` is any classifier of this package: it has ``forward_batch(batch) -> logits``,
    ``probabilities(logits)`` and ``num_classes``.
    """
    model.eval()
    out = np.zeros((len(sequences), model.num_classes), dtype=np.float64)
    for batch in bucketed_batches(sequences, batch_size=batch_size, framing=framing):
        probabilities = model.probabilities(model.forward_batch(batch))
        out[to_numpy(batch.index)] = to_numpy(probabilities.double())
    return out


def evaluate(model: torch.nn.Module, pipeline, frame) -> dict[str, float]:
    """Metrics of ``model`` on a dataset split; ``pipeline`` turns its rows into ids."""
    probabilities = predict_proba(model, pipeline.encode_split(frame), pipeline.framing)
    return classification_metrics(frame["label"].to_numpy(), probabilities)


def selection_metric(dataset: Dataset) -> tuple[str, str]:
    """The dev metric that picks the best epoch, and how the checkpoint describes it.

    ROC-AUC for binary tasks and accuracy for multi-class ones; accuracy also when a binary dev
    split holds one class, whose ROC-AUC is undefined (NaN would never pick an epoch). Raises
    :class:`InvalidInputError` for an empty dev split.
    """
    if len(dataset.dev) == 0:
        raise InvalidInputError(
            f"the dev split of {dataset.name!r} is empty, and the best epoch is chosen on it: "
            f"use more data, or a larger dev fraction"
        )
    metric = "roc_auc" if dataset.num_classes == 2 else "accuracy"
    present = set(dataset.dev["label"])
    if metric == "roc_auc" and len(present) == 1:
        only = dataset.classes[present.pop()]
        return "accuracy", (
            f"dev accuracy (dev ROC-AUC is undefined: every dev row is of class {only!r}; "
            f"give the dev split rows of both classes to select by ROC-AUC)"
        )
    return metric, f"dev {metric}"


def _loss_function(model: ClassicModel | HFClassifier, labels: np.ndarray) -> nn.Module:
    if model.output_size == 1:
        positives = max(int(labels.sum()), 1)
        pos_weight = torch.tensor([(len(labels) - positives) / positives])
        return nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    return nn.CrossEntropyLoss()


def _optimizer(model: ClassicModel | HFClassifier, config: TrainConfig) -> torch.optim.Optimizer:
    if isinstance(model, HFClassifier):
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    attention = {id(p) for p in model.undecayed_parameters()}
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
    model_kwargs: dict,
    config: TrainConfig,
    pretrained: str | None = None,
    cache: str | os.PathLike | None = None,
) -> tuple[ClassicModel | PairModel | HFClassifier, TextPipeline | WordpieceTokenizer]:
    """A fresh seeded model for ``dataset`` and the pipeline that feeds it.

    Classic: vocabulary from the training split (passages and, for a pair dataset, questions),
    GloVe rows copied in when asked. On a pair dataset (questions or hypotheses beside the
    texts) the model is J&W's QA / NLI model (:class:`~attnexplain.models.pair.PairModel`)
    unless ``model_kwargs`` says ``pair=False``; ``pair=True`` on any other is an error.
    ``pretrained`` (e.g. ``"minilm"``): that encoder with a new classification head; on a
    pair dataset a registered encoder reads J&W's way (``[CLS] question [SEP] passage
    [SEP]``, the passage alone content: :class:`WordpieceTokenizer`'s ``passage_only``). Image
    datasets: :func:`build_image_model`.
    """
    if dataset.modality == "image":
        return build_image_model(dataset, model_kwargs, config.seed)
    torch.manual_seed(config.seed)
    if pretrained is not None:
        options = {k: v for k, v in model_kwargs.items() if k != "attention_mode"}
        if options:
            raise InvalidInputError(
                f"a pretrained model takes no architecture options but attention_mode, got "
                f"{sorted(options)}"
            )
        mode = model_kwargs.get("attention_mode", "learned")
        # a bare encoder learns J&W's reading of a pair (the passage read, the question
        # conditioning it); a user's pair classifier keeps the order it was trained in
        passage_only = PAIR_COLUMN in dataset.train and pretrained in PRETRAINED
        return load_pretrained(
            pretrained, dataset.num_classes, config.max_length, cache, mode, passage_only
        )
    if model_kwargs.get("pair") and PAIR_COLUMN not in dataset.train:
        raise InvalidInputError(
            f"a pair model reads a question with every text, and {dataset.name!r} has none "
            f"(no {PAIR_COLUMN!r} column): pick a pair dataset, or drop pair=True"
        )
    if PAIR_COLUMN in dataset.train:  # J&W's QA / NLI model unless pair=False says otherwise
        model_kwargs = {"pair": True, **model_kwargs}
    pipeline = TextPipeline(Vocabulary.build(pair_documents(dataset.train), min_df=dataset.min_df))
    embed_dim = GLOVE_DIM if config.embeddings == "glove" else config.embed_dim
    model = classic_model(
        ClassicConfig(
            vocab_size=len(pipeline.vocab),
            num_classes=dataset.num_classes,
            embed_dim=embed_dim,
            **model_kwargs,
        )
    )
    if config.embeddings == "glove":
        matrix, _ = glove_matrix(pipeline.vocab, cache, seed=config.seed)
        for table in model.modules():  # a pair model has one table per encoder, as J&W's
            if isinstance(table, nn.Embedding):
                table.weight.data.copy_(matrix)
    return model, pipeline


def train(
    dataset: Dataset,
    out_dir: str | os.PathLike,
    model_kwargs: dict | None = None,
    config: TrainConfig | None = None,
    cache: str | os.PathLike | None = None,
    progress: bool = True,
    pretrained: str | None = None,
    after_epoch: Callable[[int, Checkpoint, dict[str, float]], None] | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train a model on ``dataset`` and save the best epoch's checkpoint to ``out_dir``.

    A finished checkpoint in ``out_dir`` trained with the same arguments (dataset name and
    split sizes, ``model_kwargs``, ``pretrained``, ``config``) is reused, not retrained: a
    notebook cell run again loads what it trained (a message on stderr says so when
    ``progress``), and returns the same :class:`TrainResult`. A finished checkpoint trained
    otherwise, or whose settings are not recorded (saved by ``save_checkpoint`` or an older
    attnexplain), is an error (:class:`CheckpointError`) rather than silently reused or
    overwritten: pass another ``out_dir``, or ``overwrite=True`` to train again in its place.

    ``model_kwargs`` go to :class:`ClassicConfig` (encoder, attention, hidden_size,
    attention_mode, pair); ``pretrained`` names a transformer to fine-tune instead (``"minilm"``;
    pass ``TrainConfig.finetuning()``). The checkpoint is rewritten atomically whenever dev
    improves, and the training state after every epoch: calling ``train`` again with the same
    arguments after a crash or Ctrl-C resumes from the last finished epoch, with the same
    result. ``after_epoch(epoch, checkpoint, dev_metrics)`` is called after each epoch with the
    model as it stands, e.g. to measure how an explanation changes as the model trains (it must
    not change the model).
    """
    _check_modality(dataset, model_kwargs or {})
    image = dataset.modality == "image"
    decoder = "decoder" in (model_kwargs or {})
    config = config or (
        TrainConfig.vision() if image else TrainConfig.decoder() if decoder else TrainConfig()
    )
    request = training_request(dataset, model_kwargs, config, pretrained)
    reused = None if overwrite else finished_training(out_dir, request, progress)
    if reused is not None:
        return reused
    if image:
        return train_images(dataset, out_dir, model_kwargs or {}, config, progress, request)
    if decoder:
        from attnexplain.models.decoder_train import train_decoder

        return train_decoder(dataset, out_dir, model_kwargs, config, progress, request)
    started = time.perf_counter()
    model, pipeline = build_model(dataset, model_kwargs or {}, config, pretrained, cache)
    fingerprint = {
        "dataset": dataset.name,
        "sizes": dataset.sizes(),
        "model": model.config.to_dict()
        if pretrained is None
        else (pretrained if not model_kwargs else {"pretrained": pretrained, **model_kwargs}),
        "train_config": config.identity(),
    }
    metadata = {"pretrained": pretrained, "request": request}
    return _fit(
        dataset,
        out_dir,
        model,
        pipeline,
        config,
        fingerprint,
        metadata,
        started,
        progress,
        after_epoch,
    )


def fine_tune(
    checkpoint: Checkpoint,
    dataset: Dataset,
    out_dir: str | os.PathLike,
    config: TrainConfig,
    transform: Callable[[Batch], Batch],
    progress: bool = True,
) -> TrainResult:
    """``checkpoint``'s model (a copy) trained further on ``dataset`` with its own pipeline,
    each training batch passed through ``transform`` first (F-Fidelity's random deletions,
    :func:`~attnexplain.measures.companion.random_deletion`), for ``config.epochs`` epochs
    with ``config``'s optimiser; the best dev epoch is saved in ``out_dir`` as :func:`train`
    saves it, and an interrupted run resumes there. ``transform`` may draw from torch's
    global generator: each epoch seeds it, so a resumed run draws what an uninterrupted one
    does."""
    started = time.perf_counter()
    model = copy.deepcopy(checkpoint.model)
    fingerprint = {
        "dataset": dataset.name,
        "sizes": dataset.sizes(),
        "fine_tuned_from": checkpoint.metadata.get("request"),
        "train_config": config.identity(),
    }
    metadata = {
        "pretrained": checkpoint.metadata.get("pretrained"),
        "fine_tuned_from": checkpoint.metadata.get("request"),
    }
    return _fit(
        dataset,
        out_dir,
        model,
        checkpoint.pipeline,
        config,
        fingerprint,
        metadata,
        started,
        progress,
        transform=transform,
    )


def _fit(
    dataset: Dataset,
    out_dir: str | os.PathLike,
    model: ClassicModel | PairModel | HFClassifier,
    pipeline: TextPipeline | WordpieceTokenizer,
    config: TrainConfig,
    fingerprint: dict,
    metadata: dict,
    started: float,
    progress: bool,
    after_epoch: Callable[[int, Checkpoint, dict[str, float]], None] | None = None,
    transform: Callable[[Batch], Batch] | None = None,
) -> TrainResult:
    """Train ``model`` on ``dataset.train`` encoded by ``pipeline`` (each batch through
    ``transform`` when given), keep the best dev epoch in ``out_dir`` with ``metadata`` (and
    the dataset, recipe and selection), measure it on test: the epochs of :func:`train` and
    :func:`fine_tune`."""
    select_by, selected_by = selection_metric(dataset)
    if progress and selected_by != f"dev {select_by}":
        tqdm.write(f"note: best epoch by {selected_by}", file=sys.stderr)
    train_ids = pipeline.encode_split(dataset.train)
    train_labels = dataset.train["label"].to_numpy()
    loss_fn = _loss_function(model, train_labels)
    optimizer = _optimizer(model, config)
    metadata = {
        "dataset": dataset.name,
        "train_config": config.identity(),
        "selected_by": selected_by,
        **metadata,
    }

    def report_epoch(epoch: int, dev: dict[str, float]) -> None:
        after_epoch(epoch, Checkpoint(model, pipeline, dataset.classes), dev)

    best_epoch, history = run_epochs(
        out_dir,
        model,
        optimizer,
        fingerprint,
        config.epochs,
        patience=config.patience,
        train_epoch=lambda epoch: _train_epoch(
            model,
            optimizer,
            loss_fn,
            train_ids,
            train_labels,
            config,
            epoch,
            progress,
            pipeline.framing,
            transform,
        ),
        evaluate_dev=lambda: evaluate(model, pipeline, dataset.dev),
        select_by=select_by,
        save_best=lambda epoch, dev: save_checkpoint(
            out_dir, model, pipeline, dataset.classes, {**metadata, "best_epoch": epoch, "dev": dev}
        ),
        progress=progress,
        after_epoch=None if after_epoch is None else report_epoch,
    )
    return finish_training(
        out_dir,
        dataset,
        metadata,
        best_epoch,
        history,
        started,
        lambda best: evaluate(best.model, best.pipeline, dataset.test),
    )


def finish_training(
    out_dir: str | os.PathLike,
    dataset: Dataset,
    metadata: dict,
    best_epoch: int,
    history: list[dict[str, float]],
    started: float,
    measure_test: Callable[[Checkpoint], dict[str, float]],
) -> TrainResult:
    """After :func:`~attnexplain.models.epochs.run_epochs`: the best epoch's checkpoint
    measured on test (``measure_test``), saved again with its test and dev metrics, training
    history and wall time (since ``started``, a ``time.perf_counter()``), the resumable state
    cleared. Raises :class:`InvalidInputError` when no epoch was kept (dev NaN throughout)."""
    selected_by = metadata["selected_by"]
    if best_epoch == 0:
        clear_train_state(out_dir)
        raise InvalidInputError(
            f"no epoch of training on {dataset.name!r} had a defined {selected_by} (it was NaN "
            f"after every epoch), so no checkpoint was saved: lower the learning rate, or "
            f"check that the dev split's texts and labels are usable"
        )
    best = load_checkpoint(out_dir)
    test = measure_test(best)
    dev = {k: history[best_epoch - 1][k] for k in test}
    wall = time.perf_counter() - started
    save_checkpoint(
        out_dir,
        best.model,
        best.pipeline,
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
    return TrainResult(Path(out_dir), test, dev, best_epoch, wall, selected_by, history)


def training_request(
    dataset: Dataset, model_kwargs: dict | None, config: TrainConfig, pretrained: str | None
) -> dict:
    """What a call of :func:`train` asked for, as its finished checkpoint records it (JSON
    types: a tuple reads back as a list)."""
    request = {
        "dataset": dataset.name,
        "sizes": dataset.sizes(),
        "model": model_kwargs or {},
        "pretrained": pretrained,
        "train_config": config.identity(),
    }
    return json.loads(json.dumps(request))


def finished_training(
    out_dir: str | os.PathLike, request: dict, progress: bool = True
) -> TrainResult | None:
    """The result of the finished training in ``out_dir`` if it is what ``request`` asks for;
    None when there is none (nothing there, or an unfinished run that :func:`train` resumes).

    Raises :class:`CheckpointError` for a finished checkpoint trained otherwise, naming what
    differs, or one whose settings are not recorded."""
    directory = Path(out_dir)
    if not (directory / CONFIG_FILE).is_file() or (directory / PROGRESS_FILE).is_file():
        return None
    metadata = checkpoint_metadata(directory)
    fix = "pass another out_dir, or overwrite=True to train again in its place"
    recorded = metadata.get("request")
    if recorded is None:
        raise CheckpointError(
            f"{directory} holds a checkpoint whose settings are not recorded: {fix}"
        )
    differs = [key for key in request if recorded.get(key) != request[key]]
    if differs:
        shown = "; ".join(f"{key} {recorded.get(key)} there, {request[key]} now" for key in differs)
        raise CheckpointError(f"{directory} holds a model trained otherwise ({shown}): {fix}")
    if progress:
        print(
            f"reusing the model trained in {directory} with these settings (test "
            f"{_headline(metadata['test'])}); pass overwrite=True to train again",
            file=sys.stderr,
        )
    return TrainResult(
        directory,
        metadata["test"],
        metadata["dev"],
        metadata["best_epoch"],
        metadata["wall_time_s"],
        metadata["selected_by"],
        metadata.get("history", []),
    )


def _headline(metrics: dict[str, float]) -> str:
    """``accuracy 0.912``: the first metric of a split, for a one-line message."""
    name, value = next(iter(metrics.items()))
    return f"{name} {value:.3f}"


def _check_modality(dataset: Dataset, model_kwargs: dict) -> None:
    """Image models for image data, text models for text: a clear error otherwise."""
    image_model = "vision" in model_kwargs
    if (dataset.modality == "image") != image_model:
        fix = (
            f"train an image model ({', '.join(VISION_MODELS)}; CLI: --model vit)"
            if dataset.modality == "image"
            else "pick a text model (classic or pretrained) or an image dataset"
        )
        raise InvalidInputError(
            f"{dataset.name!r} holds {dataset.modality} data, but the model is "
            f"{'an image' if image_model else 'a text'} model: {fix}"
        )


def build_image_model(
    dataset: Dataset, model_kwargs: dict, seed: int
) -> tuple[HFClassifier | torch.nn.Module, ImagePipeline]:
    """A fresh image model for ``dataset`` and the pipeline that feeds it: ``model_kwargs``
    ``{"vision": "vit" | "attention-cnn", "attention": ..., "attention_mode": ...}``."""
    from attnexplain.models.vision import (
        AttentionCNNConfig,
        image_tokens,
        make_attention_cnn,
        make_vit,
    )

    options = dict(model_kwargs)
    kind, mode = options.pop("vision"), options.pop("attention_mode", "learned")
    channels, height, width = dataset.train["image"].iloc[0].shape
    if height != width:
        raise InvalidInputError(
            f"the image models take square images; {dataset.name!r} has {height}x{width}: "
            f"resize them (load_image_folder(..., size=(S, S)))"
        )
    if kind == "vit":
        if options:
            raise InvalidInputError(f"a ViT takes only attention_mode, got {sorted(options)}")
        if height % VIT_GRID:
            raise InvalidInputError(
                f"the ViT cuts an image into {VIT_GRID}x{VIT_GRID} patches; {dataset.name!r} "
                f"has {height}x{height} images: resize them to a multiple of {VIT_GRID}"
            )
        vit = make_vit(height, channels, dataset.num_classes, height // VIT_GRID, seed=seed)
        model = HFClassifier(vit.model, attention_mode=mode)
    else:
        config = AttentionCNNConfig(
            channels, height, dataset.num_classes, attention_mode=mode, **options
        )
        model = make_attention_cnn(config, seed)
    tokens, lead = image_tokens(model)
    return model, ImagePipeline(tokens, lead, (channels, height, width))


def train_images(
    dataset: Dataset,
    out_dir: str | os.PathLike,
    model_kwargs: dict,
    config: TrainConfig | None = None,
    progress: bool = True,
    request: dict | None = None,
) -> TrainResult:
    """Train an image model (:func:`build_image_model`) on an image dataset with the vision
    recipe (:func:`~attnexplain.models.vision_train.train_image_model`; ``config`` gives
    epochs, batch size, lr, weight decay and seed) and save the best epoch's checkpoint,
    with ``request`` (what :func:`train` was asked, so that it reuses the checkpoint).

    A crash loses the run (training takes minutes); calling again starts over."""
    from attnexplain.models.vision_train import train_image_model

    config = config or TrainConfig.vision()
    started = time.perf_counter()
    model, pipeline = build_model(dataset, model_kwargs, config)
    splits = {
        name: (np.stack(frame["image"].to_list()), frame["label"].to_numpy().copy())
        for name, frame in dataset.splits.items()
    }
    fit = train_image_model(
        model,
        splits["train"],
        splits["dev"],
        epochs=config.epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        seed=config.seed,
        weight_decay=config.weight_decay,
        progress=progress,
    )
    dev, test = (evaluate(model, pipeline, dataset.splits[name]) for name in ("dev", "test"))
    wall = time.perf_counter() - started
    metadata = {
        "dataset": dataset.name,
        "train_config": config.identity(),
        "selected_by": "dev accuracy",
        "best_epoch": fit["best_epoch"],
        "dev": dev,
        "test": test,
        "wall_time_s": wall,
        "history": fit["history"],
    } | ({} if request is None else {"request": request})
    save_checkpoint(out_dir, model, pipeline, dataset.classes, metadata)
    return TrainResult(
        Path(out_dir), test, dev, fit["best_epoch"], wall, "dev accuracy", fit["history"]
    )


def _train_epoch(
    model: ClassicModel | HFClassifier,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    train_ids: list[list[int]],
    train_labels: np.ndarray,
    config: TrainConfig,
    epoch: int,
    progress: bool,
    framing: Framing,
    transform: Callable[[Batch], Batch] | None = None,
) -> float:
    """One pass over the training data in seeded length-bucketed batches (each through
    ``transform`` when given); mean loss.

    Seeding per epoch makes dropout (transformers) and ``transform``'s draws the same in a
    resumed run."""
    batches = epoch_batches(train_ids, train_labels, config, epoch, framing)
    if transform is not None:
        batches = map(transform, batches)

    def batch_loss(batch: Batch) -> torch.Tensor:
        logits = model.forward_batch(batch)
        target = batch.labels.float().unsqueeze(1) if model.output_size == 1 else batch.labels
        return loss_fn(logits, target)

    return fit_epoch(
        model, optimizer, batches, batch_loss, progress, f"epoch {epoch}/{config.epochs}"
    )


def epoch_batches(
    ids: list[list[int]], labels: np.ndarray, config: TrainConfig, epoch: int, framing: Framing
) -> Iterator[Batch]:
    """The seeded, length-bucketed training batches of ``epoch``: a function of seed and epoch
    only, so that a resumed run sees the batches (and dropout draws) an uninterrupted one
    does."""
    torch.manual_seed(config.seed * 1000 + epoch)
    return bucketed_batches(
        ids, labels, config.batch_size, shuffle_seed=config.seed * 1000 + epoch, framing=framing
    )
