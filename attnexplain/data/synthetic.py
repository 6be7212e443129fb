"""Classification tasks with planted rationale tokens: the label is decided by a few known
"signal" words, every other word is a distractor. Their per-word ground truth tells whether an
explanation finds the tokens the model must use, which no real data set can.
:func:`make_synthetic` gives single texts; :func:`make_nli_synthetic` premise / hypothesis pairs
labelled like NLI by one premise word.

Words are letters-only pseudo-words, so the J&W tokenizer keeps them one token each and the
``rationale`` (one 0/1 flag per whitespace word) stays aligned with the model's tokens.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from attnexplain.errors import InvalidInputError
from attnexplain.schema import Strict, validate

# numpy's and torch's seeds are unsigned 32-bit numbers where they meet other code
MAX_SEED = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]

NLI_CLASSES = ("contradiction", "entailment", "neutral")  # sorted, as J&W index SNLI's

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def _pseudo_words() -> list[str]:
    syllables = [c + v for c, v in itertools.product(_CONSONANTS, _VOWELS)]
    return [a + b for a, b in itertools.product(syllables, syllables)]


class _GeneratedOptions(Strict):
    """The options every generated set here takes: how many texts, how long, which seed."""

    n: Annotated[int, Field(ge=1)] = 4000
    min_length: Annotated[int, Field(ge=1, le=10_000)] = 8
    max_length: Annotated[int, Field(ge=1, le=10_000)] = 30
    distractor_words: Annotated[int, Field(ge=1)] = 400
    seed: Seed = 0

    @model_validator(mode="after")
    def _ordered_lengths(self) -> _GeneratedOptions:
        if self.max_length < self.min_length:
            raise ValueError(f"max_length {self.max_length} is below min_length {self.min_length}")
        return self


class SyntheticOptions(_GeneratedOptions):
    """The options of :func:`make_synthetic`, checked before anything is generated."""

    num_classes: Annotated[int, Field(ge=2, le=100)] = 2
    signal_per_text: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] = (1, 3)
    signal_words_per_class: Annotated[int, Field(ge=1)] = 4

    @model_validator(mode="after")
    def _consistent(self) -> SyntheticOptions:
        low, high = self.signal_per_text
        if high < low:
            raise ValueError(f"signal_per_text ({low}, {high}) should be (fewest, most)")
        needed = self.num_classes * self.signal_words_per_class + self.distractor_words
        if needed > len(_pseudo_words()):
            raise ValueError(
                f"{needed} distinct words are needed, there are {len(_pseudo_words())}: "
                "lower num_classes, signal_words_per_class or distractor_words"
            )
        return self


class NliSyntheticOptions(_GeneratedOptions):
    """The options of :func:`make_nli_synthetic`, checked before anything is generated."""

    @model_validator(mode="after")
    def _enough_words(self) -> NliSyntheticOptions:
        available = len(_pseudo_words()) - len(NLI_CLASSES)
        if self.distractor_words > available:
            raise ValueError(f"distractor_words {self.distractor_words} is above {available}")
        return self


def check_options(model: type[Strict], options: dict[str, Any], what: str) -> None:
    """Refuse ``options`` a generator cannot use (a negative ``n``, a seed beyond 32 bits,
    ...) with an :class:`InvalidInputError` naming ``what`` and the option."""
    # YAML and JSON give lists where the signature has tuples
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    validate(model, given, what, InvalidInputError)


def check_synthetic_options(options: dict[str, Any]) -> None:
    """:func:`check_options` of :func:`make_synthetic`."""
    check_options(SyntheticOptions, options, "synthetic options")


def check_nli_synthetic_options(options: dict[str, Any]) -> None:
    """:func:`check_options` of :func:`make_nli_synthetic`."""
    check_options(NliSyntheticOptions, options, "nli-synthetic options")


def make_synthetic(
    n: int = 4000,
    num_classes: int = 2,
    min_length: int = 8,
    max_length: int = 30,
    signal_per_text: tuple[int, int] = (1, 3),
    signal_words_per_class: int = 4,
    distractor_words: int = 400,
    seed: int = 0,
) -> pd.DataFrame:
    """Generate ``n`` texts deterministically from ``seed``.

    Returns a frame with columns ``text`` (str), ``label`` (str, ``class0``...), ``rationale``
    (list[int], one flag per whitespace word: 1 where a signal word was planted).
    """
    check_synthetic_options(
        {
            "n": n,
            "num_classes": num_classes,
            "min_length": min_length,
            "max_length": max_length,
            "signal_per_text": signal_per_text,
            "signal_words_per_class": signal_words_per_class,
            "distractor_words": distractor_words,
            "seed": seed,
        }
    )
    rng = np.random.default_rng(seed)
    words = list(rng.permutation(_pseudo_words()))
    signal = [
        words[i * signal_words_per_class : (i + 1) * signal_words_per_class]
        for i in range(num_classes)
    ]
    distractors = words[num_classes * signal_words_per_class :][:distractor_words]
    rows = []
    for _ in range(n):
        label = int(rng.integers(num_classes))
        length = int(rng.integers(min_length, max_length + 1))
        planted = int(rng.integers(signal_per_text[0], signal_per_text[1] + 1))
        text = list(rng.choice(distractors, size=length))
        positions = rng.choice(length, size=min(planted, length), replace=False)
        rationale = [0] * length
        for pos in positions:
            text[pos] = str(rng.choice(signal[label]))
            rationale[pos] = 1
        rows.append({"text": " ".join(text), "label": f"class{label}", "rationale": rationale})
    return pd.DataFrame(rows)


def make_nli_synthetic(
    n: int = 4000,
    min_length: int = 8,
    max_length: int = 30,
    distractor_words: int = 400,
    seed: int = 0,
) -> pd.DataFrame:
    """Generate ``n`` premise / hypothesis pairs deterministically from ``seed``, labelled by
    one premise word: each class of :data:`NLI_CLASSES` has a marker word, every premise holds
    exactly one marker among filler words, the hypothesis is filler only (a model must read
    the premise). Both texts have ``min_length`` to ``max_length`` words.

    Returns a frame with columns ``text`` (str, the premise), ``text_pair`` (str, the
    hypothesis), ``label`` (str, a class name) and ``rationale`` (list[int], one flag per
    premise word, aligned with its tokens: 1 at the marker).
    """
    check_nli_synthetic_options(
        {
            "n": n,
            "min_length": min_length,
            "max_length": max_length,
            "distractor_words": distractor_words,
            "seed": seed,
        }
    )
    rng = np.random.default_rng(seed)
    words = list(rng.permutation(_pseudo_words()))
    markers, filler = words[: len(NLI_CLASSES)], words[len(NLI_CLASSES) :][:distractor_words]
    rows = []
    for _ in range(n):
        label = int(rng.integers(len(NLI_CLASSES)))
        premise, hypothesis = (
            list(rng.choice(filler, size=int(rng.integers(min_length, max_length + 1))))
            for _ in range(2)
        )
        position = int(rng.integers(len(premise)))
        premise[position] = markers[label]
        rows.append(
            {
                "text": " ".join(premise),
                "text_pair": " ".join(hypothesis),
                "label": NLI_CLASSES[label],
                "rationale": [int(i == position) for i in range(len(premise))],
            }
        )
    return pd.DataFrame(rows)
