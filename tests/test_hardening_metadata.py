"""Damaged metadata files (a run's ``manifest.json``, a checkpoint's ``attnexplain.json``) are
validated like plans: one error line naming the file and the field, never a traceback, never a
silent misreading."""

from __future__ import annotations

import json
import time

import pytest

from attnexplain.errors import CheckpointError, InvalidInputError
from attnexplain.models.checkpoint import CONFIG_FILE, load_checkpoint
from attnexplain.runner import RunResult
from tests.conftest import assert_one_error_line, run_main
from tests.test_hardening_data import tiny_checkpoint
from tests.test_runner import TINY


def _rewrite(path, change) -> None:
    payload = json.loads(path.read_text())
    change(payload)
    path.write_text(json.dumps(payload))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            lambda manifest: manifest.update(units="all of them"),
            "units: should be a valid list",
        ),
        (lambda manifest: manifest.pop("units"), "units: required; add it"),
        (lambda manifest: manifest["units"][0].pop("key"), "units[0].key: required"),
        (lambda manifest: manifest.update(plan=[1]), "plan: should be a mapping of keys to values"),
    ],
    ids=["units-wrong-type", "units-missing", "unit-without-key", "plan-wrong-type"],
)
def test_a_damaged_manifest_is_one_error_line(tmp_path, monkeypatch, capsys, change, field):
    directory = tmp_path / "run"
    directory.mkdir()
    manifest = {"plan": TINY, "status": "complete", "units": [{"key": "k", "status": "done"}]}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    RunResult.load(directory)  # as written: readable
    _rewrite(directory / "manifest.json", change)
    with pytest.raises(InvalidInputError, match="not a manifest attnexplain wrote"):
        RunResult.load(directory)
    result = run_main(monkeypatch, capsys, "report", str(directory), "--format", "html")
    assert_one_error_line(result, f"{directory / 'manifest.json'}: {field}")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda config: config.pop("classes"), "classes: required; add it"),
        (lambda config: config.update(classes=["only"]), "classes: needs at least 2 entries"),
        (lambda config: config.update(classes="ab"), "classes: should be a valid list"),
        (lambda config: config.update(classes=["a", "a"]), "names a class twice"),
        (lambda config: config.update(architecture="gpt"), "architecture: should be"),
    ],
    ids=["no-classes", "one-class", "classes-as-a-string", "a-class-twice", "architecture"],
)
def test_a_damaged_checkpoint_config_names_the_field(
    tmp_path, monkeypatch, capsys, change, message
):
    directory = tiny_checkpoint(tmp_path / "ckpt", ["good", "bad"])
    _rewrite(directory / CONFIG_FILE, change)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(directory)
    result = run_main(monkeypatch, capsys, "predict", "good", "--checkpoint", str(directory))
    assert_one_error_line(result, str(directory / CONFIG_FILE), message)


def test_an_absurd_hidden_size_is_refused_before_allocating(tmp_path):
    directory = tiny_checkpoint(tmp_path / "ckpt", ["good", "bad"])
    _rewrite(directory / CONFIG_FILE, lambda config: config["model"].update(hidden_size=10**7))
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match="weights of another architecture"):
        load_checkpoint(directory)
    assert time.perf_counter() - started < 5
