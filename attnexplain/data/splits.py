"""Deterministic train / dev / test splits in which no text stands in two splits."""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLITS = ("train", "dev", "test")


def text_key(frame: pd.DataFrame) -> list[str]:
    """The columns that make a row's text: ``text``, and ``text_pair`` for text pairs (one
    premise with two hypotheses is two texts)."""
    return [column for column in ("text", "text_pair") if column in frame.columns]


def drop_duplicate_texts(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep the first copy of a text that repeats with one label; drop every copy of a text
    that appears with different labels (its label is unknowable); texts by :func:`text_key`."""
    key = text_key(frame)
    labels_per_text = frame.groupby(key, sort=False)["label"].transform("nunique")
    frame = frame[labels_per_text == 1]
    return frame.drop_duplicates(key, keep="first").reset_index(drop=True)


def split_frame(
    frame: pd.DataFrame, fractions: tuple[float, float, float], seed: int
) -> dict[str, pd.DataFrame]:
    """Shuffle deduplicated rows with ``seed`` and cut them by ``fractions`` (train, dev, test).

    Each split keeps the shuffled order, so that its first N rows are a random sample (sources
    are often sorted by label: rt-sentences and tweets are). A fraction of 0 gives an empty
    split (used when a source ships its own test set).
    """
    frame = drop_duplicate_texts(frame)
    order = np.random.default_rng(seed).permutation(len(frame))
    cuts = np.round(np.cumsum(fractions)[:-1] / sum(fractions) * len(frame)).astype(int)
    parts = np.split(order, cuts)
    return {
        name: frame.iloc[part].reset_index(drop=True)
        for name, part in zip(SPLITS, parts, strict=True)
    }


def split_with_given_test(
    train: pd.DataFrame, test: pd.DataFrame, dev_fraction: float, seed: int
) -> dict[str, pd.DataFrame]:
    """Keep a source's own test set (shuffled with ``seed``, like every split); drop training
    rows whose text (:func:`text_key`) is in it; cut dev from train."""
    test = drop_duplicate_texts(test)
    test = test.iloc[np.random.default_rng(seed).permutation(len(test))].reset_index(drop=True)
    key = text_key(train)
    train = train[~pd.MultiIndex.from_frame(train[key]).isin(pd.MultiIndex.from_frame(test[key]))]
    parts = split_frame(train, (1 - dev_fraction, dev_fraction, 0.0), seed)
    return {"train": parts["train"], "dev": parts["dev"], "test": test}
