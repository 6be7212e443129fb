"""Image folders as people have them: 16-bit scans, transparent PNGs, one image per class,
decompression bombs and huge images. Each loads as its pixels say, or is refused in one clear
error before its pixels are decoded."""

from __future__ import annotations

import resource
import time

import numpy as np
import pytest
from PIL import Image

from attnexplain.data.images import load_image_folder
from attnexplain.errors import InvalidInputError


def _folder(root, images: dict[str, list[Image.Image]]):
    for name, pictures in images.items():
        (root / name).mkdir(parents=True)
        for number, picture in enumerate(pictures):
            picture.save(root / name / f"{number}.png")
    return root


def _class_means(data) -> dict[str, float]:
    """The mean pixel of each class (every image of a class is the same here)."""
    return {
        data.classes[label]: float(image.mean())
        for image, label in zip(data.images, data.labels, strict=True)
    }


def test_16_bit_grayscale_is_scaled_by_its_depth(tmp_path):
    dim = np.full((4, 4), 1000, dtype=np.uint16)  # 1.5% of 65535
    bright = np.full((4, 4), 60000, dtype=np.uint16)
    images = {
        "dim": [Image.fromarray(dim)] * 10,
        "bright": [Image.fromarray(bright)] * 10,
    }
    data = load_image_folder(_folder(tmp_path / "scans", images))
    values = _class_means(data)
    assert values["dim"] == pytest.approx(1000 / 65535, abs=1e-4)
    assert values["bright"] == pytest.approx(60000 / 65535, abs=1e-4)
    rgb = load_image_folder(tmp_path / "scans", grayscale=False)
    assert rgb.images.shape[1] == 3 and rgb.images.max() == pytest.approx(60000 / 65535, 1e-4)


def test_transparent_pixels_are_composited_on_white(tmp_path):
    clear = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # black, fully transparent
    half = Image.new("RGBA", (4, 4), (0, 0, 0, 128))  # black, half transparent
    data = load_image_folder(
        _folder(tmp_path / "icons", {"clear": [clear] * 10, "half": [half] * 10})
    )
    means = _class_means(data)
    assert means["clear"] == pytest.approx(1.0)  # the background shows through
    assert means["half"] == pytest.approx(127 / 255, abs=0.01)


def test_one_image_per_class_warns_that_dev_and_test_are_empty(tmp_path, capsys):
    black, white = Image.new("L", (4, 4), 0), Image.new("L", (4, 4), 255)
    data = load_image_folder(_folder(tmp_path / "two", {"black": [black], "white": [white]}))
    assert data.sizes() == {"train": 2, "dev": 0, "test": 0}
    (warning,) = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert "leaves dev and test empty" in warning


def test_a_huge_image_is_refused_from_its_header(tmp_path):
    folder = tmp_path / "huge"
    small = Image.new("L", (4, 4))
    _folder(folder, {"a": [small] * 2, "b": [small] * 2})
    Image.new("1", (12000, 12000)).save(folder / "a" / "huge.png")  # 1-bit: a small file
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(InvalidInputError, match=r"huge.png is 12000x12000 pixels, more than"):
        load_image_folder(folder)
    assert time.perf_counter() - started < 5
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100  # the pixels (144 MB as bytes, 576 MB as floats) were never decoded


def test_a_decompression_bomb_is_a_clear_error(tmp_path, monkeypatch):
    folder = tmp_path / "bomb"
    small = Image.new("L", (64, 64))
    _folder(folder, {"a": [small] * 2, "b": [small] * 2})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64x64 is "a bomb" by PIL's count
    with pytest.raises(InvalidInputError, match=r"cannot read image .*decompression bomb"):
        load_image_folder(folder)
