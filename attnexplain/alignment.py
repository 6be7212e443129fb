"""From wordpieces back to words: which word each token belongs to, and token scores summed
(or averaged, or maxed) per word, so explanations of subword models read as words."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from attnexplain.errors import InvalidInputError

REDUCTIONS = ("sum", "mean", "max")


@dataclass
class WordAlignment:
    """``words``: the text's words; ``word_ids``: per token position, the index of its word,
    or None for special tokens and padding; ``spans``: where each word lies in the text the
    tokenizer read, as (start, end) character offsets (None where the words are a classic
    pipeline's tokens, which are not substrings of the text)."""

    words: list[str]
    word_ids: list[int | None]
    spans: list[tuple[int, int]] | None = None


def aggregate_to_words(
    scores: torch.Tensor, alignment: WordAlignment, reduce: str = "sum"
) -> torch.Tensor:
    """Token scores [tokens] -> word scores [words].

    ``sum`` keeps attention a distribution over words; ``mean`` and ``max`` suit gradient
    magnitudes. Positions past ``len(alignment.word_ids)`` (padding) are ignored.
    """
    if reduce not in REDUCTIONS:
        raise InvalidInputError(
            f"unknown reduction {reduce!r}; choose one of {', '.join(REDUCTIONS)}"
        )
    ids = [
        (pos, word)
        for pos, word in enumerate(alignment.word_ids[: scores.shape[-1]])
        if word is not None
    ]
    if not ids:
        return scores.new_zeros(len(alignment.words))
    positions = torch.tensor([p for p, _ in ids], device=scores.device)
    words = torch.tensor([w for _, w in ids], device=scores.device)
    values = scores[positions]
    out = scores.new_zeros(len(alignment.words))
    if reduce == "max":
        return out.fill_(float("-inf")).scatter_reduce(0, words, values, "amax")
    out = out.index_add(0, words, values)
    if reduce == "mean":
        out = out / torch.bincount(words, minlength=len(alignment.words)).clamp(min=1)
    return out


def word_scores(
    scores: torch.Tensor, alignment: WordAlignment, reduce: str = "sum", content: bool = True
) -> torch.Tensor:
    """A text's token scores -> its word scores [words], by :func:`aggregate_to_words`.

    ``scores``: [content], at the positions of the text's encoding that belong to a word, in
    order (an attribution's scores at ``batch.content_mask``); with ``content=False``
    [positions], at every position of the encoding, special tokens included (a transformer's
    attention over its keys). Raises when their number is not the text's.
    """
    word_ids = [word for word in alignment.word_ids if word is not None or not content]
    if scores.shape[-1] != len(word_ids):
        raise InvalidInputError(
            f"{scores.shape[-1]} scores for a text of {len(word_ids)} tokens: the text is not "
            f"the one the scores were computed on (has the dataset changed since the run?)"
        )
    return aggregate_to_words(scores, WordAlignment(alignment.words, word_ids), reduce)


def word_alignment(tokenizer, text: str, max_length: int) -> WordAlignment:
    """Align a fast transformers tokenizer's tokens of ``text`` (as the model sees them,
    truncated to ``max_length``) with the text's words."""
    encoding = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True)
    word_ids = encoding.word_ids()
    spans: dict[int, list[int]] = {}
    for (start, end), word in zip(encoding["offset_mapping"], word_ids, strict=True):
        if word is not None:
            spans.setdefault(word, [start, end])[1] = end
    order = sorted(spans)
    remap = {word: i for i, word in enumerate(order)}
    words = [text[spans[w][0] : spans[w][1]] for w in order]
    return WordAlignment(
        words,
        [None if w is None else remap[w] for w in word_ids],
        [(spans[w][0], spans[w][1]) for w in order],
    )


def classic_alignment(tokens: Sequence[str]) -> WordAlignment:
    """The classic pipeline's tokens are words already: ``<SOS> w1 ... wn <EOS>``."""
    return WordAlignment(list(tokens[1:-1]), [None, *range(len(tokens) - 2), None])


def text_alignment(pipeline, text: str) -> WordAlignment:
    """The words of ``text`` and, per position of ``pipeline``'s encoding of it (specials
    included), the word it belongs to; ``pipeline`` is a classic ``TextPipeline`` (its tokens
    are the words) or a ``WordpieceTokenizer``."""
    if hasattr(pipeline, "align"):
        return pipeline.align(text)
    return classic_alignment(pipeline.tokens(text))


def pieces_to_tokens(
    weights: Sequence[float],
    piece_offsets: Sequence[tuple[int, int]],
    token_offsets: Sequence[tuple[int, int]],
) -> list[float]:
    """Move weights of a subword tokeniser's pieces onto another tokenisation of the same
    text: each piece's weight goes to the token whose character span holds the piece's first
    character (special tokens, with an empty span, and pieces between tokens give theirs to
    none). Offsets are (start, end) into the same string. Returns one weight per token.
    """
    starts = [start for start, _ in token_offsets]
    out = [0.0] * len(token_offsets)
    for weight, (start, end) in zip(weights, piece_offsets, strict=True):
        if end <= start:
            continue
        token = bisect.bisect_right(starts, start) - 1
        if token >= 0 and start < token_offsets[token][1]:
            out[token] += float(weight)
    return out
