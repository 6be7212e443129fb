"""bAbI question answering, tasks 1-3 (Weston et al. 2015), from our own seeded generator.

The en-10k files Jain & Wallace used cannot be downloaded here, so these are OUR GENERATOR'S
stories, written from the public task rules (the bAbI Lua generator's ``WhereIsActor``,
``WhereIsObject`` and ``WhereWasObject`` tasks on its basic world): results on them compare with
the papers' in distribution, not file for file.

The world: four actors (Mary, John, Daniel, Sandra) move between six locations and pick up and
drop three objects (apple, football, milk); actors and objects start at random places the
reader is never told. A story is a run of statements with questions interleaved, five questions
per story: task 1 asks after every two moves; tasks 2 and 3, like bAbI, after at least three
statements, each time with chance 1/2, about an object the statements so far place. What the
reader knows is bAbI's knowledge: an actor's place is known once they have moved; an object's
place is its holder's known place, or where it was dropped by an actor of known place.

- task 1, "Where is Mary?": the actor's latest move (one supporting fact);
- task 2, "Where is the milk?": the fact that put it where it is (the pick-up, or the drop) and
  its holder's latest move before it (two facts);
- task 3, "Where was the football before the kitchen?": the kitchen is the object's latest place
  (bAbI asks about the last two places in its history) and the answer the place it was in just
  before; asked, like bAbI, only where three facts settle it: the pick-up and the holder's two
  moves that carried it from the answer to the kitchen.

Each question is one row, as bAbI files are read by J&W: the passage is every statement of the
story before the question.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated

import pandas as pd
from pydantic import Field

from attnexplain.data.splits import GROUP
from attnexplain.data.synthetic import Seed, check_options
from attnexplain.data.text import tokenize
from attnexplain.errors import InvalidInputError
from attnexplain.schema import Strict

ACTORS = ("Mary", "John", "Daniel", "Sandra")
LOCATIONS = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
OBJECTS = ("apple", "football", "milk")
TASKS = (1, 2, 3)
QUESTIONS_PER_STORY = 5
MOVE_VERBS = ("moved to", "went to", "journeyed to", "travelled to", "went back to")
GET_VERBS = ("got", "grabbed", "picked up", "took")
DROP_VERBS = ("dropped", "discarded", "put down", "left")


class BabiOptions(Strict):
    """The options of a ``babi-N`` dataset, checked before anything is generated."""

    train_questions: Annotated[int, Field(ge=1)] = 10_000
    test_questions: Annotated[int, Field(ge=1)] = 1_000
    seed: Seed = 0


def check_babi_options(options: dict) -> None:
    """Refuse options a ``babi-N`` dataset cannot be generated with (:class:`InvalidInputError`
    naming the option)."""
    check_options(BabiOptions, options, "bAbI options")


@dataclass
class _Question:
    """One question of a story: ``passage`` is how many statements precede it."""

    passage: int
    question: str
    answer: str
    supporting_facts: list[int]


@dataclass
class _Story:
    """A story being told: the true state of the world and what its statements tell a reader.

    Truth: ``place`` (actor -> location), ``holder`` (object -> actor, absent when on the
    floor), ``floor`` (object -> location when not held). Knowledge, as statement indices:
    ``moved`` (actor -> their latest move), ``grabbed`` (object -> the pick-up of its current
    holder), ``dropped`` (object -> (location, facts) of a drop by an actor of known place),
    ``before`` (object -> (previous place, place, three facts) of its latest carried move).
    """

    rng: random.Random
    statements: list[str] = field(default_factory=list)
    place: dict[str, str] = field(default_factory=dict)
    holder: dict[str, str] = field(default_factory=dict)
    floor: dict[str, str] = field(default_factory=dict)
    moved: dict[str, int] = field(default_factory=dict)
    grabbed: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, tuple[str, list[int]]] = field(default_factory=dict)
    before: dict[str, tuple[str, str, list[int]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.place = {actor: self.rng.choice(LOCATIONS) for actor in ACTORS}
        self.floor = {thing: self.rng.choice(LOCATIONS) for thing in OBJECTS}

    def tell(self, statement: str) -> int:
        self.statements.append(statement)
        return len(self.statements) - 1

    def move(self) -> None:
        actor = self.rng.choice(ACTORS)
        destination = self.rng.choice([p for p in LOCATIONS if p != self.place[actor]])
        index = self.tell(f"{actor} {self.rng.choice(MOVE_VERBS)} the {destination}")
        for thing in (t for t, a in self.holder.items() if a == actor):
            if actor in self.moved:
                facts = sorted({self.grabbed[thing], self.moved[actor], index})
                self.before[thing] = (self.place[actor], destination, facts)
            else:  # carried from a place the reader does not know: no "before" question
                self.before.pop(thing, None)
        self.place[actor] = destination
        self.moved[actor] = index

    def handle(self) -> bool:
        """An actor picks up an object in their place or drops one they hold, chosen among
        the possible ones; False when none is possible."""
        gets = [
            (actor, thing)
            for actor in ACTORS
            for thing in OBJECTS
            if thing not in self.holder and self.floor[thing] == self.place[actor]
        ]
        drops = [(actor, thing) for thing, actor in self.holder.items()]
        if not gets and not drops:
            return False
        actor, thing = self.rng.choice(gets + drops)
        there = " there" if self.rng.random() < 0.5 else ""
        if thing in self.holder:
            verb = self.rng.choice(DROP_VERBS)
            index = self.tell(f"{actor} {verb} the {thing}{there}")
            del self.holder[thing]
            self.floor[thing] = self.place[actor]
            if actor in self.moved:
                self.dropped[thing] = (self.place[actor], sorted([self.moved[actor], index]))
            else:
                self.dropped.pop(thing, None)
        else:
            index = self.tell(f"{actor} {self.rng.choice(GET_VERBS)} the {thing}{there}")
            self.holder[thing] = actor
            self.grabbed[thing] = index
        return True

    def where_is(self, thing: str) -> tuple[str, list[int]] | None:
        """The object's known place and the facts that give it, or None if unknown."""
        actor = self.holder.get(thing)
        if actor is None:
            return self.dropped.get(thing)
        if actor not in self.moved:
            return None
        return self.place[actor], sorted([self.moved[actor], self.grabbed[thing]])


def _ask_actor(story: _Story) -> _Question:
    actor = story.rng.choice([a for a in ACTORS if a in story.moved])
    return _Question(
        len(story.statements), f"Where is {actor}?", story.place[actor], [story.moved[actor]]
    )


def _ask_object(story: _Story) -> _Question | None:
    known = {thing: found for thing in OBJECTS if (found := story.where_is(thing))}
    if not known:
        return None
    thing = story.rng.choice(sorted(known))
    answer, facts = known[thing]
    return _Question(len(story.statements), f"Where is the {thing}?", answer, facts)


def _ask_before(story: _Story) -> _Question | None:
    if not story.before:
        return None
    thing = story.rng.choice(sorted(story.before))
    previous, latest, facts = story.before[thing]
    question = f"Where was the {thing} before the {latest}?"
    return _Question(len(story.statements), question, previous, facts)


def _task1_story(rng: random.Random) -> tuple[_Story, list[_Question]]:
    """Two moves, then a question about an actor who has moved; five times."""
    story, questions = _Story(rng), []
    for _ in range(QUESTIONS_PER_STORY):
        story.move()
        story.move()
        questions.append(_ask_actor(story))
    return story, questions


def _object_story(
    rng: random.Random, ask: Callable[[_Story], _Question | None]
) -> tuple[_Story, list[_Question]]:
    """bAbI's object tasks: a move (chance 1/3) or a pick-up / drop per statement; after three
    or more statements since the last question, with chance 1/2 a question if ``ask`` has
    one; until five questions."""
    story, questions, since_question = _Story(rng), [], 0
    while len(questions) < QUESTIONS_PER_STORY:
        if rng.random() < 1 / 3 or not story.handle():
            story.move()
        since_question += 1
        if since_question > 2 and rng.random() < 0.5 and (question := ask(story)):
            questions.append(question)
            since_question = 0
    return story, questions


_STORIES: dict[int, Callable[[random.Random], tuple[_Story, list[_Question]]]] = {
    1: _task1_story,
    2: lambda rng: _object_story(rng, _ask_object),
    3: lambda rng: _object_story(rng, _ask_before),
}


@lru_cache(maxsize=4096)
def _sentence_tokens(statement: str) -> tuple[str, ...]:
    # stories reuse a few hundred distinct statements: tokenise each once
    return tuple(tokenize(f"{statement} ."))


def _rows(story: _Story, questions: list[_Question], index: int) -> Iterator[dict]:
    tokens = [_sentence_tokens(statement) for statement in story.statements]
    for question in questions:
        supporting = set(question.supporting_facts)
        passage = range(question.passage)
        yield {
            "text": " ".join(f"{story.statements[i]} ." for i in passage),
            "tokens": [token for i in passage for token in tokens[i]],
            "text_pair": question.question,
            "pair_tokens": tokenize(question.question),
            "label": question.answer,
            "supporting_facts": question.supporting_facts,
            "rationale": [int(i in supporting) for i in passage for _ in tokens[i]],
            GROUP: index,
        }


def generate_babi(task: int, questions: int, rng: random.Random) -> pd.DataFrame:
    """``questions`` bAbI questions of ``task`` (1, 2 or 3), stories drawn from ``rng``.

    Returns one row per question with columns ``text`` (str: the passage, every statement
    before the question, each ending in `` .``), ``tokens`` (list[str]: ``tokenize(text)``),
    ``text_pair`` (str: the question), ``pair_tokens`` (list[str]), ``label`` (str: the
    answer, a location), ``supporting_facts`` (list[int]: 0-based indices of the passage's
    statements that settle the answer) and ``rationale`` (list[int], aligned with
    ``tokens``: 1 on every token of a supporting statement) and ``group`` (int: the story's
    index; its questions share statements, so splits keep them together). The last story is
    cut short when ``questions`` is not a multiple of five.
    """
    if task not in _STORIES:
        raise InvalidInputError(f"bAbI task {task} is not generated; tasks: {TASKS}")
    stories = (_rows(*_STORIES[task](rng), index) for index in itertools.count())
    return pd.DataFrame(itertools.islice(itertools.chain.from_iterable(stories), questions))


def babi_reader(task: int) -> Callable[..., dict[str, pd.DataFrame]]:
    """The registry reader of bAbI ``task``: ``{"train", "test"}`` frames of
    :func:`generate_babi`, each split from its own random stream of ``seed``."""

    def read_babi(
        cache, train_questions: int = 10_000, test_questions: int = 1_000, seed: int = 0
    ) -> dict[str, pd.DataFrame]:
        options = {"train_questions": train_questions, "test_questions": test_questions}
        check_babi_options({**options, "seed": seed})
        return {
            split: generate_babi(task, size, random.Random(f"babi-{task}-{split}-{seed}"))
            for split, size in zip(("train", "test"), options.values(), strict=True)
        }

    return read_babi
