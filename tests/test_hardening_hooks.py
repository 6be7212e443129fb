"""Defects users found in the hooks and the transformers adapter: ALBERT's shared layers,
ModernBERT's layer types, and the import direction between the hooks and the adapter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import (
    AlbertConfig,
    AutoModelForSequenceClassification,
    BertConfig,
    ModernBertConfig,
)

import attnexplain
from attnexplain.data import Framing, collate
from attnexplain.errors import HookError
from attnexplain.hooks import (
    HookTarget,
    capture,
    intervene,
    layer_site,
    list_sites,
    transformers_backend,
    uniform,
)
from attnexplain.models.hf import HFClassifier
from tests.tiny_transformers import LAYERS, PEAKED, TINY, tiny_model

SHARED = "shares its attention modules across its 2 layers"


def _model(config, attn_implementation: str | None = None) -> nn.Module:
    """A fresh tiny classifier (seeded, eval mode) that a test may change."""
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(
        config, attn_implementation=attn_implementation
    ).eval()


def _albert() -> nn.Module:
    """Two layers running ALBERT's one shared layer group."""
    return _model(AlbertConfig(**TINY, **PEAKED, embedding_size=16, intermediate_size=64))


def _modernbert_config(pooling: str = "cls") -> ModernBertConfig:
    """Three layers, full / sliding (a window of 4 tokens) / full attention."""
    return ModernBertConfig(
        **{**TINY, "num_hidden_layers": 3},
        **PEAKED,
        intermediate_size=64,
        vocab_size=100,
        local_attention=4,
        global_attn_every_n_layers=2,
        classifier_pooling=pooling,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        cls_token_id=1,
        sep_token_id=2,
    )


def _batch():
    """Two [CLS] ... [SEP] sequences, the second padded: token_ids [2, 9]."""
    return collate([[5, 6, 7, 8, 9, 10, 11], [5, 12, 13, 14]], framing=Framing(0, 1, 1))


def _inputs() -> dict[str, torch.Tensor]:
    batch = _batch()
    return {"input_ids": batch.token_ids, "attention_mask": batch.padding_mask}


# 1. ALBERT: one attention module runs at every layer.


def test_albert_is_refused_rather_than_given_one_site_for_two_layers():
    albert = _albert()
    with pytest.raises(HookError, match=f"AlbertForSequenceClassification {SHARED}"):
        list_sites(albert)
    with pytest.raises(HookError, match=SHARED), capture(albert):
        albert(**_inputs())
    with pytest.raises(HookError, match=SHARED), intervene(albert, {layer_site(0): uniform()}):
        albert(**_inputs())


def test_hf_classifier_on_albert_refuses_a_site_layer():
    with pytest.raises(HookError, match=SHARED):
        HFClassifier(_albert(), site_layer=0).encode(_batch())


def test_a_module_registered_under_two_layers_is_refused():
    bert = _model(BertConfig(**TINY, intermediate_size=64, vocab_size=100))
    layers = bert.bert.encoder.layer
    layers[1].attention.self = layers[0].attention.self
    with pytest.raises(HookError, match=r"shares one attention module \(BertSelfAttention\)"):
        list_sites(bert)


def test_a_module_run_twice_in_one_forward_pass_is_an_error(monkeypatch):
    # Sharing that only shows when the model runs: the session's check after every pass.
    monkeypatch.setattr(transformers_backend, "_shared_attention", lambda model: None)
    albert = _albert()
    assert list_sites(albert) == [layer_site(0)]
    with pytest.raises(HookError, match="more than once in one forward pass"), capture(albert):
        albert(**_inputs())
    with (
        pytest.raises(HookError, match="more than once in one forward pass"),
        intervene(albert, {layer_site(0): uniform()}),
    ):
        albert(**_inputs())


# 2. ModernBERT: its layer loop reads each layer's attention type.


@pytest.mark.parametrize("layer", [-1, 0, 1])
def test_modernbert_decodes_its_own_attention_like_the_plain_forward(layer):
    model, batch = HFClassifier(_model(_modernbert_config()), site_layer=layer), _batch()
    with torch.no_grad():
        plain = model.forward_batch(batch)
        state = model.encode(batch)
        decoded = model.decode(state, model.attention(state))
    torch.testing.assert_close(decoded, plain, atol=1e-5, rtol=0)


def test_modernbert_candidates_decode_fast_as_in_full():
    model, batch = HFClassifier(_model(_modernbert_config()), site_layer=0), _batch()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        state = model.encode(batch)
        scores = torch.randn(2, 3, *state.attention.shape[1:], generator=generator)
        padding = ~batch.padding_mask.bool()[:, None, None, :]
        candidates = torch.softmax(scores.masked_fill(padding, float("-inf")), dim=-1)
        fast = model.decode(state, candidates)
        full = model._site_split().decode(state, candidates, fast=False)
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=0)


def test_modernbert_capture_equals_eager_output_attentions():
    config = _modernbert_config()
    model, eager = _model(config), _model(config, "eager")
    with torch.no_grad(), capture(model) as cache:
        logits = model(**_inputs()).logits
    with torch.no_grad():
        reference = eager(**_inputs(), output_attentions=True)
    assert list(cache) == [layer_site(i) for i in range(3)]
    for layer, expected in enumerate(reference.attentions):
        torch.testing.assert_close(cache[layer_site(layer)], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(logits, reference.logits, atol=1e-6, rtol=0)


def test_a_classifier_that_pools_every_row_is_refused():
    model = HFClassifier(_model(_modernbert_config(pooling="mean")))
    with pytest.raises(HookError, match="classifier_pooling='mean'"):
        model.encode(_batch())


# 3. The adapter depends on the hooks, never the reverse.

# `attnexplain/__init__.py` imports the whole toolkit (the adapter too), so the package is
# registered bare to see what `attnexplain.hooks` itself imports.
_IMPORT_THE_HOOKS_ALONE = """
import sys, types
package = types.ModuleType("attnexplain")
package.__path__ = [{path!r}]
sys.modules["attnexplain"] = package
import attnexplain.hooks
print(" ".join(name for name in sys.modules if name.startswith("attnexplain.models")))
"""


def test_the_hooks_do_not_import_the_transformers_adapter():
    code = _IMPORT_THE_HOOKS_ALONE.format(path=str(Path(attnexplain.__file__).parent))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert "attnexplain.models.hf" not in done.stdout.split()


class _Wrapper(nn.Module):
    """A third-party wrapper that the hooks reach through the protocol alone."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def hooked_module(self) -> nn.Module:
        return self.inner


def test_an_hf_classifier_is_hooked_through_the_model_it_wraps():
    inner = tiny_model("bert")
    classifier = HFClassifier(inner)
    assert isinstance(classifier, HookTarget)
    assert list_sites(classifier) == list_sites(_Wrapper(classifier)) == LAYERS
    with torch.no_grad(), capture(_Wrapper(classifier)) as outer, capture(inner) as cache:
        classifier.forward_batch(_batch())
    assert list(cache) == list(outer) == LAYERS
    torch.testing.assert_close(outer[layer_site(1)], cache[layer_site(1)], atol=0, rtol=0)
