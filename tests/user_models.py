"""Model folders as a user would bring them: a random-init transformers sequence classifier of
one architecture, saved with ``save_pretrained`` beside a word-level tokenizer framed the way
that family frames texts and pairs; and a data file of the planted task for them. Nothing is
downloaded."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    BertConfig,
    DebertaV2Config,
    DistilBertConfig,
    ElectraConfig,
    GPT2Config,
    LlamaConfig,
    ModernBertConfig,
    PreTrainedTokenizerFast,
    RobertaConfig,
)

from attnexplain.data.synthetic import make_synthetic
from tests.tiny_transformers import PEAKED, TINY

LABELS = {"id2label": {0: "class0", 1: "class1"}, "label2id": {"class0": 0, "class1": 1}}

# special tokens and how each family frames a text ($A) and a pair ($A, $B)
BERT_FRAME = ("[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1")
FAMILIES = {
    "bert": ("[PAD] [UNK] [CLS] [SEP]", BERT_FRAME, True),
    "electra": ("[PAD] [UNK] [CLS] [SEP]", BERT_FRAME, True),
    "distilbert": ("[PAD] [UNK] [CLS] [SEP]", BERT_FRAME, False),
    "modernbert": ("[PAD] [CLS] [SEP] [UNK]", BERT_FRAME, False),
    "deberta-v2": ("[PAD] [UNK] [CLS] [SEP]", BERT_FRAME, True),
    "roberta": ("<pad> <unk> <s> </s>", ("<s> $A </s>", "<s> $A </s> </s> $B </s>"), False),
    "gpt2": ("<pad> <unk> <|endoftext|>", ("$A", None), False),
    "llama": ("<pad> <unk> <s> </s>", ("<s> $A", "<s> $A $B:1"), False),
}

DECODERS = ("gpt2", "llama")


def _config(name: str, vocab: int):
    common = {**PEAKED, **LABELS, "vocab_size": vocab, "pad_token_id": 0}
    return {
        "bert": lambda: BertConfig(**TINY, **common, intermediate_size=64),
        "electra": lambda: ElectraConfig(**TINY, **common, embedding_size=32, intermediate_size=64),
        "distilbert": lambda: DistilBertConfig(
            dim=32, n_layers=2, n_heads=4, hidden_dim=64, **common
        ),
        "modernbert": lambda: ModernBertConfig(
            **TINY,
            **common,
            intermediate_size=64,
            local_attention=4,
            global_attn_every_n_layers=2,
            classifier_pooling="cls",
            bos_token_id=1,
            eos_token_id=2,
            cls_token_id=1,
            sep_token_id=2,
        ),
        "deberta-v2": lambda: DebertaV2Config(**TINY, **common, intermediate_size=64),
        "roberta": lambda: RobertaConfig(**TINY, **common, intermediate_size=64),
        "gpt2": lambda: GPT2Config(
            n_embd=32, n_layer=2, n_head=4, **common, bos_token_id=2, eos_token_id=2
        ),
        "llama": lambda: LlamaConfig(
            **TINY,
            **common,
            num_key_value_heads=2,
            intermediate_size=64,
            bos_token_id=2,
            eos_token_id=3,
        ),
    }[name]()


def _tokenizer(name: str, words: list[str]) -> PreTrainedTokenizerFast:
    specials, (single, pair), segments = FAMILIES[name]
    special = specials.split()
    vocab = {token: i for i, token in enumerate([*special, *words])}
    unk = next(token for token in special if "unk" in token.lower())
    backend = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    framing = [token for token in special if token not in ("[PAD]", "<pad>", unk)]
    if pair is not None or single != "$A":
        backend.post_processor = processors.TemplateProcessing(
            single=single,
            pair=pair or single,
            special_tokens=[(token, vocab[token]) for token in framing],
        )
    names = ["input_ids", "token_type_ids", "attention_mask"] if segments else None
    roles = {
        "pad_token": special[0],
        "unk_token": unk,
        # decoders name no separator: they cannot join a pair
        **({"cls_token": framing[0], "sep_token": framing[1]} if name not in DECODERS else {}),
        **({"bos_token": framing[0], "eos_token": framing[-1]} if name in DECODERS else {}),
    }
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_input_names=names or ["input_ids", "attention_mask"],
        **roles,
    )


def data_frame(n: int = 80, seed: int = 5) -> pd.DataFrame:
    """``n`` planted-task texts (``text``, ``label`` class0 / class1)."""
    frame = make_synthetic(n=n, seed=seed)
    return frame[["text", "label"]].reset_index(drop=True)


def model_folder(root: Path, name: str, words: list[str] | None = None, classes: int = 2) -> Path:
    """``root/name``: a random-init ``name`` sequence classifier (seed 0) and its tokenizer,
    as ``save_pretrained`` writes them."""
    words = words if words is not None else vocabulary(data_frame())
    tokenizer = _tokenizer(name, words)
    config = _config(name, len(tokenizer))
    if classes != 2:
        config.id2label = {i: f"class{i}" for i in range(classes)}
        config.label2id = {v: k for k, v in config.id2label.items()}
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    folder = root / name
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def causal_lm_folder(root: Path, name: str, words: list[str]) -> Path:
    """``root/name-lm``: a random-init ``name`` causal LM (seed 0, ``gpt2`` or ``llama``) and
    its tokenizer over ``words``, as ``save_pretrained`` writes them."""
    tokenizer = _tokenizer(name, words)
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(_config(name, len(tokenizer)))
    folder = root / f"{name}-lm"
    lm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def vocabulary(frame: pd.DataFrame, columns: tuple[str, ...] = ("text",)) -> list[str]:
    """The distinct whitespace / punctuation words of ``frame``'s text columns, sorted."""
    words = set()
    splitter = pre_tokenizers.Whitespace()
    for column in columns:
        for text in frame[column]:
            words |= {word for word, _ in splitter.pre_tokenize_str(str(text))}
    return sorted(words)


def wordpiece_folder(root: Path, frame: pd.DataFrame) -> Path:
    """``root/bert-wordpiece``: a random-init BERT classifier (seed 0) with a real wordpiece
    tokenizer whose vocabulary is the two-letter syllables of ``frame``'s words (``kaso`` ->
    ``ka ##so``), so every word of the planted task is two wordpieces."""
    from transformers import BertTokenizerFast

    syllables = set()
    for word in vocabulary(frame):
        chunks = [word[i : i + 2] for i in range(0, len(word), 2)]
        syllables |= {chunks[0], *("##" + chunk for chunk in chunks[1:])}
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *sorted(syllables)]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)})
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(_config("bert", len(vocab)))
    folder = root / "bert-wordpiece"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
