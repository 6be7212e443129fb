"""NLI data: SNLI's own JSONL files read as they are, and the generated nli-synthetic set."""

import json

import pytest

from attnexplain.data import get_spec, load_dataset, load_local
from attnexplain.data.text import tokenize
from attnexplain.errors import InvalidInputError
from tests.conftest import run_cli

SNLI_ROWS = [
    ("A man plays a guitar.", "A person makes music.", "entailment"),
    ("A man plays a guitar.", "The man is asleep.", "contradiction"),
    ("A dog runs in a park.", "The dog chases a ball.", "neutral"),
    ("Two kids eat lunch.", "Children are eating.", "-"),
    ("Two kids eat lunch.", "The kids are at school.", "neutral"),
    ("A woman reads a book.", "Nobody is reading.", "contradiction"),
    ("A woman reads a book.", "A woman is reading.", "entailment"),
    ("A cat sleeps.", "An animal rests.", "-"),
]
CLASSES = ["contradiction", "entailment", "neutral"]


def write_snli(path, rows=SNLI_ROWS, drop: str | None = None):
    """``rows`` as SNLI's .jsonl writes them (with its other fields), less column ``drop``."""
    lines = []
    for i, (premise, hypothesis, gold) in enumerate(rows):
        row = {
            "annotator_labels": [gold if gold != "-" else "neutral"],
            "captionID": f"{i}.jpg#0",
            "gold_label": gold,
            "pairID": f"{i}.jpg#0r1e",
            "sentence1": premise,
            "sentence1_parse": "(ROOT ...)",
            "sentence2": hypothesis,
        }
        row.pop(drop, None)
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_snli_file_reads_as_premise_hypothesis_and_label(tmp_path):
    path = write_snli(tmp_path / "snli_1.0_dev.jsonl")
    with pytest.warns(UserWarning, match=r"dropped 2 of 8 rows whose gold_label is '-'"):
        data = load_local(path, fractions=(0, 0, 1))
    assert data.classes == CLASSES
    test = data.test.sort_values(["text", "text_pair"])
    kept = sorted((p, h, g) for p, h, g in SNLI_ROWS if g != "-")
    assert list(zip(test["text"], test["text_pair"], strict=True)) == [(p, h) for p, h, _ in kept]
    assert [data.classes[i] for i in test["label"]] == [g for _, _, g in kept]
    assert test["tokens"].tolist() == [tokenize(p) for p, _, _ in kept]
    assert test["pair_tokens"].tolist() == [tokenize(h) for _, h, _ in kept]


def test_naming_snli_columns_reads_the_same(tmp_path):
    path = write_snli(tmp_path / "snli.jsonl")
    with pytest.warns(UserWarning, match="dropped 2 of 8"):
        named = load_local(
            path,
            text_column="sentence1",
            pair_column="sentence2",
            label_column="gold_label",
            fractions=(0, 0, 1),
        )
    with pytest.warns(UserWarning):
        found = load_local(path, fractions=(0, 0, 1))
    assert named.test.equals(found.test) and named.classes == found.classes


def test_a_model_label_order_is_kept_for_snli(tmp_path):
    path = write_snli(tmp_path / "snli.jsonl")
    order = ["entailment", "neutral", "contradiction"]
    with pytest.warns(UserWarning):
        data = load_local(path, fractions=(0, 0, 1), classes=order)
    assert data.classes == order
    first = data.test.set_index("text_pair").loc["A person makes music."]
    assert order[first["label"]] == "entailment"


def test_snli_files_it_cannot_read_are_one_clear_error(tmp_path):
    with pytest.raises(
        InvalidInputError, match=r"looks like SNLI's.*no column\(s\) \['sentence2'\]"
    ):
        load_local(write_snli(tmp_path / "half.jsonl", drop="sentence2"))
    with pytest.raises(InvalidInputError, match=r"every row's gold_label is '-'.*give rows"):
        load_local(write_snli(tmp_path / "nogold.jsonl", rows=[("A.", "B.", "-")] * 3))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(InvalidInputError, match=r"empty\.jsonl is empty"):
        load_local(tmp_path / "empty.jsonl")
    rows = [*SNLI_ROWS[:4], ("A man sings.", " ", "neutral")]
    blank = write_snli(tmp_path / "blank.jsonl", rows=rows)  # its row 4 is a "-" row
    empty_pair = r"empty second text \('sentence2'\) \(data rows 5\)"  # the file's numbering
    with pytest.warns(UserWarning), pytest.raises(InvalidInputError, match=empty_pair):
        load_local(blank)


def test_nli_synthetic_plants_one_deciding_premise_word():
    data = load_dataset("nli-synthetic", n=600, seed=2)
    assert data.classes == CLASSES and sum(data.sizes().values()) == 600
    marker_label = {}
    for frame in data.splits.values():
        for row in frame.itertuples():
            assert len(row.rationale) == len(row.tokens) and sum(row.rationale) == 1
            marker = row.tokens[row.rationale.index(1)]
            assert marker_label.setdefault(marker, row.label) == row.label
            assert row.pair_tokens == tokenize(row.text_pair)
    assert sorted(marker_label.values()) == [0, 1, 2]  # one marker word per class
    hypotheses = {token for f in data.splits.values() for t in f["pair_tokens"] for token in t}
    assert not hypotheses & set(marker_label)
    again = load_dataset("nli-synthetic", n=600, seed=2)
    assert again.train.equals(data.train)
    assert not load_dataset("nli-synthetic", n=600, seed=3).train["text"].equals(data.train["text"])


def test_nli_synthetic_refuses_bad_options():
    with pytest.raises(InvalidInputError, match="max_length 3 is below min_length 5"):
        load_dataset("nli-synthetic", min_length=5, max_length=3)


def test_data_list_shows_the_pair_datasets(tmp_path):
    result = run_cli("data", "list", "--cache-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for name in ("babi-1", "babi-2", "babi-3", "nli-synthetic"):
        spec = get_spec(name)
        line = next(line for line in result.stdout.splitlines() if line.startswith(name + " "))
        assert "/".join(map(str, spec.sizes)) in line and "generated" in line
    fetched = run_cli("data", "fetch", "babi-2")
    assert fetched.returncode == 0 and "generated; nothing to fetch" in fetched.stdout
