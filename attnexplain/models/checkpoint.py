"""Checkpoints: ``model.safetensors`` (weights) + ``attnexplain.json`` (architecture, classes,
vocabulary, provenance); transformers models add their own ``config.json`` and tokenizer
files (a decoder trained here is a plain causal-LM folder: ``AutoModelForCausalLM`` loads it).
Never pickle: loading a checkpoint runs no code from it."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import ConfigDict, Field, field_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from attnexplain.atomic import atomic_write, write_json
from attnexplain.data.image_tokens import ImagePipeline
from attnexplain.data.text import TextPipeline, Vocabulary
from attnexplain.errors import AttnExplainError, CheckpointError, InvalidInputError
from attnexplain.models.classic import ClassicConfig, ClassicModel
from attnexplain.models.decoder import is_decoder, load_decoder, save_decoder
from attnexplain.models.hf import HFClassifier, WordpieceTokenizer, load_hf, save_hf
from attnexplain.models.pair import PairModel, classic_model
from attnexplain.models.vision import AttentionCNN, AttentionCNNConfig
from attnexplain.schema import Strict, read_json

VISION_ARCHITECTURES = ("vit", "attention-cnn")

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "attnexplain.json"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model in eval mode, its text pipeline and metadata;
    ``origin`` names the folder it was loaded from and when that folder was written (None for
    a checkpoint built in memory)."""

    model: ClassicModel | PairModel | HFClassifier
    pipeline: TextPipeline | WordpieceTokenizer
    classes: list[str]
    metadata: dict = field(default_factory=dict)
    origin: str | None = None


def at_site_layer(checkpoint: Checkpoint, layer: int) -> Checkpoint:
    """The checkpoint with its transformer read at attention layer ``layer`` (negative counts
    from the end) instead of its default site; the weights are shared, not copied.

    Raises :class:`InvalidInputError` for a classic model, which has a single site."""
    if not isinstance(checkpoint.model, HFClassifier):
        raise InvalidInputError(
            "a classic model has one attention site; site layers are for transformers"
        )
    model = checkpoint.model
    return replace(checkpoint, model=HFClassifier(model.model, layer, model.attention_mode))


def save_checkpoint(
    directory: str | os.PathLike,
    model: ClassicModel | HFClassifier,
    pipeline: TextPipeline | WordpieceTokenizer,
    classes: list[str],
    metadata: dict | None = None,
) -> Path:
    """Write the checkpoint folder, file by file, ``attnexplain.json`` last; returns it."""
    directory = Path(directory)
    description = {
        "format_version": FORMAT_VERSION,
        "classes": list(classes),
        "metadata": metadata or {},
    }
    if isinstance(pipeline, ImagePipeline):
        description |= _save_vision(directory, model, pipeline)
    elif is_decoder(model):  # a plain transformers causal LM; its classes are its answer words
        save_decoder(directory, model, pipeline)
        description |= {"architecture": "causal-lm", "max_length": pipeline.max_length}
    elif isinstance(model, HFClassifier):
        # the classes as label names: the folder is a plain transformers classifier too
        model.model.config.id2label = dict(enumerate(map(str, classes)))
        model.model.config.label2id = {str(name): i for i, name in enumerate(classes)}
        save_hf(directory, model, pipeline)
        description |= {
            "architecture": "hf",
            "max_length": pipeline.max_length,
            "attention_mode": model.attention_mode,
        } | ({"passage_only": True} if pipeline.passage_only else {})
    else:
        state = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
        atomic_write(directory / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp)))
        description |= {
            "architecture": "classic",
            "model": model.config.to_dict(),
            "vocab": pipeline.vocab.itos,
        }
    write_json(directory / CONFIG_FILE, description)
    return directory


class CheckpointFile(Strict):
    """What ``attnexplain.json`` must hold for :func:`load_checkpoint` (other keys are kept)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    format_version: int = FORMAT_VERSION
    architecture: Literal["classic", "hf", "causal-lm", "vit", "attention-cnn"]
    classes: Annotated[list[str], Field(min_length=2)]
    metadata: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] | None = None
    vocab: list[str] | None = None
    max_length: Annotated[int, Field(ge=1)] = 128
    attention_mode: str = "learned"
    passage_only: bool = False
    pipeline: dict[str, Any] | None = None

    @field_validator("classes")
    @classmethod
    def _distinct(cls, classes: list[str]) -> list[str]:
        if len(set(classes)) != len(classes):
            raise ValueError(f"names a class twice: {classes}")
        return classes


def _read_config(directory: Path) -> CheckpointFile:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{directory} is not a checkpoint: {CONFIG_FILE} is missing "
            f"(pass the folder that `attnexplain train` printed)"
        )
    return read_json(
        path, CheckpointFile, CheckpointError, "the checkpoint is damaged: train again"
    )


def checkpoint_metadata(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``metadata`` a checkpoint folder was saved with, read without loading its weights.

    Raises :class:`CheckpointError` for a folder that is not a checkpoint or a damaged config.
    """
    return _read_config(Path(directory)).metadata


def load_checkpoint(directory: str | os.PathLike) -> Checkpoint:
    """Load a checkpoint folder written by :func:`save_checkpoint`.

    Raises :class:`CheckpointError` for a missing or truncated file, a config that does not
    fit :class:`CheckpointFile`, or weights that do not fit the architecture the config
    declares (checked before the model is allocated).
    """
    directory = Path(directory)
    config = _read_config(directory)
    weights = _read_weights(directory)
    if config.architecture in VISION_ARCHITECTURES:
        model, pipeline = _load_vision(directory, config, weights)
        _ready(model)
        return Checkpoint(model, pipeline, config.classes, config.metadata, _origin(directory))
    if config.architecture in ("hf", "causal-lm"):
        try:
            model, pipeline = (
                load_decoder(directory, config.classes, config.max_length)
                if config.architecture == "causal-lm"
                else load_hf(
                    directory, config.max_length, config.attention_mode, config.passage_only
                )
            )
        except (OSError, ValueError, AttnExplainError) as exc:
            raise CheckpointError(
                f"{directory} holds a damaged transformers model ({exc})"
            ) from exc
        _ready(model)
        return Checkpoint(model, pipeline, config.classes, config.metadata, _origin(directory))
    try:
        model_config = ClassicConfig(**(config.model or {}))
        pipeline = TextPipeline(Vocabulary(config.vocab or []))
    except (KeyError, TypeError, AttnExplainError) as exc:
        raise CheckpointError(
            f"{directory / CONFIG_FILE} does not describe a model ({exc})"
        ) from exc
    _check_vocabulary(len(pipeline.vocab), weights, directory)
    model = _fitted(lambda: classic_model(model_config), weights, directory)
    _ready(model)
    return Checkpoint(model, pipeline, config.classes, config.metadata, _origin(directory))


def _origin(directory: Path) -> str:
    """The folder, resolved, and the time its config (written last) was written."""
    return f"{directory.resolve()}@{(directory / CONFIG_FILE).stat().st_mtime_ns}"


def _fitted(
    build: Callable[[], torch.nn.Module], weights: dict[str, torch.Tensor], where: Path
) -> torch.nn.Module:
    """The model ``build`` makes, with ``weights`` loaded; first built without memory (on
    the meta device) to check the weights fit, so that a config declaring an absurd size is
    an error, not an allocation of terabytes."""
    with torch.device("meta"):
        _check_fits(build(), weights, where)
    model = build()
    model.load_state_dict(weights)
    return model


def _ready(model: torch.nn.Module) -> None:
    """Evaluation mode, on the device the run computes on (torch's default device, which
    :func:`attnexplain.device.computing_on` sets)."""
    model.to(torch.get_default_device()).eval()


def _save_vision(directory: Path, model: torch.nn.Module, pipeline: ImagePipeline) -> dict:
    """Write an image model's weights (a ViT in transformers' layout); returns what
    ``attnexplain.json`` records of it."""
    if isinstance(model, HFClassifier):
        model.model.save_pretrained(directory)
        found = {"architecture": "vit", "attention_mode": model.attention_mode}
    else:
        state = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
        atomic_write(directory / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp)))
        found = {"architecture": "attention-cnn", "model": model.config.to_dict()}
    return found | {"pipeline": pipeline.to_dict()}


def _load_vision(
    directory: Path, config: CheckpointFile, weights: dict[str, torch.Tensor]
) -> tuple[torch.nn.Module, ImagePipeline]:
    """The image model and pipeline of a checkpoint written by :func:`_save_vision`."""
    try:
        pipeline = ImagePipeline.from_dict(config.pipeline or {})
        if config.architecture == "vit":
            from transformers import AutoModelForImageClassification

            vit = AutoModelForImageClassification.from_pretrained(
                directory, attn_implementation="eager"
            )
            return HFClassifier(vit, attention_mode=config.attention_mode), pipeline
        model_config = AttentionCNNConfig(**(config.model or {}))
    except (KeyError, TypeError, OSError, ValueError, AttnExplainError) as exc:
        raise CheckpointError(f"{directory} does not hold a usable image model ({exc})") from exc
    return _fitted(lambda: AttentionCNN(model_config), weights, directory), pipeline


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(
            f"{path} is truncated or not a safetensors file ({exc}); "
            f"the checkpoint is damaged: train again"
        ) from exc


def _check_vocabulary(vocab_size: int, weights: dict[str, torch.Tensor], where: Path) -> None:
    """A vocabulary of another size than the embedding matrix would map texts to the wrong
    rows: refuse it."""
    embedding = weights.get("embedding.weight")
    if embedding is not None and embedding.shape[0] != vocab_size:
        raise CheckpointError(
            f"{where / CONFIG_FILE} lists a vocabulary of {vocab_size} tokens, but the "
            f"embedding matrix in {where / WEIGHTS_FILE} has {embedding.shape[0]} rows: the "
            f"two files do not belong together; use the attnexplain.json saved with these "
            f"weights, or train again"
        )


def _check_fits(model: torch.nn.Module, weights: dict[str, torch.Tensor], where: Path) -> None:
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in weights.items()}
    if expected == found:
        return
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    reshaped = sorted(n for n in set(expected) & set(found) if expected[n] != found[n])
    parts = [
        f"{label}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
        for label, names in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("different shape", reshaped),
        )
        if names
    ]
    raise CheckpointError(
        f"{where / WEIGHTS_FILE} holds weights of another architecture than its config "
        f"({_describe(model.config)}): {'; '.join(parts)}. Use the attnexplain.json saved "
        f"with these weights"
    )


def _describe(config: ClassicConfig | AttentionCNNConfig) -> str:
    if isinstance(config, AttentionCNNConfig):
        return f"attention CNN, {config.image_size}x{config.image_size}, hidden {config.hidden}"
    return (
        f"{config.encoder}+{config.attention}{' pair' if config.pair else ''}, hidden "
        f"{config.hidden_size}, vocab {config.vocab_size}"
    )
