"""The command line as a user meets it: real files, and `attnexplain` run as
`python -m attnexplain` runs it (tests/conftest.py: run_cli)."""

import json

import pandas as pd
import pytest

from tests.conftest import run_cli

QUICK = ["--embeddings", "random", "--embed-dim", "16", "--hidden-size", "16", "--epochs", "1"]
TRAIN_AVERAGE = ["train", "--dataset", "synthetic", "--encoder", "average", *QUICK]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "ckpt"
    result = run_cli(
        *TRAIN_AVERAGE,
        "--out",
        str(out),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout)


def test_train_json_prints_one_object_with_metrics_checkpoint_and_time(checkpoint):
    out, payload = checkpoint
    assert payload["checkpoint"] == str(out)
    assert set(payload["test"]) == {"accuracy", "f1", "roc_auc"}
    assert payload["wall_time_s"] > 0
    assert (out / "model.safetensors").is_file()


def test_train_prints_human_readable_metrics(tmp_path):
    result = run_cli(
        *TRAIN_AVERAGE,
        "--out",
        str(tmp_path / "ck"),
    )
    assert result.returncode == 0, result.stderr
    assert "test: accuracy" in result.stdout and "checkpoint:" in result.stdout


def test_evaluate_and_predict_use_the_checkpoint(checkpoint):
    out, payload = checkpoint
    evaluated = run_cli("evaluate", "--checkpoint", str(out), "--dataset", "synthetic", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["accuracy"] == payload["test"]["accuracy"]
    predicted = run_cli("predict", "--checkpoint", str(out), "some unseen words here")
    assert predicted.returncode == 0, predicted.stderr
    assert "attention:" in predicted.stdout


def _assert_one_line_error(result, *fragments):
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_dataset():
    _assert_one_line_error(run_cli("train", "--dataset", "sst5"), "unknown dataset 'sst5'")


def test_unknown_encoder():
    _assert_one_line_error(
        run_cli("train", "--dataset", "synthetic", "--encoder", "gru"),
        "unknown encoder 'gru'",
        "lstm, cnn, average",
    )


def test_empty_text(checkpoint):
    _assert_one_line_error(
        run_cli("predict", "--checkpoint", str(checkpoint[0]), "  "), "no tokens"
    )


def test_csv_without_the_named_columns(tmp_path):
    path = tmp_path / "data.csv"
    pd.DataFrame({"review": ["a b", "c d"], "y": [0, 1]}).to_csv(path, index=False)
    _assert_one_line_error(
        run_cli("train", "--data-file", str(path)),
        "no column(s) ['text', 'label']",
        "--text-column",
    )


def test_checkpoint_of_another_architecture(checkpoint, tmp_path):
    out, _ = checkpoint
    other = tmp_path / "lstm"
    trained = run_cli(
        "train",
        "--dataset",
        "synthetic",
        "--encoder",
        "lstm",
        *QUICK,
        "--out",
        str(other),
        "--json",
    )
    assert trained.returncode == 0, trained.stderr
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "attnexplain.json").write_bytes((out / "attnexplain.json").read_bytes())
    (tmp_path / "mixed" / "model.safetensors").write_bytes(
        (other / "model.safetensors").read_bytes()
    )
    _assert_one_line_error(
        run_cli("predict", "--checkpoint", str(tmp_path / "mixed"), "x"), "another architecture"
    )


def test_truncated_checkpoint(checkpoint, tmp_path):
    out, _ = checkpoint
    (tmp_path / "attnexplain.json").write_bytes((out / "attnexplain.json").read_bytes())
    weights = (out / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(weights[:100])
    _assert_one_line_error(
        run_cli("evaluate", "--checkpoint", str(tmp_path), "--dataset", "synthetic"), "truncated"
    )
