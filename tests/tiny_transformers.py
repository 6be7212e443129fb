"""Tiny randomly initialised transformers of several families, built from configs (nothing is
downloaded), shared by the hook and adapter tests."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from transformers import (
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    BertConfig,
    DistilBertConfig,
    ElectraConfig,
    GPT2Config,
    LlamaConfig,
    PretrainedConfig,
    RobertaConfig,
    ViTConfig,
)

from attnexplain.hooks import layer_site

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4}
# A larger init than the default 0.02 makes attention peaked, so interventions visibly matter.
PEAKED = {"initializer_range": 0.3}
LAYERS = [layer_site(0), layer_site(1)]


@dataclass(frozen=True)
class Arch:
    config: PretrainedConfig
    causal: bool = False
    image: bool = False


ARCHS = {
    "bert": Arch(BertConfig(**TINY, **PEAKED, intermediate_size=64, vocab_size=100)),
    "roberta": Arch(
        RobertaConfig(**TINY, **PEAKED, intermediate_size=64, vocab_size=100, pad_token_id=0)
    ),
    "distilbert": Arch(
        DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, vocab_size=100, **PEAKED)
    ),
    "electra": Arch(
        ElectraConfig(**TINY, **PEAKED, embedding_size=32, intermediate_size=64, vocab_size=100)
    ),
    "gpt2": Arch(
        GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100, pad_token_id=0, **PEAKED),
        causal=True,
    ),
    "llama": Arch(
        LlamaConfig(
            **TINY,
            **PEAKED,
            num_key_value_heads=2,  # grouped-query attention: 2 key/value heads for 4 queries
            intermediate_size=64,
            vocab_size=100,
            pad_token_id=0,
        ),
        causal=True,
    ),
    "vit": Arch(
        ViTConfig(**TINY, **PEAKED, intermediate_size=64, image_size=16, patch_size=8),
        image=True,
    ),
}
TEXT_ARCHS = [name for name, arch in ARCHS.items() if not arch.image]


@functools.cache
def tiny_model(name: str, attn_implementation: str | None = None):
    arch = ARCHS[name]
    auto = AutoModelForImageClassification if arch.image else AutoModelForSequenceClassification
    torch.manual_seed(0)
    return auto.from_config(arch.config, attn_implementation=attn_implementation).eval()


def eager_twin(name: str):
    """The same weights, loaded with transformers' own eager attention."""
    eager = tiny_model(name, "eager")
    eager.load_state_dict(tiny_model(name).state_dict())
    return eager


def tiny_bert_checkpoint():
    """A checkpoint of the tiny random-init BERT with a wordpiece tokenizer of four syllables
    (``ba ko ti mu`` and their ``##`` continuations), for experiments on a transformer."""
    from transformers import BertTokenizerFast

    from attnexplain.models.checkpoint import Checkpoint
    from attnexplain.models.hf import HFClassifier, WordpieceTokenizer

    syllables = ["ba", "ko", "ti", "mu"]
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        *sorted({*syllables, *("##" + s for s in syllables)}),
    ]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)})
    return Checkpoint(
        HFClassifier(tiny_model("bert")), WordpieceTokenizer(tokenizer), ["class0", "class1"]
    )
