"""The bAbI tasks 1-3 generator, checked against a small rule solver of our own that replays
the statements as a reader would."""

import random
import re
from collections import defaultdict
from dataclasses import replace

import pandas as pd
import pytest

from attnexplain.data import get_spec, load_dataset, registry
from attnexplain.data.babi import generate_babi
from attnexplain.data.splits import split_frame, split_with_given_test
from attnexplain.data.text import tokenize
from attnexplain.errors import InvalidInputError, PlanError
from attnexplain.runner.plan import parse_plan
from attnexplain.runner.units import expand

MOVE = re.compile(r"(\w+) (?:moved|went|journeyed|travelled|went back) to the (\w+)")
GET = re.compile(r"(\w+) (?:got|grabbed|picked up|took) the (\w+)(?: there)?")
DROP = re.compile(r"(\w+) (?:dropped|discarded|put down|left) the (\w+)(?: there)?")
WHERE_IS = re.compile(r"Where is (?:the )?(\w+)\?")
WHERE_WAS = re.compile(r"Where was the (\w+) before the (\w+)\?")
COLUMNS = [
    "text",
    "tokens",
    "text_pair",
    "pair_tokens",
    "label",
    "supporting_facts",
    "rationale",
    "group",
]


def solve(statements: list[str], question: str) -> str | None:
    """The answer a reader gives after ``statements``, or None if they cannot tell."""
    at: dict[str, str] = {}  # actor -> known place
    held_by: dict[str, str] = {}  # object -> actor
    left_in: dict[str, str | None] = {}  # object -> known place where it was dropped
    history: dict[str, list[str]] = defaultdict(list)  # object -> its known places, in order

    def place(name: str) -> str | None:
        if name in held_by:
            return at.get(held_by[name])
        return at.get(name) or left_in.get(name)

    def note(thing: str) -> None:
        if (where := place(thing)) and history[thing][-1:] != [where]:
            history[thing].append(where)

    for statement in statements:
        if move := MOVE.fullmatch(statement):
            at[move[1]] = move[2]
            for thing in [t for t, actor in held_by.items() if actor == move[1]]:
                note(thing)
        elif get := GET.fullmatch(statement):
            held_by[get[2]] = get[1]
            note(get[2])
        elif drop := DROP.fullmatch(statement):
            held_by.pop(drop[2], None)
            left_in[drop[2]] = at.get(drop[1])
            note(drop[2])
        else:
            raise AssertionError(f"unparsable statement {statement!r}")
    if where := WHERE_IS.fullmatch(question):
        return place(where[1])
    where_was = WHERE_WAS.fullmatch(question)
    places = history[where_was[1]]
    if len(places) < 2 or places[-1] != where_was[2]:  # bAbI asks about the latest place
        return None
    return places[-2]


def statements_of(passage: str) -> list[str]:
    return [s.strip() for s in passage.split(" .") if s.strip()]


@pytest.fixture(scope="module", params=[1, 2, 3], ids=lambda task: f"task{task}")
def questions(request) -> tuple[int, pd.DataFrame]:
    return request.param, generate_babi(request.param, 300, random.Random(7))


def test_the_rule_solver_gives_every_answer(questions):
    _, frame = questions
    for row in frame.itertuples():
        assert solve(statements_of(row.text), row.text_pair) == row.label, row.Index


def test_the_supporting_facts_alone_give_the_answer(questions):
    task, frame = questions
    for row in frame.itertuples():
        statements = statements_of(row.text)
        assert len(row.supporting_facts) == task
        assert row.supporting_facts == sorted(set(row.supporting_facts))
        assert min(row.supporting_facts) >= 0 and max(row.supporting_facts) < len(statements)
        support = [statements[i] for i in row.supporting_facts]
        assert solve(support, row.text_pair) == row.label, row.Index


def test_rationale_flags_align_with_tokens_and_mark_the_supporting_sentences(questions):
    _, frame = questions
    assert list(frame.columns) == COLUMNS
    for row in frame.itertuples():
        assert row.tokens == tokenize(row.text)
        assert row.pair_tokens == tokenize(row.text_pair)
        assert len(row.rationale) == len(row.tokens)
        sentence, expected = 0, []
        for token in row.tokens:
            expected.append(int(sentence in row.supporting_facts))
            sentence += token == "."
        assert sentence == len(statements_of(row.text))  # every sentence ends in a "." token
        assert row.rationale == expected


def test_stories_follow_babi_structure():
    one = generate_babi(1, 500, random.Random(1))
    lengths = one["text"].map(lambda text: len(statements_of(text)))
    assert set(lengths) == {2, 4, 6, 8, 10}  # two moves, then a question; five per story
    three = generate_babi(3, 500, random.Random(1))
    assert three["text_pair"].str.fullmatch(WHERE_WAS.pattern).all()
    asked = three["text_pair"].str.extract(WHERE_WAS.pattern)[1]
    assert (asked != three["label"]).all()


def test_generation_is_seeded_and_deterministic():
    first = generate_babi(2, 200, random.Random(3))
    assert first.equals(generate_babi(2, 200, random.Random(3)))
    assert not first["text"].equals(generate_babi(2, 200, random.Random(4))["text"])
    small = load_dataset("babi-2", train_questions=300, test_questions=50, seed=5)
    again = load_dataset("babi-2", train_questions=300, test_questions=50, seed=5)
    assert small.train.equals(again.train) and small.test.equals(again.test)
    other = load_dataset("babi-2", train_questions=300, test_questions=50, seed=6)
    assert not small.test["text"].equals(other.test["text"])


@pytest.mark.parametrize("task", [1, 2, 3])
def test_registered_babi_loads_with_the_column_contract_and_balanced_answers(task):
    spec = get_spec(f"babi-{task}")
    data = load_dataset(spec.name)
    assert tuple(data.sizes().values()) == spec.sizes
    assert data.classes == ["bathroom", "bedroom", "garden", "hallway", "kitchen", "office"]
    assert spec.origin == "generated" and "our generator" in spec.description
    for frame in data.splits.values():
        assert set(COLUMNS) <= set(frame.columns)
        shares = frame["label"].value_counts(normalize=True)
        assert len(shares) == 6 and shares.between(0.12, 0.22).all()
    pairs = [set(zip(f["text"], f["text_pair"], strict=True)) for f in data.splits.values()]
    assert not (pairs[0] & pairs[1] or pairs[0] & pairs[2] or pairs[1] & pairs[2])


def test_bad_options_are_clear_errors():
    with pytest.raises(InvalidInputError, match="seed"):
        load_dataset("babi-1", seed=-1)
    with pytest.raises(InvalidInputError, match="test_questions"):
        load_dataset("babi-1", test_questions=0)
    with pytest.raises(InvalidInputError, match="unknown option"):
        load_dataset("babi-1", questions=5)
    plan = {
        "name": "babi",
        "datasets": [{"name": "babi-3", "options": {"seed": 2, "train_questions": -3}}],
        "models": [{"encoder": "lstm"}],
        "experiments": [{"name": "predictions"}],
    }
    with pytest.raises(PlanError, match=r"datasets\[0\].*train_questions"):
        parse_plan(plan)


def test_a_given_test_set_removes_only_the_same_pairs_from_train():
    """One passage asked two questions is two texts: only the pair the test set holds leaves
    train."""
    passage = "Mary went to the garden ."
    train = pd.DataFrame(
        {
            "text": [passage, passage, "John went to the office ."],
            "text_pair": ["Where is Mary?", "Where is the milk?", "Where is John?"],
            "label": ["garden", "garden", "office"],
        }
    )
    test = train.iloc[[1]]
    splits = split_with_given_test(train, test, 0.0, seed=0)
    assert sorted(splits["train"]["text_pair"]) == ["Where is John?", "Where is Mary?"]


@pytest.mark.parametrize("task", [1, 3])
def test_a_storys_questions_stay_in_one_split(task):
    """Questions of one story share its statements: were some of them in train and others in
    dev, dev accuracy would reward remembering stories (bAbI 3's BiLSTM scored .80 on such a
    dev and .39 on the test set)."""
    splits = load_dataset(f"babi-{task}", train_questions=1000, test_questions=100).splits
    train, dev = (set(splits[name]["group"]) for name in ("train", "dev"))
    assert train and dev and not train & dev
    # the dev share is still about 15% of the questions
    assert 0.10 < len(splits["dev"]) / (len(splits["train"]) + len(splits["dev"])) < 0.20


def test_rows_without_a_group_are_split_one_by_one():
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(100)], "label": ["a", "b"] * 50})
    grouped = frame.assign(group=[i // 10 for i in range(100)])
    parts = split_frame(frame, (0.8, 0.1, 0.1), seed=0)
    assert [len(parts[name]) for name in ("train", "dev", "test")] == [80, 10, 10]
    by_group = split_frame(grouped, (0.8, 0.1, 0.1), seed=0)
    for name in ("train", "dev", "test"):
        assert len(by_group[name]) == 10 * by_group[name]["group"].nunique()


def test_a_new_revision_of_a_datasets_rows_is_new_work(monkeypatch):
    """Units trained on bAbI's earlier split (dev questions from training stories) must not
    be reused: the spec's revision is part of the data's identity; datasets never revised
    keep their keys."""
    plan = {"name": "keys", "datasets": ["babi-1", "rt-sentences"], "seeds": [1]}
    parsed = parse_plan(
        {**plan, "models": [{"encoder": "lstm"}], "experiments": [{"name": "predictions"}]}
    )
    babi, rt = parsed.datasets
    assert babi.identity()["revision"] == 1 and "revision" not in rt.identity()
    keys = _keys(parsed)
    monkeypatch.setitem(registry.REGISTRY, "babi-1", replace(get_spec("babi-1"), revision=2))
    changed = {label for label, key in keys.items() if key != _keys(parsed)[label]}
    assert changed and all(label.startswith("babi-1") for label in changed)
    assert any(label.startswith("rt-sentences") for label in keys)


def _keys(plan) -> dict[str, str]:
    return {unit.label: unit.key for unit in expand(plan)}
