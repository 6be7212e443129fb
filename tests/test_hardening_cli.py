"""The command line on what users actually fed it: long texts, texts from a file or stdin,
texts of unknown words, help strings with brackets, out-of-range training options."""

from __future__ import annotations

import pytest
from transformers import BertTokenizerFast

from attnexplain import load_checkpoint, save_checkpoint
from attnexplain.models.hf import HFClassifier, WordpieceTokenizer
from tests.conftest import assert_one_error_line, run_cli
from tests.test_cli import QUICK, TRAIN_AVERAGE
from tests.tiny_transformers import tiny_model

UNKNOWN_TEXT = "xyzzyq blorptastic"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("hardening") / "average"
    result = run_cli(*TRAIN_AVERAGE, "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def words(checkpoint):
    """Words of the checkpoint's vocabulary (special tokens left out)."""
    return load_checkpoint(checkpoint).pipeline.vocab.itos[4:]


@pytest.fixture(scope="module")
def bert_checkpoint(tmp_path_factory):
    """A tiny random BERT with a small offline wordpiece vocabulary, saved as a checkpoint."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "fine", "film", "dull", "##s"]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)})
    out = tmp_path_factory.mktemp("hardening") / "bert"
    model = HFClassifier(tiny_model("bert"))
    save_checkpoint(out, model, WordpieceTokenizer(tokenizer, 32), ["neg", "pos"])
    return out


def _long_text(words: list[str], length: int) -> str:
    return " ".join(words[i % len(words)] for i in range(length))


# explain: --file, stdin, the length cap and the progress bar


def test_explain_reads_its_text_from_a_file(checkpoint, words, tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(f"{words[0]} {words[1]}\n{words[2]}\n", encoding="utf-8")
    result = run_cli(
        "explain", "--checkpoint", str(checkpoint), "--file", str(path), "--method", "attention"
    )
    assert result.returncode == 0, result.stderr
    assert all(word in result.stdout for word in words[:3])


def test_explain_reads_its_text_from_stdin(checkpoint, words):
    result = run_cli(
        *("explain", "--checkpoint", str(checkpoint), "--file", "-", "--method", "attention"),
        stdin=f"{words[5]} {words[6]}",
    )
    assert result.returncode == 0, result.stderr
    assert words[5] in result.stdout and words[6] in result.stdout


def test_explain_takes_texts_or_a_file_not_both_nor_neither(checkpoint, tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("some text", encoding="utf-8")
    both = run_cli("explain", "--checkpoint", str(checkpoint), "--file", str(path), "text")
    assert_one_error_line(both, "--file PATH", "exactly one")
    assert_one_error_line(run_cli("explain", "--checkpoint", str(checkpoint)), "exactly one")
    missing = run_cli("explain", "--checkpoint", str(checkpoint), "--file", str(tmp_path / "no"))
    assert_one_error_line(missing, "cannot read --file", "No such file")


def test_explain_refuses_a_text_over_the_token_cap_and_names_the_flag(checkpoint, words, tmp_path):
    path = tmp_path / "long.txt"
    path.write_text(_long_text(words, 6000), encoding="utf-8")
    assert_one_error_line(
        run_cli("explain", "--checkpoint", str(checkpoint), "--file", str(path)),
        "6,000 tokens",
        "cap of 5,000",
        "--max-tokens 6000",
    )


def test_max_tokens_lifts_the_cap_and_long_texts_show_progress(checkpoint, words, tmp_path):
    path = tmp_path / "long.txt"
    path.write_text(_long_text(words, 6000), encoding="utf-8")
    result = run_cli(
        *("explain", "--checkpoint", str(checkpoint), "--file", str(path)),
        *("--max-tokens", "6000", "--method", "attention"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(words[0]) >= 6000 // len(words)
    assert "attention:" in result.stderr and "0/1" in result.stderr  # the tqdm bar


# --help keeps the help strings' own brackets


@pytest.mark.parametrize(
    ("command", "bracketed"),
    [
        ("run", "[default: runs/PLAN-NAME]"),
        ("run", "[env: ATTNEXPLAIN_CACHE]"),
        ("data list", "[env: ATTNEXPLAIN_CACHE]"),
        ("train", "[default: 8 classic, 3 fine-tuning, 60 image models]"),
        ("report", "[default: RUN-DIR/report]"),
    ],
)
def test_help_shows_bracketed_text_literally(command, bracketed):
    result = run_cli(*command.split(), "--help")
    assert result.returncode == 0, result.stderr
    # click wraps help at 80 columns, at spaces and hyphens: compare without whitespace
    assert "".join(bracketed.split()) in "".join(result.stdout.split())


# predict lists content tokens only; unknown-only texts warn


def test_predict_lists_no_special_token(checkpoint, words):
    result = run_cli("predict", "--checkpoint", str(checkpoint), f"{words[0]} {words[1]}")
    assert result.returncode == 0, result.stderr
    (attention,) = [line for line in result.stdout.splitlines() if "attention:" in line]
    shown = attention.split()[1::2]
    assert shown == [words[0], words[1]] or shown == [words[1], words[0]]


def test_predict_on_a_transformer_lists_no_special_token(bert_checkpoint):
    result = run_cli("predict", "--checkpoint", str(bert_checkpoint), "a fine film")
    assert result.returncode == 0, result.stderr
    (attention,) = [line for line in result.stdout.splitlines() if "attention:" in line]
    assert sorted(attention.split()[1::2]) == ["a", "film", "fine"]


@pytest.mark.parametrize("command", [["predict"], ["explain", "--method", "attention"]])
def test_a_text_of_unknown_words_only_warns(checkpoint, words, command):
    result = run_cli(*command, "--checkpoint", str(checkpoint), UNKNOWN_TEXT, words[0])
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1, result.stderr
    assert "text 1" in warnings[0] and "<UNK>" in warnings[0]


def test_a_transformer_text_of_unknown_wordpieces_only_warns(bert_checkpoint):
    result = run_cli("predict", "--checkpoint", str(bert_checkpoint), "zzz qqq")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "text 1" in warnings[0] and "[UNK]" in warnings[0]


# train refuses out-of-range numbers, and any usage error is one error line


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--hidden-size", "0", "error: hidden_size must be >= 1"),
        ("--seed", "-1", "error: seed must be >= 0, got -1"),
        ("--epochs", "0", "error: epochs must be >= 1, got 0"),
        ("--hidden-size", "abc", "error: Invalid value for '--hidden-size'"),
    ],
)
def test_train_refuses_bad_numbers_with_one_error_line(option, value, message):
    result = run_cli("train", "--dataset", "synthetic", *QUICK, option, value)  # last wins
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(message), line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bogus"], "error: No such command 'bogus'. (see attnexplain --help)"),
        (["predict"], "error: Missing argument 'texts'. (see attnexplain predict --help)"),
    ],
)
def test_usage_errors_are_one_error_line(args, message):
    result = run_cli(*args)
    assert result.returncode == 2 and result.stderr.strip() == message
