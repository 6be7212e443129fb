"""Deterministic train / dev / test splits in which no text stands in two splits."""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLITS = ("train", "dev", "test")

# rows sharing a value of this column are kept in one split (see split_frame)
GROUP = "group"


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
    split (used when a source ships its own test set). Rows that share a :data:`GROUP` value
    (a bAbI story's questions, whose passages share its statements) stay in one split, so
    that no split can be answered by remembering another: the groups are shuffled and cut by
    ``fractions`` of their number, then each split's rows are shuffled.
    """
    frame = drop_duplicate_texts(frame)
    rng = np.random.default_rng(seed)
    if GROUP not in frame:
        parts = _cut(rng.permutation(len(frame)), fractions)
    else:
        groups = frame[GROUP].unique()
        parts = [
            rng.permutation(np.flatnonzero(frame[GROUP].isin(chosen)))
            for chosen in _cut(rng.permutation(groups), fractions)
        ]
    return {
        name: frame.iloc[part].reset_index(drop=True)
        for name, part in zip(SPLITS, parts, strict=True)
    }


def _cut(order: np.ndarray, fractions: tuple[float, float, float]) -> list[np.ndarray]:
    """``order`` cut into three consecutive parts sized by ``fractions``."""
    cuts = np.round(np.cumsum(fractions)[:-1] / sum(fractions) * len(order)).astype(int)
    return np.split(order, cuts)


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
