"""What the Python API takes where a model and its inputs are expected: a loaded
:class:`Checkpoint` (which carries its pipeline and class names) or a model with its pipeline,
and raw texts encoded as that model reads them. Everything else is answered at this edge with
an error that names what to pass."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from attnexplain.data.batching import Batch, collate
from attnexplain.data.text import PAIR_COLUMN, TextPipeline, tokenize
from attnexplain.errors import ArgumentTypeError, InvalidInputError
from attnexplain.models.checkpoint import Checkpoint
from attnexplain.models.classic import ClassicModel
from attnexplain.models.hf import HFClassifier, WordpieceTokenizer

Model = ClassicModel | HFClassifier
Pipeline = TextPipeline | WordpieceTokenizer


@dataclass(frozen=True)
class Reader:
    """A model with what reads texts into it: ``pipeline`` and ``classes`` (class names by
    index; None for a bare model, whose classes are shown as their indices)."""

    model: Model
    pipeline: Pipeline | None
    classes: list[str] | None = None

    def class_name(self, index: int) -> str:
        """The name of class ``index`` (its index as text when the names are unknown)."""
        return str(index) if self.classes is None else str(self.classes[index])

    def needs_pipeline(self, verb: str) -> Pipeline:
        """The pipeline; :class:`InvalidInputError` naming the fix when there is none."""
        if self.pipeline is None:
            raise InvalidInputError(
                f"to {verb} raw texts, pass the model's pipeline=... or a Checkpoint, which holds "
                f"it: load_checkpoint('path/to/checkpoint')"
            )
        return self.pipeline


def refuse_path(model: object) -> None:
    """:class:`ArgumentTypeError` for a checkpoint's path given where the model is expected."""
    if isinstance(model, str | os.PathLike):
        raise ArgumentTypeError(
            f"got the path {os.fspath(model)!r} where a model is expected: load it first, "
            f"load_checkpoint({os.fspath(model)!r}), and pass what it returns"
        )


def reader(model: Checkpoint | Model, pipeline: Pipeline | None = None) -> Reader:
    """``model`` with its pipeline: a Checkpoint's own, else ``pipeline`` (may be None).

    Raises :class:`ArgumentTypeError` for a path (the fix: ``load_checkpoint(path)``)."""
    refuse_path(model)
    if isinstance(model, Checkpoint):
        return Reader(model.model, pipeline or model.pipeline, list(model.classes))
    return Reader(model, pipeline)


def as_texts(texts: str | Sequence[str], images: bool = False) -> list[str]:
    """One text or a sequence of texts as a list; :class:`InvalidInputError` for none, and
    :class:`ArgumentTypeError` for items that are not strings (unless the model reads
    ``images``: [height, width] or [height, width, channels] arrays)."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise InvalidInputError("pass at least one text")
    if images:
        return texts
    odd = next((text for text in texts if not isinstance(text, str)), None)
    if odd is not None:
        raise ArgumentTypeError(
            f"texts must be strings, got a {type(odd).__name__}: pass raw texts, e.g. "
            f"['a fine film', 'a dull one']"
        )
    return texts


def is_texts(value: object) -> bool:
    """Whether ``value`` is a text or a non-empty list / tuple of texts."""
    if isinstance(value, str):
        return True
    return (
        isinstance(value, list | tuple) and bool(value) and all(isinstance(v, str) for v in value)
    )


def reads_pairs(model: Model, pipeline: Pipeline | None) -> bool:
    """Whether the model must be given a question with every text: J&W's pair model, or a
    transformer read J&W's way (``passage_only``)."""
    return bool(getattr(getattr(model, "config", None), "pair", False)) or bool(
        getattr(pipeline, "passage_only", False)
    )


def encode_texts(
    model: Model,
    pipeline: Pipeline,
    texts: list[str],
    questions: str | Sequence[str] | None = None,
) -> list[list[int]]:
    """The ids of ``texts`` as ``model`` reads them: alone, or with their ``questions`` (one
    per text) for a model of text pairs. :class:`InvalidInputError` for a pair model given no
    questions, questions given to a model of single classic texts, or counts that differ."""
    pairs = reads_pairs(model, pipeline)
    if questions is None:
        if pairs:
            raise InvalidInputError(
                "the model reads each text with a question (a pair model): pass questions=[...], "
                "one per text"
            )
        return [pipeline.encode(text) for text in texts]
    questions = [questions] if isinstance(questions, str) else list(questions)
    if len(questions) != len(texts):
        raise InvalidInputError(
            f"got {len(texts)} texts and {len(questions)} questions: pass one question per text"
        )
    if isinstance(pipeline, TextPipeline) and not pairs:
        raise InvalidInputError(
            "the model reads single texts: drop questions (or explain a model trained on pairs)"
        )
    frame = pd.DataFrame(
        {
            "text": texts,
            "text_pair": questions,
            "tokens": [pipeline.tokens(text)[1:-1] for text in texts]
            if isinstance(pipeline, TextPipeline)
            else None,
            PAIR_COLUMN: [tokenize(question) for question in questions],
        }
    )
    return pipeline.encode_split(frame)


def texts_batch(model: Checkpoint | Model, batch: object, pipeline: Pipeline | None) -> Batch:
    """``batch`` as a :class:`Batch`: a Batch as is, raw texts encoded and collated with the
    model's pipeline (a Checkpoint's, or ``pipeline``).

    Raises :class:`ArgumentTypeError` for anything else, and for raw texts given to a bare
    model without its pipeline; each message names what to pass."""
    if isinstance(batch, Batch):
        return batch
    read = reader(model, pipeline)
    if is_texts(batch) and read.pipeline is not None:
        texts = as_texts(batch)
        ids = encode_texts(read.model, read.pipeline, texts)
        return collate(ids, framing=read.pipeline.framing)
    fix = (
        "collate([pipeline.encode(text) for text in texts], framing=pipeline.framing)"
        if read.pipeline is None
        else "raw texts (a str or a list of str), or a Batch from collate(...)"
    )
    raise ArgumentTypeError(
        f"expected a Batch, got a {type(batch).__name__}: pass {fix}"
        + (
            "; or pass a Checkpoint (load_checkpoint(...)), which reads raw texts itself"
            if read.pipeline is None
            else ""
        )
    )
