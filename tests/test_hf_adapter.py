"""The transformers adapter: encode -> attention -> decode at a site, word alignment."""

from __future__ import annotations

import pytest
import torch
from transformers import BertTokenizerFast

from attnexplain.alignment import WordAlignment, aggregate_to_words, classic_alignment
from attnexplain.data import Framing, collate
from attnexplain.errors import HookError, InvalidInputError
from attnexplain.hooks import capture, layer_site
from attnexplain.models.hf import HFClassifier, WordpieceTokenizer
from tests.tiny_transformers import ARCHS, TEXT_ARCHS, tiny_model


def _batch(name: str):
    """Two sequences, the second padded; decoders have no special tokens around content."""
    framing = Framing(0, 0, 0) if ARCHS[name].causal else Framing(0, 1, 1)
    return collate([[5, 6, 7, 8, 9, 10, 11], [5, 12, 13, 14]], framing=framing)


def _masked_softmax(scores: torch.Tensor, batch) -> torch.Tensor:
    allowed = batch.padding_mask.bool().reshape(len(batch), *[1] * (scores.dim() - 2), -1)
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)


@pytest.mark.parametrize("name", TEXT_ARCHS)
@pytest.mark.parametrize("layer", [-1, 0])
def test_decoding_the_own_attention_equals_the_plain_forward(name, layer):
    model, batch = HFClassifier(tiny_model(name), site_layer=layer), _batch(name)
    with torch.no_grad():
        plain = model.forward_batch(batch)
        state = model.encode(batch)
        decoded = model.decode(state, model.attention(state))
    assert torch.allclose(decoded, plain, atol=1e-5)


@pytest.mark.parametrize("name", TEXT_ARCHS)
def test_site_weights_are_the_captured_row_the_classifier_reads(name):
    model, batch = HFClassifier(tiny_model(name)), _batch(name)
    last = layer_site(model.model.config.num_hidden_layers - 1 if name != "distilbert" else 1)
    with torch.no_grad(), capture(model) as cache:
        model.forward_batch(batch)
        state = model.encode(batch)
    rows = batch.lengths - 1 if ARCHS[name].causal else torch.zeros(2, dtype=torch.long)
    expected = cache.all(last)[0][torch.arange(2), :, rows]
    assert torch.allclose(model.attention(state), expected, atol=1e-6)
    assert torch.allclose(state.attention.sum(-1), torch.ones(2, 4), atol=1e-5)
    assert (state.attention[1, :, 4:] == 0).all()  # nothing on padding


@pytest.mark.parametrize("name", TEXT_ARCHS)
def test_many_candidates_decode_like_one_at_a_time_and_uniform_changes_logits(name):
    model, batch = HFClassifier(tiny_model(name)), _batch(name)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        state = model.encode(batch)
        heads, tokens = state.attention.shape[1:]
        candidates = _masked_softmax(torch.randn(2, 3, heads, tokens, generator=generator), batch)
        together = model.decode(state, candidates)
        assert together.shape == (2, 3, 2)
        for k in range(3):
            one = model.decode(state, candidates[:, k])
            assert torch.allclose(together[:, k], one, atol=1e-5)
        plain = model.decode(state, model.attention(state))
    assert (together - plain[:, None]).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["bert", "llama"])
def test_gradients_reach_candidate_attention_through_decode(name):
    model, batch = HFClassifier(tiny_model(name)), _batch(name)
    state = model.encode(batch)
    candidate = model.attention(state).detach().clone().requires_grad_(True)
    model.decode(state, candidate)[:, 1].sum().backward()
    assert candidate.grad is not None and candidate.grad.abs().sum() > 0


def test_decode_leaves_the_model_as_it_was():
    inner = tiny_model("bert")
    model, batch = HFClassifier(inner, site_layer=-1), _batch("bert")
    layers_before = list(inner.bert.encoder.layer)
    implementation = inner.config._attn_implementation
    with torch.no_grad():
        before = model.forward_batch(batch)
        model.decode(model.encode(batch), model.attention(model.encode(batch)))
        after = model.forward_batch(batch)
    assert list(inner.bert.encoder.layer) == layers_before
    assert inner.config._attn_implementation == implementation
    assert torch.equal(before, after)


def test_a_layer_that_does_not_exist_is_a_hook_error():
    model = HFClassifier(tiny_model("bert"), site_layer=7)
    with pytest.raises(HookError, match="has 2 layers; layer 7"):
        model.encode(_batch("bert"))


@pytest.fixture(scope="module")
def tokenizer():
    """A real fast wordpiece tokenizer over a small vocabulary (no download)."""
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "un",
        "##bel",
        "##ie",
        "##va",
        "##bly",
        "boring",
        ",",
        "a",
        "s",
        "##no",
        "##oz",
        "##efe",
        "##st",
        ".",
        "film",
    ]
    wordpiece = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)})
    return WordpieceTokenizer(wordpiece, max_length=32)


def test_wordpieces_align_with_words_and_special_tokens_are_not_content(tokenizer):
    text = "Unbelievably boring, a snoozefest."
    ids = tokenizer.encode(text)
    expected = "[CLS] un ##bel ##ie ##va ##bly boring , a s ##no ##oz ##efe ##st . [SEP]"
    assert tokenizer.decode(ids) == expected.split()
    alignment = tokenizer.align(text)
    assert alignment.words == ["Unbelievably", "boring", ",", "a", "snoozefest", "."]
    assert alignment.word_ids == [None, 0, 0, 0, 0, 0, 1, 2, 3, 4, 4, 4, 4, 4, 5, None]
    assert tokenizer.framing == Framing(0, 1, 1)
    batch = collate([ids], framing=tokenizer.framing)
    assert batch.content_mask[0].tolist() == [False] + [True] * 14 + [False]


def test_a_text_without_tokens_is_an_input_error(tokenizer):
    with pytest.raises(InvalidInputError, match="no tokens"):
        tokenizer.encode("   ")


def test_token_scores_aggregate_to_words():
    alignment = WordAlignment(["great", "film"], [None, 0, 0, 1, None, None])
    scores = torch.tensor([0.5, 0.1, 0.2, 0.3, 0.5, 9.0])
    assert torch.allclose(aggregate_to_words(scores, alignment), torch.tensor([0.3, 0.3]))
    assert torch.allclose(aggregate_to_words(scores, alignment, "mean"), torch.tensor([0.15, 0.3]))
    assert torch.allclose(aggregate_to_words(scores, alignment, "max"), torch.tensor([0.2, 0.3]))
    with pytest.raises(InvalidInputError, match="unknown reduction"):
        aggregate_to_words(scores, alignment, "median")


def test_classic_tokens_are_their_own_words():
    alignment = classic_alignment(["<SOS>", "good", "film", "<EOS>"])
    assert alignment.words == ["good", "film"]
    assert aggregate_to_words(
        torch.tensor([0.0, 0.7, 0.3, 0.0]), alignment
    ).tolist() == pytest.approx([0.7, 0.3])
