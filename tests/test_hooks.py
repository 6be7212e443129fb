"""attnexplain.hooks on tiny random transformers (built from configs, nothing downloaded) and on
the classic models."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BartConfig,
    DebertaV2Config,
    MPNetConfig,
)

from attnexplain.data import collate
from attnexplain.errors import AttnExplainError, HookError, InvalidInputError
from attnexplain.hooks import (
    CLASSIC_SITE,
    Site,
    capture,
    intervene,
    layer_site,
    list_sites,
    permute,
    replace,
    run_with_cache,
    uniform,
    zero_keys,
)
from attnexplain.hooks.transformers_backend import ATTN_IMPLEMENTATION, hooked_attention_forward
from attnexplain.models import ClassicConfig, ClassicModel, uniform_attention
from tests.tiny_transformers import ARCHS, LAYERS, TINY, eager_twin, tiny_model


def _inputs(name: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    if ARCHS[name].image:
        return {"pixel_values": torch.randn(2, 3, 16, 16, generator=generator)}
    # Right padding, pad id 0, so every query row keeps at least one allowed key.
    input_ids = torch.randint(2, 100, (3, 8), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    attention_mask[2, 7:] = 0
    return {"input_ids": input_ids * attention_mask, "attention_mask": attention_mask}


def _allowed(name: str, inputs: dict[str, torch.Tensor], keys: int) -> torch.Tensor:
    """[batch, 1, queries, keys] bool: unpadded keys, inside the causal triangle for decoders."""
    mask = inputs.get("attention_mask")
    allowed = torch.ones(1, 1, keys, keys, dtype=torch.bool)
    if mask is not None:
        allowed = allowed & mask.bool()[:, None, None, :]
    if ARCHS[name].causal:
        allowed = allowed & torch.ones(keys, keys, dtype=torch.bool).tril()
    return allowed


def _logits(model, inputs) -> torch.Tensor:
    return model(**inputs).logits


def _identity(pattern: torch.Tensor, call) -> torch.Tensor:
    return pattern


@pytest.mark.parametrize("name", ARCHS)
def test_capture_equals_eager_output_attentions(name):
    model, inputs = tiny_model(name), _inputs(name)
    assert model.config._attn_implementation == "sdpa"
    with torch.no_grad(), capture(model) as cache:
        logits = _logits(model, inputs)
    with torch.no_grad():
        reference = eager_twin(name)(**inputs, output_attentions=True)
    assert list(cache) == LAYERS
    for layer, expected in enumerate(reference.attentions):
        assert cache[layer_site(layer)].shape == expected.shape
        torch.testing.assert_close(cache[layer_site(layer)], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(logits, reference.logits, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ARCHS)
def test_capturing_some_query_rows_forms_only_those_rows(name, monkeypatch):
    from attnexplain.hooks import transformers_backend

    model, inputs = tiny_model(name), _inputs(name)
    with torch.no_grad(), capture(model) as whole:
        expected = _logits(model, inputs)
    formed = []
    probabilities = transformers_backend._probabilities
    monkeypatch.setattr(
        transformers_backend,
        "_probabilities",
        lambda query, *args: formed.append(query.shape[2]) or probabilities(query, *args),
    )
    with torch.no_grad(), capture(model, LAYERS[-1], queries=[0, -1]) as rows:
        logits = _logits(model, inputs)
    # one call, at the captured site, of two rows: the other layer ran fused attention
    assert formed == [2]
    pattern = whole[LAYERS[-1]]
    torch.testing.assert_close(rows[LAYERS[-1]], pattern[:, :, [0, -1]], atol=1e-6, rtol=0)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


def test_row_captures_beside_whole_captures_and_interventions_read_their_own_rows():
    model, inputs = tiny_model("llama"), _inputs("llama")
    with torch.no_grad(), capture(model) as whole, capture(model, queries=-1) as last:
        model(**inputs)
    for site in LAYERS:
        torch.testing.assert_close(last[site], whole[site][:, :, -1:], atol=0, rtol=0)
    shuffle = permute(torch.Generator().manual_seed(0))
    with torch.no_grad(), intervene(model, {LAYERS[0]: shuffle}), capture(model) as changed:
        model(**inputs)
    shuffle = permute(torch.Generator().manual_seed(0))
    shuffled = intervene(model, {LAYERS[0]: shuffle})
    with torch.no_grad(), shuffled, capture(model, LAYERS[1], queries=3) as row:
        model(**inputs)
    torch.testing.assert_close(row[LAYERS[1]], changed[LAYERS[1]][:, :, 3:4], atol=1e-6, rtol=0)
    with pytest.raises(HookError, match="no query rows"), capture(_classic(), queries=-1):
        pass


@pytest.mark.parametrize("name", ARCHS)
def test_identity_intervention_leaves_logits_unchanged(name):
    model, inputs = tiny_model(name), _inputs(name)
    with torch.no_grad():
        expected = _logits(model, inputs)
        with intervene(model, dict.fromkeys(LAYERS, _identity)):
            got = _logits(model, inputs)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("make", [uniform, lambda: permute(torch.Generator().manual_seed(0))])
def test_uniform_and_permuted_attention_change_logits(name, make):
    model, inputs = tiny_model(name), _inputs(name)
    with torch.no_grad():
        expected = _logits(model, inputs)
        with intervene(model, {site: make() for site in LAYERS}):
            got = _logits(model, inputs)
    assert (got - expected).abs().max() > 1e-3


@pytest.mark.parametrize("name", ARCHS)
def test_gradient_reaches_a_replacement_tensor(name):
    model, inputs = tiny_model(name), _inputs(name)
    with torch.no_grad(), capture(model, sites=layer_site(1)) as cache:
        expected = _logits(model, inputs)
    weights = cache[layer_site(1)].clone().requires_grad_(True)
    with intervene(model, {layer_site(1): replace(weights)}):
        logits = _logits(model, inputs)
    logits.sum().backward()
    torch.testing.assert_close(logits.detach(), expected, atol=1e-6, rtol=0)
    assert weights.grad is not None and weights.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["bert", "gpt2"])
@pytest.mark.parametrize("implementation", [None, "eager"])
def test_the_models_own_attention_implementation_is_restored(name, implementation):
    model, inputs = tiny_model(name, implementation), _inputs(name)
    before = model.config._attn_implementation
    with capture(model), intervene(model, {layer_site(0): uniform()}):
        assert model.config._attn_implementation == ATTN_IMPLEMENTATION
    assert model.config._attn_implementation == before
    with pytest.raises(RuntimeError, match="inside the block"), capture(model):
        raise RuntimeError("inside the block")
    assert model.config._attn_implementation == before

    def failing(pattern, call):
        raise RuntimeError("inside the forward pass")

    with (
        pytest.raises(RuntimeError, match="inside the forward pass"),
        intervene(model, {layer_site(0): failing}),
    ):
        model(**inputs)
    assert model.config._attn_implementation == before
    with torch.no_grad(), capture(model) as cache:
        model(**inputs)
    assert len(cache) == 2  # the model is still hookable after the failures


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama"])
def test_permutation_keeps_mass_on_unpadded_keys_and_in_the_causal_triangle(name):
    model, inputs = tiny_model(name), _inputs(name)
    site = layer_site(0)
    with torch.no_grad():
        with capture(model, sites=site) as original:
            model(**inputs)
        shuffle = permute(torch.Generator().manual_seed(0))
        with intervene(model, {site: shuffle}), capture(model, sites=site) as permuted:
            model(**inputs)
    before, after = original[site], permuted[site]
    allowed = _allowed(name, inputs, before.shape[-1]).expand_as(before)
    assert after[~allowed].abs().max() == 0
    torch.testing.assert_close(after.sum(-1), torch.ones_like(after.sum(-1)))
    # Each row holds the same weights, moved among its allowed keys; most rows did move.
    torch.testing.assert_close(after.sort(-1).values, before.sort(-1).values)
    assert (after != before).any(-1).float().mean() > 0.5


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_uniform_and_zeroed_keys_stay_on_allowed_keys(name):
    model, inputs = tiny_model(name), _inputs(name)
    site = layer_site(0)
    with torch.no_grad():
        with intervene(model, {site: uniform()}), capture(model, sites=site) as flat:
            model(**inputs)
        with intervene(model, {site: zero_keys([0])}), capture(model, sites=site) as zeroed:
            model(**inputs)
    allowed = _allowed(name, inputs, flat[site].shape[-1]).expand_as(flat[site])
    expected = allowed / allowed.sum(-1, keepdim=True)
    torch.testing.assert_close(flat[site], expected.float())
    assert zeroed[site][..., 0].abs().max() == 0
    assert zeroed[site][~allowed].abs().max() == 0
    rows = zeroed[site].sum(-1)
    # Only a decoder's first query row, which may attend to key 0 alone, is left empty.
    expected_rows = torch.ones_like(rows)
    if ARCHS[name].causal:
        expected_rows[:, :, 0] = 0
    torch.testing.assert_close(rows, expected_rows)


def test_a_selection_intervenes_on_those_heads_and_query_rows_only():
    model, inputs = tiny_model("bert"), _inputs("bert")
    site = Site(layer_site(1), heads=[1, 3], queries=0)
    assert str(site) == "layers.1.attn.pattern[heads=1,3; queries=0]"
    with torch.no_grad():
        with capture(model) as original:
            model(**inputs)
        with intervene(model, {str(site): uniform()}), capture(model) as changed:
            model(**inputs)
    before, after = original[layer_site(1)], changed[layer_site(1)]
    touched = torch.zeros_like(before, dtype=torch.bool)
    touched[:, [1, 3], 0] = True
    torch.testing.assert_close(after[~touched], before[~touched])
    assert not torch.allclose(after[touched], before[touched])
    assert changed[str(site)].shape == (3, 2, 1, 8)
    torch.testing.assert_close(changed[layer_site(0)], original[layer_site(0)])


def test_an_intervention_function_sees_the_site_and_its_allowed_keys():
    model, inputs = tiny_model("gpt2"), _inputs("gpt2")
    seen = []

    def spy(pattern, call):
        seen.append((call.name, pattern.shape, call.allowed.clone()))
        return pattern

    with torch.no_grad(), intervene(model, {"layers.1.attn.pattern[queries=-1]": spy}):
        model(**inputs)
    [(name, shape, allowed)] = seen
    assert name == "layers.1.attn.pattern[queries=-1]"
    assert shape == (3, 4, 1, 8) and allowed.shape == shape
    assert allowed[:, 0, 0].tolist() == inputs["attention_mask"].bool().tolist()


def test_run_with_cache_and_the_cache_of_several_forward_passes():
    model, inputs = tiny_model("bert"), _inputs("bert")
    with torch.no_grad():
        output, cache = run_with_cache(model, **inputs)
        torch.testing.assert_close(output.logits, _logits(model, inputs))
        with capture(model, sites=[layer_site(0)]) as repeated:
            model(**inputs)
            model(input_ids=inputs["input_ids"][:1, :4])
    assert list(repeated) == [layer_site(0)]
    assert [p.shape[0] for p in repeated.all(layer_site(0))] == [3, 1]
    assert repeated[layer_site(0)].shape == (1, 4, 4, 4)
    assert not cache[layer_site(0)].requires_grad
    with pytest.raises(KeyError, match="no attention recorded"):
        repeated[layer_site(1)]


@pytest.mark.parametrize(
    "config",
    [
        DebertaV2Config(**TINY, intermediate_size=64, vocab_size=100),
        MPNetConfig(**TINY, intermediate_size=64, vocab_size=100),
    ],
    ids=["deberta-v2", "mpnet"],
)
def test_a_model_that_bypasses_the_attention_interface_is_refused(config):
    model = AutoModelForSequenceClassification.from_config(config)
    before = model.config._attn_implementation
    model_name = type(model).__name__
    for enter in (lambda: capture(model), lambda: intervene(model, {layer_site(0): uniform()})):
        with pytest.raises(HookError, match=f"{model_name} does not dispatch"), enter():
            pass
    with pytest.raises(HookError, match="AttentionInterface"):
        list_sites(model)
    assert model.config._attn_implementation == before


def test_a_model_transformers_will_not_switch_is_refused(monkeypatch):
    model = AutoModelForSequenceClassification.from_config(ARCHS["bert"].config)
    # transformers' own source heuristic says no: set_attn_implementation only logs a line.
    monkeypatch.setattr(type(model), "_can_set_attn_implementation", classmethod(lambda _: False))
    with pytest.raises(HookError, match="refused to switch"), capture(model):
        pass
    assert model.config._attn_implementation == "sdpa"


def test_a_forward_pass_that_skips_the_hooked_attention_is_an_error():
    model, inputs = tiny_model("bert"), _inputs("bert")
    with pytest.raises(HookError, match="without calling"), capture(model):
        model.set_attn_implementation("sdpa")  # switched back by hand inside the block
        model(**inputs)
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize(
    ("site", "message"),
    [
        ("layers.7.attn.pattern", "no attention site 'layers.7.attn.pattern'"),
        ("blocks.0.attn.hook_pattern", "its sites are layers.0.attn.pattern"),
        ("layers.0.attn.pattern[head=1]", "heads=... and/or queries="),
        ("layers.0.attn.pattern[heads=a]", "comma-separated integers"),
        ("layers.0 attn", "cannot read site name"),
    ],
)
def test_an_unknown_or_malformed_site_is_a_typed_error(site, message):
    model = tiny_model("bert")
    with pytest.raises(HookError, match=message), intervene(model, {site: uniform()}):
        pass
    assert isinstance(HookError(""), AttnExplainError)


def test_selecting_a_head_that_does_not_exist_fails_in_the_forward_pass():
    model, inputs = tiny_model("bert"), _inputs("bert")
    with (
        pytest.raises(HookError, match="selects head 4, but there are only 4"),
        intervene(model, {"layers.0.attn.pattern[heads=4]": uniform()}),
    ):
        model(**inputs)


def test_bad_intervention_results_are_input_errors():
    model, inputs = tiny_model("bert"), _inputs("bert")
    cases = [
        (replace(torch.ones(5)), "do not broadcast"),
        (lambda pattern, call: pattern[..., :3], "must return a tensor of shape"),
        (zero_keys(torch.ones(3, 2, dtype=torch.bool)), r"\[batch, keys\]"),
        (zero_keys([9]), "out of range"),
    ]
    for fn, message in cases:
        with pytest.raises(InvalidInputError, match=message), intervene(model, {LAYERS[0]: fn}):
            model(**inputs)
    with (
        pytest.raises(InvalidInputError, match="must be a function"),
        intervene(model, {LAYERS[0]: "uniform"}),
    ):
        pass


def test_site_names_parse_and_print_canonically():
    assert Site.parse("layers.3.attn.pattern") == Site("layers.3.attn.pattern")
    parsed = Site.parse(" layers.3.attn.pattern[queries=0 ; heads=2,0] ")
    assert parsed == Site("layers.3.attn.pattern", heads=(2, 0), queries=(0,))
    assert Site.parse(str(parsed)) == parsed
    with pytest.raises(HookError, match="empty heads selection"):
        Site("layers.0.attn.pattern", heads=[])


def test_encoder_decoder_sites_are_named_by_module_path():
    config = BartConfig(
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        vocab_size=100,
    )
    model = AutoModelForSequenceClassification.from_config(config).eval()
    sites = list_sites(model)
    assert sites == [
        "model.encoder.layers.0.self_attn.pattern",
        "model.decoder.layers.0.self_attn.pattern",
        "model.decoder.layers.0.encoder_attn.pattern",
    ]
    input_ids = torch.tensor([[5, 6, 7, 8, 2]])  # BART classifies at the final EOS (id 2)
    with torch.no_grad(), capture(model) as cache:
        model(input_ids=input_ids)
    assert list(cache) == sites
    assert cache[sites[2]].shape == (1, 4, 5, 5)


def test_the_attention_function_handles_boolean_masks_and_refuses_unmodelled_options():
    module = tiny_model("bert").bert.encoder.layer[0].attention.self
    query, key, value = torch.randn(3, 2, 4, 5, 8).unbind(0)
    allowed = torch.rand(2, 1, 5, 5) > 0.3
    allowed[..., 0] = True
    additive = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    with_bool = hooked_attention_forward(module, query, key, value, allowed)
    with_float = hooked_attention_forward(module, query, key, value, additive)
    torch.testing.assert_close(with_bool, with_float)
    with pytest.raises(HookError, match="softcap"):
        hooked_attention_forward(module, query, key, value, None, softcap=30.0)


def test_only_models_the_hooks_know_are_accepted():
    with pytest.raises(HookError, match="got Linear"), capture(torch.nn.Linear(2, 2)):
        pass


# Classic models: the same verbs, one site ("attention"), patterns [batch, tokens].


def _classic(attention_mode: str = "learned") -> ClassicModel:
    torch.manual_seed(0)
    config = ClassicConfig(
        vocab_size=50, embed_dim=16, hidden_size=8, attention_mode=attention_mode
    )
    return ClassicModel(config).eval()


def _classic_batch():
    return collate([[2, 11, 12, 13, 14, 3], [2, 21, 22, 3], [2, 31, 32, 33, 3]])


def test_classic_capture_and_identity():
    model, batch = _classic(), _classic_batch()
    args = (batch.token_ids, batch.lengths, batch.content_mask)
    with torch.no_grad():
        expected = model(*args)
        state = model.encode(*args)
        with capture(model) as cache, intervene(model, {CLASSIC_SITE: _identity}):
            got = model(*args)
    assert list_sites(model) == [CLASSIC_SITE]
    assert torch.equal(got, expected)
    assert torch.equal(cache[CLASSIC_SITE], model.attention(state))
    with pytest.raises(HookError, match="its pattern has none"):
        cache["attention[heads=0]"]


def test_classic_uniform_intervention_equals_the_uniformtiny_model():
    learned, batch = _classic(), _classic_batch()
    flat = _classic("uniform")
    flat.load_state_dict(learned.state_dict(), strict=False)  # all but the attention scorer
    args = (batch.token_ids, batch.lengths, batch.content_mask)
    with torch.no_grad():
        with intervene(learned, {CLASSIC_SITE: uniform()}):
            got = learned(*args)
        assert not torch.allclose(got, learned(*args))
        assert torch.equal(got, flat(*args))


def test_classic_permutation_gradient_and_misuse():
    model, batch = _classic(), _classic_batch()
    args = (batch.token_ids, batch.lengths, batch.content_mask)
    with torch.no_grad(), intervene(model, {CLASSIC_SITE: permute()}), capture(model) as cache:
        model(*args)
    assert cache[CLASSIC_SITE][~batch.content_mask].abs().max() == 0
    weights = torch.full(batch.token_ids.shape, 0.25, requires_grad=True)
    with intervene(model, {CLASSIC_SITE: replace(weights)}):
        model(*args).sum().backward()
    assert weights.grad.abs().sum() > 0
    with (
        pytest.raises(HookError, match="no heads or query rows"),
        intervene(model, {"attention[heads=0]": uniform()}),
    ):
        pass
    with (
        pytest.raises(HookError, match="bypasses the site"),
        intervene(model, {CLASSIC_SITE: uniform()}),
    ):
        model(*args, attention=uniform_attention(batch.content_mask))
