"""The Jain & Wallace text pipeline (papers-spec A1).

Lowercase, tokenise (spaCy-like: words, contractions and punctuation apart), any token that
contains a digit becomes ``qqq``, vocabulary from the training texts with a minimum document
frequency, ids PAD 0 / UNK 1 / SOS 2 / EOS 3, every sequence wrapped ``<SOS> ... <EOS>``.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from attnexplain.errors import InvalidInputError

PAD, UNK, SOS, EOS = "<PAD>", "<UNK>", "<SOS>", "<EOS>"
SPECIAL_TOKENS = (PAD, UNK, SOS, EOS)
PAD_ID, UNK_ID, SOS_ID, EOS_ID = range(4)
DIGIT_TOKEN = "qqq"

# Order matters: a contraction's stem stops before "n't"; clitics ('s, 're, ...) stand alone;
# then words; then any single non-space symbol.
_TOKEN_RE = re.compile(r"\w+(?=n't\b)|n't\b|'(?:s|re|ve|ll|d|m)\b|\w+|[^\w\s]")
_HTML_BREAK_RE = re.compile(r"<br\s*/?>", re.IGNORECASE)


def clean_text(text: str) -> str:
    """Undo HTML escapes and turn ``<br />`` line breaks into spaces."""
    return _HTML_BREAK_RE.sub(" ", html.unescape(text))


def tokenize(text: str) -> list[str]:
    """Split a text into lowercase tokens; tokens with a digit become ``qqq``.

    >>> tokenize("Don't pay $10 for it!")
    ['do', "n't", 'pay', '$', 'qqq', 'for', 'it', '!']
    """
    tokens = _TOKEN_RE.findall(clean_text(text).lower())
    return [DIGIT_TOKEN if any(ch.isdigit() for ch in tok) else tok for tok in tokens]


def token_spans(text: str) -> list[tuple[int, int]]:
    """Where each token of :func:`tokenize` lies in ``clean_text(text)``, as (start, end)
    character offsets (for aligning another tokeniser's pieces with these tokens)."""
    return [match.span() for match in _TOKEN_RE.finditer(clean_text(text).lower())]


@dataclass(frozen=True)
class Framing:
    """How a pipeline frames its id sequences: the padding id, and how many special tokens it
    puts before (``lead``) and after (``trail``) the content: 1 and 1 for ``<SOS> ... <EOS>``
    and ``[CLS] ... [SEP]``, 0 and 0 for GPT-2, 1 and 0 for Llama's ``<s>``."""

    pad_id: int = PAD_ID
    lead: int = 1
    trail: int = 1


SOS_EOS = Framing(PAD_ID, lead=1, trail=1)


@dataclass
class Vocabulary:
    """Token <-> id mapping; ids 0-3 are the special tokens."""

    itos: list[str] = field(default_factory=lambda: list(SPECIAL_TOKENS))

    def __post_init__(self) -> None:
        if tuple(self.itos[:4]) != SPECIAL_TOKENS:
            raise InvalidInputError(f"a vocabulary must start with {SPECIAL_TOKENS}")
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    @classmethod
    def build(cls, tokenized_texts: Iterable[Sequence[str]], min_df: int = 1) -> Vocabulary:
        """Keep every token that occurs in at least ``min_df`` documents (sorted for stability)."""
        if min_df < 1:
            raise InvalidInputError(f"min_df must be >= 1, got {min_df}")
        document_frequency: Counter[str] = Counter()
        for tokens in tokenized_texts:
            document_frequency.update(set(tokens))
        kept = sorted(
            tok
            for tok, df in document_frequency.items()
            if df >= min_df and tok not in SPECIAL_TOKENS
        )
        return cls(list(SPECIAL_TOKENS) + kept)

    def ids(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(tok, UNK_ID) for tok in tokens]


class PairSequence(list):
    """The ids of a text pair's first text (passage, premise), ``<SOS> ... <EOS>``, that carry
    the ids of the second (question, hypothesis) as ``pair``, framed the same way: what
    :meth:`TextPipeline.encode_split` gives for a pair dataset, read by
    :func:`~attnexplain.data.batching.collate`. Its length is the passage's, so batches are
    bucketed by passage length."""

    def __init__(self, ids: Sequence[int], pair: Sequence[int]) -> None:
        super().__init__(ids)
        self.pair = list(pair)


PAIR_COLUMN = "pair_tokens"


def pair_documents(frame) -> list[list[str]]:
    """Each row's tokens, with its question's (``pair_tokens``) when the split has them: the
    documents a vocabulary is counted over (one per row, so a word in both texts counts once
    towards its document frequency)."""
    if PAIR_COLUMN not in frame:
        return list(frame["tokens"])
    return [
        [*tokens, *pair] for tokens, pair in zip(frame["tokens"], frame[PAIR_COLUMN], strict=True)
    ]


@dataclass
class TextPipeline:
    """Text -> token ids with SOS/EOS, using a fixed vocabulary."""

    vocab: Vocabulary
    framing: Framing = SOS_EOS

    @classmethod
    def fit(cls, texts: Iterable[str], min_df: int = 1) -> TextPipeline:
        return cls(Vocabulary.build((tokenize(t) for t in texts), min_df=min_df))

    def tokens(self, text: str) -> list[str]:
        """``[SOS, tok_1, ..., tok_n, EOS]``; raises for a text with no tokens."""
        tokens = tokenize(text)
        if not tokens:
            raise InvalidInputError(f"text {text[:40]!r} has no tokens: pass a non-empty text")
        return [SOS, *tokens, EOS]

    def encode(self, text: str) -> list[int]:
        return self.vocab.ids(self.tokens(text))

    def encode_split(self, frame) -> list[list[int]]:
        """Ids of every row of a dataset split, from its pre-tokenised ``tokens`` column; for a
        pair dataset (a ``pair_tokens`` column) each row is a :class:`PairSequence` that
        carries its question's ids too."""
        passages = [self.vocab.ids([SOS, *tokens, EOS]) for tokens in frame["tokens"]]
        if PAIR_COLUMN not in frame:
            return passages
        return [
            PairSequence(ids, self.vocab.ids([SOS, *pair, EOS]))
            for ids, pair in zip(passages, frame[PAIR_COLUMN], strict=True)
        ]

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.vocab.itos[i] for i in ids]
