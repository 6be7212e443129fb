"""Predict raw texts: the class a model gives each text and its probabilities, as one tidy
table. The ``attnexplain predict`` command and :func:`attnexplain.explain` read it too."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from attnexplain.experiments.predictions import PROBABILITY_PREFIX
from attnexplain.models.checkpoint import Checkpoint
from attnexplain.models.inputs import Model, Pipeline, Reader, as_texts, encode_texts, reader
from attnexplain.models.train import predict_proba

PREDICTION_COLUMNS = ["predicted_class", "probability"]


def predict(
    model: Checkpoint | Model,
    texts: str | Sequence[str],
    pipeline: Pipeline | None = None,
    questions: str | Sequence[str] | None = None,
    batch_size: int = 64,
) -> pd.DataFrame:
    """The predicted class of each text, with the class probabilities.

    Parameters
    ----------
    model : a loaded :class:`Checkpoint` (its pipeline and class names are used), or a
        ClassicModel / HFClassifier together with ``pipeline`` (classes are then named by
        their index, ``"0"``, ``"1"``...).
    texts : one text or a sequence of texts.
    pipeline : the model's TextPipeline or WordpieceTokenizer (not needed for a Checkpoint).
    questions : for a model of text pairs, the second text of each, one per text.
    batch_size : texts per forward pass.

    Returns
    -------
    DataFrame with one row per text: ``instance`` (index into ``texts``), ``text``,
    ``predicted`` (class index), ``predicted_class`` (its name), ``probability`` (of the
    predicted class) and ``prob_<class>`` for every class.

    Example
    -------
    >>> predict(load_checkpoint("runs/quick/checkpoints/<key>"), ["a fine film", "dull"])
    """
    read = reader(model, pipeline)
    texts = as_texts(texts)
    sequences = encode_texts(read.model, read.needs_pipeline("predict"), texts, questions)
    return prediction_frame(read, texts, sequences, batch_size)


def prediction_frame(
    read: Reader, texts: list[str], sequences: list[list[int]], batch_size: int = 64
) -> pd.DataFrame:
    """:func:`predict`'s table of texts already encoded (``sequences``: one id list each)."""
    probabilities = predict_proba(read.model, sequences, read.pipeline.framing, batch_size)
    predicted = probabilities.argmax(1)
    names = [read.class_name(i) for i in range(probabilities.shape[1])]
    return pd.DataFrame(
        {
            "instance": np.arange(len(texts)),
            "text": texts,
            "predicted": predicted,
            "predicted_class": [names[i] for i in predicted],
            "probability": probabilities[np.arange(len(texts)), predicted],
            **{f"{PROBABILITY_PREFIX}{name}": probabilities[:, i] for i, name in enumerate(names)},
        }
    )
