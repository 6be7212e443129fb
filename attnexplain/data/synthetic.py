"""A classification task with planted rationale tokens: the label is decided by a few known
"signal" words, every other word is a distractor. Its per-word ground truth tells whether an
explanation finds the tokens the model must use, which no real data set can.

Words are letters-only pseudo-words, so the J&W tokenizer keeps them one token each and the
``rationale`` (one 0/1 flag per whitespace word) stays aligned with the model's tokens.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def _pseudo_words() -> list[str]:
    syllables = [c + v for c, v in itertools.product(_CONSONANTS, _VOWELS)]
    return [a + b for a, b in itertools.product(syllables, syllables)]


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
