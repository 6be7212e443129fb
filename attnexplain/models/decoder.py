"""Small decoder language models trained from scratch on a dataset's words.

No pretrained LM can be downloaded here, so a decoder is built from a transformers config (a
Llama or GPT-2 of a few layers) over a word-level tokenizer of the training split's words, and
trained to say the answer word (:mod:`attnexplain.models.decoder_train`). A text, or a text
pair read J&W's way, becomes the prompt ``<s> passage question`` (the passage alone content,
:class:`~attnexplain.models.hf.WordpieceTokenizer` with ``passage_only`` and
``question_last``), and the model is read as
``HFClassifier(NextTokenLM(lm, candidates=<the class words' token ids>))``: the next-token
distribution over the answers, which every attribution method and experiment explains as a
class. The folder it is saved in is a plain transformers one (``AutoModelForCausalLM``,
``AutoTokenizer``).

>>> model, pipeline = build_decoder(load_dataset("babi-1"), {"decoder": "llama"}, seed=10)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from attnexplain.data.registry import Dataset
from attnexplain.data.text import SPECIAL_TOKENS, Vocabulary, clean_text
from attnexplain.errors import InvalidInputError, UnknownNameError
from attnexplain.models.causal_lm import NextTokenLM
from attnexplain.models.hf import HFClassifier, WordpieceTokenizer

DECODERS = ("llama", "gpt2")
# the tokenizer's special tokens, in id order: padding, unknown word, start of the prompt
PAD_TOKEN, UNK_TOKEN, BOS_TOKEN = "<pad>", "<unk>", "<s>"
# Prompts are at most this many tokens long (bAbI 3's longest passage and question fit).
DECODER_MAX_LENGTH = 1024


@dataclass(frozen=True)
class DecoderConfig:
    """A decoder's architecture: ``decoder`` (``llama`` or ``gpt2``), ``layers`` transformer
    blocks of width ``hidden_size`` with ``heads`` attention heads (the MLP is 4x wide)."""

    decoder: str = "llama"
    layers: int = 2
    hidden_size: int = 128
    heads: int = 4

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise UnknownNameError(
                f"unknown decoder {self.decoder!r}; choose one of {', '.join(DECODERS)}"
            )
        for name in ("layers", "hidden_size", "heads"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.heads:
            raise InvalidInputError(
                f"hidden_size {self.hidden_size} does not split into {self.heads} heads: pick "
                f"a hidden_size that is a multiple of heads"
            )

    def to_dict(self) -> dict[str, str | int]:
        return asdict(self)

    def transformers_config(self, vocab_size: int, max_length: int, tokenizer):
        """The transformers config of this architecture over ``vocab_size`` tokens of
        ``tokenizer`` and prompts of up to ``max_length`` (no dropout)."""
        from transformers import GPT2Config, LlamaConfig

        ids = {
            "vocab_size": vocab_size,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": None,
            # untied: the resumable state is saved as safetensors, which refuses shared memory
            "tie_word_embeddings": False,
        }
        if self.decoder == "gpt2":
            return GPT2Config(
                n_embd=self.hidden_size,
                n_layer=self.layers,
                n_head=self.heads,
                n_positions=max_length,
                resid_pdrop=0.0,
                embd_pdrop=0.0,
                attn_pdrop=0.0,
                **ids,
            )
        return LlamaConfig(
            hidden_size=self.hidden_size,
            intermediate_size=4 * self.hidden_size,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            num_key_value_heads=self.heads,
            max_position_embeddings=max_length,
            **ids,
        )


def split_words(text: str) -> list[str]:
    """The words :func:`word_tokenizer`'s tokenizers cut ``text`` into: lowercased, split at
    spaces and punctuation (bAbI's texts as :func:`~attnexplain.data.text.tokenize` cuts
    them)."""
    normalizer, pre_tokenizer = _word_splitting()
    return [word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))]


def _word_splitting() -> tuple:
    from tokenizers import normalizers, pre_tokenizers

    return normalizers.Lowercase(), pre_tokenizers.Whitespace()


def word_tokenizer(words: Sequence[str]):
    """A transformers ``PreTrainedTokenizerFast`` over ``words`` (ids after ``<pad> <unk>
    <s>``) that cuts texts as :func:`split_words` does and opens each prompt with ``<s>``; a
    pair is ``<s> a b`` (the second text's tokens in segment 1). ``save_pretrained`` /
    ``AutoTokenizer.from_pretrained`` round-trip it."""
    from tokenizers import Tokenizer, models, processors
    from transformers import PreTrainedTokenizerFast

    specials = [PAD_TOKEN, UNK_TOKEN, BOS_TOKEN]
    vocab = {token: i for i, token in enumerate([*specials, *dict.fromkeys(words)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK_TOKEN))
    backend.normalizer, backend.pre_tokenizer = _word_splitting()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A $B:1",
        special_tokens=[(BOS_TOKEN, vocab[BOS_TOKEN])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_input_names=["input_ids", "attention_mask"],
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        bos_token=BOS_TOKEN,
    )


def answer_ids(tokenizer, classes: Sequence[str]) -> list[int]:
    """The token id of each class name: the words the decoder answers with, as they follow
    a prompt (``" positive"``, the word after a space, where the tokenizer makes that one
    token; else the bare word).

    Raises :class:`InvalidInputError` for a class that is not one token of the vocabulary."""
    ids = []
    for name in classes:
        pieces = [
            tokenizer(form, add_special_tokens=False)["input_ids"]
            for form in (f" {str(name).strip()}", str(name).strip())
        ]
        single = [
            piece[0] for piece in pieces if len(piece) == 1 and piece[0] != tokenizer.unk_token_id
        ]
        if not single:
            raise InvalidInputError(
                f"class {name!r} is not one token of the decoder's vocabulary (it is "
                f"{tokenizer.convert_ids_to_tokens(pieces[0])}), so it cannot be the next "
                f"token: name the classes with words that are one token each (e.g. 'positive')"
            )
        ids.append(single[0])
    if len(set(ids)) < len(ids):
        raise InvalidInputError(
            f"the classes {list(classes)} map to the same token twice: name each class with "
            f"its own word"
        )
    return ids


def decoder_reader(
    lm: torch.nn.Module, tokenizer, classes: Sequence[str], max_length: int
) -> tuple[HFClassifier, WordpieceTokenizer]:
    """``lm`` read as a classifier of ``classes`` (their words as the next token), and the
    pipeline that writes its prompts: ``<s> passage question``, the passage alone content.
    Long prompts lose their start, not their end, where the LM answers."""
    model = HFClassifier(NextTokenLM(lm, answer_ids(tokenizer, classes)))
    tokenizer.truncation_side = "left"
    return model, WordpieceTokenizer(tokenizer, max_length, passage_only=True, question_last=True)


def build_decoder(
    dataset: Dataset, architecture: dict, seed: int, max_length: int = DECODER_MAX_LENGTH
) -> tuple[HFClassifier, WordpieceTokenizer]:
    """A fresh decoder (seeded) for ``dataset``, read as a classifier of its classes, and
    the pipeline that feeds it. The vocabulary holds the training split's words (passages
    and questions, at the dataset's minimum document frequency) and the class names."""
    from transformers import AutoModelForCausalLM

    config = DecoderConfig(**architecture)
    texts = [split_words(clean_text(text)) for text in dataset.train["text"]]
    if "text_pair" in dataset.train:
        pairs = [split_words(clean_text(text)) for text in dataset.train["text_pair"]]
        texts = [[*text, *pair] for text, pair in zip(texts, pairs, strict=True)]
    words = Vocabulary.build(texts, min_df=dataset.min_df).itos[len(SPECIAL_TOKENS) :]
    tokenizer = word_tokenizer([*words, *(str(name).lower() for name in dataset.classes)])
    torch.manual_seed(seed)
    lm = AutoModelForCausalLM.from_config(
        config.transformers_config(len(tokenizer), max_length, tokenizer),
        attn_implementation="eager",
    )
    return decoder_reader(lm, tokenizer, dataset.classes, max_length)


def load_decoder(
    directory: str | os.PathLike, classes: Sequence[str], max_length: int
) -> tuple[HFClassifier, WordpieceTokenizer]:
    """The decoder saved in ``directory`` (by :func:`save_decoder`), read as
    :func:`decoder_reader` reads it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = AutoModelForCausalLM.from_pretrained(directory, attn_implementation="eager")
    return decoder_reader(lm, AutoTokenizer.from_pretrained(directory), classes, max_length)


def save_decoder(
    directory: str | os.PathLike, model: HFClassifier, pipeline: WordpieceTokenizer
) -> None:
    """The LM and its tokenizer as ``save_pretrained`` writes them: a plain transformers
    folder."""
    model.model.lm.save_pretrained(directory)
    pipeline.tokenizer.save_pretrained(directory)


def is_decoder(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a causal LM read as a classifier of its next token."""
    return isinstance(model, HFClassifier) and isinstance(model.model, NextTokenLM)
