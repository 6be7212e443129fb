import json

import pandas as pd
import pytest

from attnexplain.data import load_local
from attnexplain.errors import InvalidInputError

TEXTS = [f"review number {i} was {'good' if i % 2 else 'bad'}" for i in range(60)]


def _frame():
    return pd.DataFrame({"body": TEXTS, "stars": ["pos" if i % 2 else "neg" for i in range(60)]})


def test_csv_with_named_columns_loads_and_splits(tmp_path):
    path = tmp_path / "reviews.csv"
    _frame().to_csv(path, index=False)
    data = load_local(path, text_column="body", label_column="stars")
    assert data.classes == ["neg", "pos"]
    assert sum(data.sizes().values()) == 60
    assert data.sizes() == {"train": 48, "dev": 6, "test": 6}
    row = data.train.iloc[0]
    assert data.classes[row["label"]] == ("pos" if "good" in row["text"] else "neg")


def test_splits_are_in_shuffled_order_so_their_first_rows_are_a_sample(tmp_path):
    """A file sorted by label (as some sources are) must not give label-sorted splits:
    experiments and max_rows take the first N rows of a split."""
    rows = 400
    sorted_frame = pd.DataFrame(
        {"body": [f"text {i}" for i in range(rows)], "stars": ["neg"] * 200 + ["pos"] * 200}
    )
    path = tmp_path / "sorted.csv"
    sorted_frame.to_csv(path, index=False)
    data = load_local(path, text_column="body", label_column="stars")
    for name in ("train", "test"):
        first = data.splits[name]["label"].iloc[:30]
        assert 0.2 < first.mean() < 0.8, name
    assert load_local(path, text_column="body", label_column="stars").train.equals(data.train)


def test_jsonl_loads_like_csv(tmp_path):
    path = tmp_path / "reviews.jsonl"
    path.write_text("\n".join(json.dumps({"text": t, "label": i % 2}) for i, t in enumerate(TEXTS)))
    data = load_local(path)
    assert data.classes == ["0", "1"] and sum(data.sizes().values()) == 60


def test_duplicate_texts_never_straddle_splits(tmp_path):
    frame = pd.concat([_frame()] * 3, ignore_index=True)
    path = tmp_path / "dups.csv"
    frame.to_csv(path, index=False)
    data = load_local(path, text_column="body", label_column="stars")
    assert sum(data.sizes().values()) == 60
    texts = [set(f["text"]) for f in data.splits.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])


def test_a_text_with_conflicting_labels_is_dropped(tmp_path):
    frame = pd.concat([_frame(), pd.DataFrame({"body": [TEXTS[0]], "stars": ["pos"]})])
    path = tmp_path / "conflict.csv"
    frame.to_csv(path, index=False)
    data = load_local(path, text_column="body", label_column="stars")
    assert sum(data.sizes().values()) == 59
    assert all(TEXTS[0] not in set(f["text"]) for f in data.splits.values())


def test_missing_columns_name_the_columns_and_the_fix(tmp_path):
    path = tmp_path / "reviews.csv"
    _frame().to_csv(path, index=False)
    with pytest.raises(InvalidInputError, match=r"no column\(s\) \['text'\].*body.*--text-column"):
        load_local(path, label_column="stars")


def test_empty_texts_are_reported_with_their_rows(tmp_path):
    frame = _frame()
    frame.loc[[3, 7], "body"] = ""
    path = tmp_path / "reviews.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InvalidInputError, match=r"2 row\(s\) with empty text \(data rows 4, 8\)"):
        load_local(path, text_column="body", label_column="stars")


def test_unsupported_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_local(tmp_path / "nope.csv")
    (tmp_path / "data.xlsx").write_text("x")
    with pytest.raises(InvalidInputError, match="unsupported file type"):
        load_local(tmp_path / "data.xlsx")
