"""The fast paths against the generic ones they replace, on random-init models: leave-one-out
and ERASER-style deletions on every classic architecture (each deletion re-run is the
reference), and the transformers decode of the query rows alone (the decode of every row is
the reference)."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from attnexplain.attribution.erasure import erased_probabilities, leave_one_out
from attnexplain.attribution.fast_erasure import blocker
from attnexplain.data import Framing, collate
from attnexplain.faithfulness import comprehensiveness, decision_flip, sufficiency
from attnexplain.hooks import CLASSIC_SITE, capture, intervene, uniform
from attnexplain.models import ClassicConfig, ClassicModel
from attnexplain.models.hf_site import SiteSplit
from tests.tiny_transformers import ARCHS, tiny_model

CLASSIC = list(itertools.product(["lstm", "cnn", "average"], ["additive", "dot"]))


def _sequences(seed: int = 0) -> list[list[int]]:
    """<SOS> ... <EOS> texts of 1 to 20 content tokens: one instance with a single content
    token (nothing left after deleting it), the others longer than the CNN's reach."""
    generator = torch.Generator().manual_seed(seed)
    return [
        [2, *torch.randint(4, 60, (n,), generator=generator).tolist(), 3] for n in (9, 1, 20, 4)
    ]


def _classic(encoder: str, attention: str, mode: str = "learned", classes: int = 2):
    torch.manual_seed(0)
    config = ClassicConfig(
        vocab_size=60,
        num_classes=classes,
        encoder=encoder,
        attention=attention,
        embed_dim=16,
        hidden_size=8,
        attention_mode=mode,
    )
    return ClassicModel(config).eval()


def _close(fast: torch.Tensor, generic: torch.Tensor, atol: float = 1e-6) -> None:
    torch.testing.assert_close(fast, generic, atol=atol, rtol=0, equal_nan=True)


@pytest.mark.parametrize(("encoder", "attention"), CLASSIC)
@pytest.mark.parametrize("mode", ["learned", "uniform"])
def test_fast_leave_one_out_equals_one_rerun_per_deletion(encoder, attention, mode):
    model, batch = _classic(encoder, attention, mode), collate(_sequences())
    assert blocker(model) is None
    fast = leave_one_out(model, batch).scores
    generic = leave_one_out(model, batch, fast=False).scores
    _close(fast, generic)
    # the single content token: nothing is left to attend to, NaN on both paths
    assert fast[1, 1].isnan() and generic[1, 1].isnan()
    assert fast[[0, 2, 3]][batch.content_mask[[0, 2, 3]]].isfinite().all()


@pytest.mark.parametrize("encoder", ["lstm", "cnn", "average"])
def test_fast_leave_one_out_with_several_classes_and_no_framing(encoder):
    """Three classes; content right at both ends of the sequence (no <SOS>/<EOS>), where the
    CNN window and the BiLSTM re-runs start from the sequence's edges."""
    model = _classic(encoder, "additive", classes=3)
    batch = collate(_sequences(1), framing=Framing(0, 0, 0))
    _close(leave_one_out(model, batch).scores, leave_one_out(model, batch, fast=False).scores)


@pytest.mark.parametrize("encoder", ["lstm", "cnn", "average"])
def test_deletions_of_any_set_equal_reruns(encoder):
    model, batch = _classic(encoder, "dot"), collate(_sequences())
    generator = torch.Generator().manual_seed(2)
    rows = torch.tensor([0, 0, 1, 2, 2, 2, 3, 3])
    keep = torch.rand(len(rows), batch.token_ids.shape[1], generator=generator) > 0.4
    keep[1] = True
    keep[1, 5] = False  # a single deletion
    fast = erased_probabilities(model, batch, rows, keep)
    _close(fast, erased_probabilities(model, batch, rows, keep, fast=False))


@pytest.mark.parametrize("encoder", ["lstm", "cnn", "average"])
def test_eraser_metrics_and_decision_flip_equal_reruns(encoder):
    model, batch = _classic(encoder, "additive"), collate(_sequences())
    scores = torch.rand(batch.token_ids.shape, generator=torch.Generator().manual_seed(3))
    for metric in (comprehensiveness, sufficiency):
        _close(metric(model, batch, scores), metric(model, batch, scores, fast=False))
    for k in (1, 3):
        fast = decision_flip(model, batch, scores, k=k)
        torch.testing.assert_close(
            fast, decision_flip(model, batch, scores, k=k, fast=False), equal_nan=True
        )


def test_hooks_send_leave_one_out_down_the_generic_path():
    model, batch = _classic("cnn", "additive"), collate(_sequences())
    plain = leave_one_out(model, batch).scores
    with intervene(model, {CLASSIC_SITE: uniform()}):
        assert "hooks are attached" in blocker(model)
        hooked = leave_one_out(model, batch).scores
        _close(hooked, leave_one_out(model, batch, fast=False).scores)
    assert (hooked - plain).nan_to_num().abs().max() > 1e-4  # the intervention took effect
    assert blocker(model) is None


def test_a_fixed_attention_has_no_fast_path():
    model = _classic("average", "additive", mode="fixed")
    assert "no attention of its own" in blocker(model)


# ------------------------------------------------------------------ transformers decode


def _deeper(name: str, layers: int = 3):
    """A tiny random model of ``name`` with ``layers`` layers, so that a site at layer 0 has
    a layer between it and the last one."""
    config = copy.deepcopy(ARCHS[name].config)
    setattr(config, "n_layer" if name == "gpt2" else "num_hidden_layers", layers)
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config).eval()


def _text_batch(name: str):
    framing = Framing(0, 0, 0) if ARCHS[name].causal else Framing(0, 1, 1)
    return collate([[5, 6, 7, 8, 9, 10, 11], [5, 12, 13, 14], [7, 8, 9]], framing=framing)


def _candidates(state, k: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    heads, tokens = state.attention.shape[1:]
    noise = 2 * torch.randn(len(state.query), k, heads, tokens, generator=generator)
    allowed = state.padding_mask.bool()[:, None, None, :]
    return torch.softmax(noise.masked_fill(~allowed, float("-inf")), -1)


MODELS = {
    "bert": lambda: tiny_model("bert"),
    "distilbert": lambda: tiny_model("distilbert"),
    "gpt2": lambda: tiny_model("gpt2"),
    "llama": lambda: tiny_model("llama"),
    "bert-3-layers": lambda: _deeper("bert"),
    "gpt2-3-layers": lambda: _deeper("gpt2"),
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("layer", [-1, 0, 1])
def test_decoding_the_query_rows_alone_equals_the_full_decode(name, layer):
    inner = MODELS[name]()
    arch = name.split("-")[0]
    split, batch = SiteSplit(inner, layer), _text_batch(arch)
    with torch.no_grad():
        state = split.encode(batch)
        candidates = _candidates(state)
        assert split.row_decode_blocker() is None
        fast = split.decode(state, candidates)
        full = split.decode(state, candidates, fast=False)
        torch.testing.assert_close(fast, full, atol=1e-5, rtol=0)
        # one candidate per instance, and the model's own attention: the plain forward pass
        own = split.decode(state, state.attention)
        plain = inner(input_ids=batch.token_ids, attention_mask=batch.padding_mask).logits
        torch.testing.assert_close(own, plain, atol=1e-5, rtol=0)
        # from the cache: the same again
        torch.testing.assert_close(split.decode(state, candidates), fast, atol=0, rtol=0)
    assert inner.config._attn_implementation not in ("attnexplain", "attnexplain-site-rows")


@pytest.mark.parametrize("name", ["bert-3-layers", "gpt2-3-layers", "llama"])
@pytest.mark.parametrize("layer", [-1, 0])
def test_gradients_of_the_row_decode_equal_those_of_the_full_decode(name, layer):
    inner = MODELS[name]()
    split, batch = SiteSplit(inner, layer), _text_batch(name.split("-")[0])
    with torch.no_grad():
        state = split.encode(batch)
    gradients = []
    for fast in (True, False):
        candidates = _candidates(state).requires_grad_()
        split.decode(state, candidates, fast=fast)[..., 1].sum().backward()
        gradients.append(candidates.grad)
    torch.testing.assert_close(*gradients, atol=1e-5, rtol=0)


def test_a_weight_changed_in_place_is_seen_by_the_next_decode():
    inner = _deeper("bert", 2)
    split, batch = SiteSplit(inner), _text_batch("bert")
    with torch.no_grad():
        state = split.encode(batch)
        candidates = _candidates(state)
        before = split.decode(state, candidates)
        inner.bert.encoder.layer[-1].attention.self.value.weight.mul_(1.5)
        after = split.decode(state, candidates)
        torch.testing.assert_close(after, split.decode(state, candidates, fast=False))
    assert (after - before).abs().max() > 1e-4


def test_an_open_capture_sees_the_site_because_decode_runs_every_row():
    inner = tiny_model("bert")
    split, batch = SiteSplit(inner), _text_batch("bert")
    with torch.no_grad():
        state = split.encode(batch)
        candidates = _candidates(state, k=1)[:, 0]
        with capture(inner, split.site) as cache:
            assert "session is open" in split.row_decode_blocker()
            logits = split.decode(state, candidates)
        torch.testing.assert_close(cache[split.site][torch.arange(3), :, 0], candidates)
        torch.testing.assert_close(logits, split.decode(state, candidates), atol=1e-5, rtol=0)
