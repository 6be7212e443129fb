"""Decoder LMs: the next-token adapter, generation with the KV cache, explaining every
generated token, and attention sinks, on tiny random-init Llama (GQA), Qwen2, GPT-2 and Gemma
with word-level tokenizers (nothing is downloaded)."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    BertConfig,
    GemmaConfig,
    GPT2Config,
    LlamaConfig,
    Qwen2Config,
)

from attnexplain import explain_generation
from attnexplain.attribution import attribute
from attnexplain.attribution.attnlrp import attnlrp
from attnexplain.data import Framing, collate
from attnexplain.data.text import TextPipeline, Vocabulary
from attnexplain.errors import HookError, InvalidInputError, UnknownNameError
from attnexplain.experiments import get_experiment
from attnexplain.experiments.sinks import (
    attention_sinks,
    figure_sinks,
    sink_positions,
    sink_shares,
    summarise_sinks,
)
from attnexplain.hooks import capture, intervene, layer_site, uniform
from attnexplain.models.causal_lm import NextTokenLM
from attnexplain.models.checkpoint import Checkpoint
from attnexplain.models.classic import ClassicConfig, ClassicModel
from attnexplain.models.generation import generate, generation_steps
from attnexplain.models.hf import HFClassifier, WordpieceTokenizer
from tests.conftest import run_cli
from tests.test_attnlrp import relevance_and_softmax_share
from tests.tiny_transformers import PEAKED, TINY, tiny_bert_checkpoint
from tests.user_models import _tokenizer

WORDS = [
    "mary",
    "john",
    "went",
    "to",
    "the",
    "kitchen",
    "garden",
    "office",
    "took",
    "apple",
    "milk",
    "dropped",
    "where",
    "is",
]
PROMPT = "mary went to the kitchen john took the apple"
CAUSAL = ("llama", "qwen2", "gpt2", "gemma")


@functools.cache
def tokenizer(name: str):
    """GPT-2's framing (no special tokens) or Llama's (``<s>`` first), over :data:`WORDS`."""
    return _tokenizer("gpt2" if name == "gpt2" else "llama", WORDS)


@functools.cache
def causal_lm(name: str):
    """A tiny random-init causal LM (seed 0), vocabulary of :func:`tokenizer`."""
    common = {**PEAKED, "vocab_size": len(tokenizer(name)), "pad_token_id": 0}
    config = {
        "llama": lambda: LlamaConfig(**TINY, **common, num_key_value_heads=2, intermediate_size=64),
        "qwen2": lambda: Qwen2Config(**TINY, **common, num_key_value_heads=2, intermediate_size=64),
        "gemma": lambda: GemmaConfig(
            **TINY, **common, num_key_value_heads=1, head_dim=8, intermediate_size=64
        ),
        "gpt2": lambda: GPT2Config(n_embd=32, n_layer=2, n_head=4, **common),
    }[name]()
    config.eos_token_id = None  # generate the full length
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def _prefix_batch(ids: list[int]):
    return collate([ids], framing=Framing(0, 0, 0))


# --- the adapter -------------------------------------------------------------------------


@pytest.mark.parametrize("name", CAUSAL)
def test_the_adapter_reads_the_last_real_token_and_decodes_its_own_attention(name):
    lm = causal_lm(name)
    model = HFClassifier(NextTokenLM(lm))
    batch = collate([[5, 6, 7, 8, 9, 10], [5, 12, 13]], framing=Framing(0, 0, 0))
    with torch.no_grad():
        plain = model.forward_batch(batch)
        alone = torch.stack(
            [
                lm(input_ids=torch.tensor([ids])).logits[0, -1]
                for ids in ([5, 6, 7, 8, 9, 10], [5, 12, 13])
            ]
        )
        state = model.encode(batch)
        fast = model.decode(state, model.attention(state))
        full = model._site_split().decode(state, model.attention(state), fast=False)
    assert plain.shape == (2, lm.config.vocab_size) and model.num_classes == lm.config.vocab_size
    torch.testing.assert_close(plain, alone, atol=1e-5, rtol=0)
    assert model._site_split().row_decode_blocker() is None
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(full, plain, atol=1e-5, rtol=0)


def test_candidates_are_the_classes():
    lm = causal_lm("llama")
    model = HFClassifier(NextTokenLM(lm, candidates=[7, 3, 9]))
    batch = _prefix_batch([5, 6, 7])
    with torch.no_grad():
        logits = model.forward_batch(batch)
        whole = lm(input_ids=batch.token_ids).logits[0, -1]
    assert model.num_classes == 3
    torch.testing.assert_close(logits[0], whole[[7, 3, 9]], atol=1e-5, rtol=0)
    scores = attribute(model, batch, "jw-gradient", target=1).scores
    assert scores.shape == (1, 3) and scores.isfinite().all()
    with pytest.raises(InvalidInputError, match="candidates"):
        NextTokenLM(lm, candidates=[10_000])


# --- generation --------------------------------------------------------------------------


@pytest.mark.parametrize("name", CAUSAL)
def test_cached_generation_gives_the_uncached_tokens_and_logits(name):
    lm, prompt = causal_lm(name), torch.tensor(tokenizer(name)(PROMPT)["input_ids"])
    cached, uncached = generate(lm, prompt, 5), generate(lm, prompt, 5, use_cache=False)
    assert cached.tokens.tolist() == uncached.tokens.tolist()
    torch.testing.assert_close(cached.logits, uncached.logits, atol=1e-5, rtol=0)
    sampled = generate(lm, prompt, 5, do_sample=True, seed=3)
    assert (
        sampled.tokens.tolist() == generate(lm, prompt, 5, do_sample=True, seed=3).tokens.tolist()
    )


@pytest.mark.parametrize("name", ("llama", "gpt2"))
def test_intervening_at_one_step_changes_that_step_and_not_the_earlier_ones(name):
    """Uniform attention at the site for the query of step 2 only (recognised by its number of
    keys): steps 0-1 keep their logits, step 2's equal those of the prefix intervened at its
    last row in one uncached pass."""
    lm, prompt = causal_lm(name), torch.tensor(tokenizer(name)(PROMPT)["input_ids"])
    plain = generate(lm, prompt, 4)
    forced = plain.tokens.tolist()
    step, site = 2, layer_site(1)
    keys = len(prompt) + step
    everywhere = uniform()

    def at_step(pattern, call):
        return (
            everywhere(pattern, call)
            if pattern.shape[-1] == keys and pattern.shape[-2] == 1
            else pattern
        )

    with intervene(lm, {site: at_step}):
        changed = generate(lm, prompt, 4, forced=forced)
    torch.testing.assert_close(changed.logits[:step], plain.logits[:step], atol=1e-5, rtol=0)
    assert (changed.logits[step] - plain.logits[step]).abs().max() > 1e-3
    with torch.no_grad(), intervene(lm, {f"{site}[queries=-1]": uniform()}):
        prefix = lm(input_ids=plain.prefix(step)[None]).logits[0, -1]
    torch.testing.assert_close(changed.logits[step], prefix, atol=1e-5, rtol=0)


# --- explaining every generated token ----------------------------------------------------

METHODS = ("attention", "attention-rollout", "input-x-gradient", "leave-one-out", "attnlrp")


@functools.cache
def explained(name: str, use_cache: bool = True):
    methods = [m for m in METHODS if not (name == "gemma" and m == "attnlrp")]
    return explain_generation(
        causal_lm(name),
        tokenizer(name),
        PROMPT,
        max_new_tokens=4,
        methods=methods,
        use_cache=use_cache,
    )


@pytest.mark.parametrize("name", CAUSAL)
def test_step_k_is_the_prefix_explained_in_one_forward_pass(name):
    result = explained(name)
    lm, prompt = causal_lm(name), len(result.prompt_tokens)
    model = HFClassifier(NextTokenLM(lm))
    ids = tokenizer(name)(PROMPT)["input_ids"] + result.generated_ids
    for k, token in enumerate(result.generated_ids):
        batch = _prefix_batch(ids[: prompt + k])
        for method, matrix in result.scores.items():
            target = (
                token if method not in ("attention", "attention-rollout", "leave-one-out") else None
            )
            expected = attribute(model, batch, method, target=target).scores[0].double().numpy()
            np.testing.assert_allclose(matrix[k, : prompt + k], expected, atol=1e-5, err_msg=method)
            assert np.isnan(matrix[k, prompt + k :]).all()


@pytest.mark.parametrize("name", CAUSAL)
def test_with_the_kv_cache_and_without_the_scores_are_the_same(name):
    cached, uncached = explained(name), explained(name, use_cache=False)
    assert cached.generated_ids == uncached.generated_ids
    for method in cached.scores:
        np.testing.assert_allclose(
            cached.scores[method], uncached.scores[method], atol=1e-5, err_msg=method
        )


def test_leave_one_out_is_rerunning_without_the_token_by_hand():
    result = explained("llama")
    lm, prompt = causal_lm("llama"), len(result.prompt_tokens)
    ids = tokenizer("llama")(PROMPT)["input_ids"] + result.generated_ids
    k = 1
    prefix = ids[: prompt + k]
    with torch.no_grad():
        full = torch.softmax(lm(input_ids=torch.tensor([prefix])).logits[0, -1], -1)
        for position in (0, 3, prompt + k - 1):
            erased = prefix[:position] + prefix[position + 1 :]
            without = torch.softmax(lm(input_ids=torch.tensor([erased])).logits[0, -1], -1)
            expected = 0.5 * (without - full).abs().sum()
            assert result.scores["leave-one-out"][k, position] == pytest.approx(
                float(expected), abs=1e-5
            )


@pytest.mark.parametrize("name", CAUSAL)
def test_leave_one_out_from_the_prefix_cache_equals_rerunning_every_deletion(name, monkeypatch):
    from attnexplain.attribution import decoder_erasure

    tok = tokenizer(name)
    # two rows of different lengths (padded), every token deleted in turn, the last included
    rows = [tok("mary went to the kitchen")["input_ids"], tok("john took the milk")["input_ids"]]
    batch = collate(rows, framing=Framing(0, 0, 0))
    runs = []
    original = decoder_erasure.deletion_probabilities
    monkeypatch.setattr(
        decoder_erasure, "deletion_probabilities", lambda *args: runs.append(1) or original(*args)
    )
    for candidates in (None, tok.convert_tokens_to_ids(["kitchen", "garden", "office"])):
        model = HFClassifier(NextTokenLM(causal_lm(name), candidates))
        assert decoder_erasure.blocker(model) is None
        cached = attribute(model, batch, "leave-one-out").scores
        rerun = attribute(model, batch, "leave-one-out", fast=False).scores
        torch.testing.assert_close(cached, rerun, atol=1e-5, rtol=0)
    assert runs == [1, 1]  # the cached path ran, once per batch
    with capture(model):
        assert "session" in decoder_erasure.blocker(model)


def test_the_frame_and_the_heatmaps():
    result = explained("llama")
    frame = result.to_frame()
    prompt, steps = len(result.prompt_tokens), len(result.generated_tokens)
    per_method = sum(prompt + k for k in range(steps))
    assert len(frame) == per_method * len(result.scores)
    assert list(frame.columns) == [
        "step",
        "generated_token",
        "source_position",
        "source_token",
        "method",
        "score",
    ]
    assert frame["score"].notna().all()
    first = frame[(frame["method"] == "attention") & (frame["step"] == 0)]
    assert first["score"].sum() == pytest.approx(1.0, abs=1e-5)
    assert first["source_token"].tolist() == result.prompt_tokens
    html = result._repr_html_()
    assert html.count('class="heatmap"') == len(result.scores)
    assert "input-x-gradient" in html and result.generated_tokens[0] in html


def test_contrastive_scores_are_the_target_minus_the_foil():
    lm, tok = causal_lm("llama"), tokenizer("llama")
    plain = explain_generation(lm, tok, PROMPT, 2, methods=["input-x-gradient", "attention"])
    contrast = explain_generation(
        lm, tok, PROMPT, 2, methods=["input-x-gradient", "attention"], foil="milk"
    )
    prompt = len(plain.prompt_tokens)
    model = HFClassifier(NextTokenLM(lm))
    batch = _prefix_batch(tok(PROMPT)["input_ids"])
    foil = attribute(model, batch, "input-x-gradient", target=tok.convert_tokens_to_ids("milk"))
    expected = plain.scores["input-x-gradient"][0, :prompt] - foil.scores[0].numpy()
    np.testing.assert_allclose(contrast.scores["input-x-gradient"][0, :prompt], expected, atol=1e-6)
    np.testing.assert_allclose(contrast.scores["attention"], plain.scores["attention"])
    assert contrast.foil == "milk"
    with pytest.raises(InvalidInputError, match="not linear in the output"):
        explain_generation(lm, tok, PROMPT, 2, methods=["jw-gradient"], foil="milk")
    with pytest.raises(InvalidInputError, match="foil must be one token"):
        explain_generation(lm, tok, PROMPT, 2, methods=["input-x-gradient"], foil="milk apple")


def test_a_forced_target_is_explained_token_by_token():
    lm, tok = causal_lm("gpt2"), tokenizer("gpt2")
    result = explain_generation(lm, tok, PROMPT, methods=["attention"], target="where is the milk")
    assert result.generated_tokens == ["where", "is", "the", "milk"]


# --- AttnLRP -----------------------------------------------------------------------------


def _bias_free(name: str) -> HFClassifier:
    model = copy.deepcopy(causal_lm(name))
    with torch.no_grad():
        for parameter_name, parameter in model.named_parameters():
            if parameter_name.endswith("bias") or "wpe" in parameter_name:
                parameter.zero_()
    return HFClassifier(NextTokenLM(model))


@pytest.mark.parametrize("name", ("llama", "qwen2", "gpt2"))  # Gemma: refused, below
def test_attnlrp_relevance_plus_what_the_softmaxes_keep_is_the_next_token_logit(name, monkeypatch):
    """As for classifiers (tests/test_attnlrp.py): bias-free, relevance plus the softmax's
    0.5 (sum s dy/ds - sum x dy/dx) adds up to the explained token's logit."""
    model = _bias_free(name)
    batch = collate([[2, 5, 6, 7, 8], [2, 9, 10, 11, 12, 13, 14]], framing=Framing(0, 0, 0))
    target = torch.tensor([4, 7])
    relevance, kept, softmaxes = relevance_and_softmax_share(model, batch, target, monkeypatch)
    assert softmaxes == 2  # one per layer: the LM head adds none
    with torch.no_grad():
        logits = model.forward_batch(batch).gather(-1, target[:, None])[:, 0]
    torch.testing.assert_close(relevance.sum(-1) + kept, logits, rtol=1e-4, atol=1e-6)


def test_attnlrp_refuses_gemma_norm_clearly():
    model = HFClassifier(NextTokenLM(causal_lm("gemma")))
    with pytest.raises(HookError, match="GemmaRMSNorm"):
        attnlrp(model, _prefix_batch([2, 5, 6]), torch.tensor([3]))


# --- bad input ---------------------------------------------------------------------------


def test_bad_input_is_refused_clearly():
    lm, tok = causal_lm("llama"), tokenizer("llama")
    with pytest.raises(InvalidInputError, match="prompt has no tokens"):
        explain_generation(lm, tok, "   ")
    with pytest.raises(UnknownNameError, match="unknown attribution method 'nope'"):
        explain_generation(lm, tok, PROMPT, methods=["nope"])
    with pytest.raises(HookError, match="has 2 layers; layer 5"):
        explain_generation(lm, tok, PROMPT, layer=5)
    with pytest.raises(InvalidInputError, match="max_new_tokens >= 1"):
        explain_generation(lm, tok, PROMPT, max_new_tokens=0)


def test_a_model_without_supported_attention_or_head_is_refused():
    from transformers import BertModel, DebertaV2Config, DebertaV2ForMaskedLM

    deberta = DebertaV2ForMaskedLM(DebertaV2Config(**TINY, intermediate_size=64, vocab_size=50))
    with pytest.raises(HookError, match="does not dispatch its attention"):
        NextTokenLM(deberta)
    with pytest.raises(InvalidInputError, match="no language-model head"):
        NextTokenLM(BertModel(BertConfig(**TINY, intermediate_size=64, vocab_size=50)))


# --- the command line --------------------------------------------------------------------


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generate") / "llama"
    causal_lm("llama").save_pretrained(folder)
    tokenizer("llama").save_pretrained(folder)
    return folder


def test_explain_generate_prints_a_table_per_method_and_writes_heatmaps(lm_folder, tmp_path):
    args = ["explain", "--generate", "--checkpoint", str(lm_folder), "--max-new-tokens", "2"]
    result = run_cli(*args, "--method", "attention", "--method", "leave-one-out", PROMPT)
    assert result.returncode == 0, result.stderr
    assert "generated:" in result.stdout
    assert "attention" in result.stdout and "leave-one-out" in result.stdout
    page = tmp_path / "generation.html"
    result = run_cli(*args, "--html", str(page), "--foil", "milk", PROMPT)
    assert result.returncode == 0, result.stderr
    assert page.read_text(encoding="utf-8").count('class="heatmap"') == 4


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "nope", PROMPT], "unknown attribution method 'nope'"),
        (["--method", "jw-gradient", "--foil", "milk", PROMPT], "not linear in the output"),
        (["   "], "prompt has no tokens"),
        (["one", "two"], "continues one prompt"),
    ],
)
def test_explain_generate_refuses_bad_input_in_one_line(lm_folder, extra, message):
    result = run_cli("explain", "--generate", "--checkpoint", str(lm_folder), *extra)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1


def test_explain_generate_refuses_a_folder_without_a_causal_lm(tmp_path):
    result = run_cli("explain", "--generate", "--checkpoint", str(tmp_path), PROMPT)
    assert result.returncode == 2 and "does not hold a causal language model" in result.stderr


# --- attention sinks ---------------------------------------------------------------------


def test_the_sink_rule_on_a_planted_pattern():
    """Every row puts half its mass on token 0 and the rest evenly: token 0 is a sink; token
    1 receives less than the threshold; the last keys have too few readers."""
    tokens = 8
    pattern = torch.zeros(1, tokens, tokens)
    for i in range(tokens):
        pattern[0, i, : i + 1] = 0.5 / (i + 1)
        pattern[0, i, 0] += 0.5
    sinks = sink_positions(pattern, threshold=0.3, min_readers=4)
    assert sinks[0].tolist() == [True] + [False] * (tokens - 1)
    assert (
        sink_positions(pattern, threshold=0.01, min_readers=4)[0].tolist()
        == [True] * 4 + [False] * 4
    )


def test_attention_sinks_report_shares_per_head_and_agreement_with_and_without_sinks():
    lm, tok = causal_lm("llama"), tokenizer("llama")
    prompts = [PROMPT, "john went to the garden"]
    report = attention_sinks(lm, tok, prompts, threshold=0.2)
    assert len(report.heads) == len(prompts) * 2 * 4  # prompts x layers x heads
    ids = tok(PROMPT)["input_ids"]
    with torch.no_grad(), capture(lm) as cache:
        lm(input_ids=torch.tensor([ids]))
    first = cache[layer_site(1)][0, :, 1:, 0].mean(-1)
    shown = report.heads.query("prompt == 0 and layer == 1")["first_share"].to_numpy()
    np.testing.assert_allclose(shown, first.numpy(), atol=1e-6)
    assert report.heads["other_sink_share"].between(0, 1).all()
    assert len(report.agreement) == len(prompts) * 4
    assert report.agreement["tau"].between(-1, 1).all()
    left_out = report.agreement["sinks_left_out"]
    unchanged = report.agreement[left_out == 0]
    np.testing.assert_allclose(unchanged["tau"], unchanged["tau_without_sinks"], atol=1e-9)


def test_an_encoders_sinks_are_read_by_every_other_row():
    """Bidirectional: every row but token 2's own puts .6 on token 2 (also the last rows, which
    a causal reading would not count): token 2 is the one sink, and row 0's share of the
    first token is not counted (a token does not read itself)."""
    tokens = 6
    pattern = torch.full((1, tokens, tokens), 0.4 / (tokens - 1))
    pattern[0, :, 2] = 0.6
    pattern[0, 2] = 1 / tokens
    sinks = sink_positions(pattern, threshold=0.5, min_readers=4, causal=False)
    assert sinks[0].tolist() == [False, False, True, False, False, False]
    first, other = sink_shares(pattern, sinks, causal=False)
    expected_first = (1 / tokens + 4 * 0.4 / (tokens - 1)) / (tokens - 1)
    assert first.item() == pytest.approx(expected_first)
    # the sink's own row counts what it keeps on itself, as in a causal pattern
    assert other.item() == pytest.approx((4 * 0.6 + 1 / tokens) / (tokens - 1))


def _sinks_frame(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"text": texts, "label": 0})


def test_the_registered_sinks_experiment_agrees_with_attention_sinks_on_a_decoder():
    """The experiment a plan runs (per instance, every layer and head) gives the first-token
    shares the prompt-level function reports, and the site's taus as J&W's correlation
    computes them; with no sink among the content tokens, leaving sinks out changes no tau."""
    lm, tok = causal_lm("llama"), tokenizer("llama")
    checkpoint = Checkpoint(
        HFClassifier(NextTokenLM(lm, candidates=tok.convert_tokens_to_ids(["kitchen", "garden"]))),
        WordpieceTokenizer(tok),
        ["kitchen", "garden"],
    )
    texts = [PROMPT, "john went to the garden"]
    table = get_experiment("sinks").run(checkpoint, _sinks_frame(texts), progress=False)
    report = attention_sinks(lm, tok, texts)
    by_prompt = report.heads.groupby("prompt")["first_share"].mean().to_numpy()
    np.testing.assert_allclose(table["first_share"], by_prompt, atol=1e-6)
    layer_one = report.heads.query("layer == 1").groupby("prompt")["first_share"].mean()
    np.testing.assert_allclose(table["first_share_layer1"], layer_one, atol=1e-6)
    correlation = get_experiment("jain_wallace.correlation").run(
        checkpoint, _sinks_frame(texts), {"methods": ["jw-gradient"]}, progress=False
    )
    np.testing.assert_allclose(
        table["tau_attention_jw-gradient"], correlation["tau_jw-gradient"], atol=1e-9
    )
    no_sinks = table[table["site_sinks"] == 0]
    np.testing.assert_allclose(
        no_sinks["tau_attention_leave-one-out"],
        no_sinks["tau_attention_leave-one-out_without_sinks"],
    )
    summary = summarise_sinks(table)
    assert {"first-token share", "tau attention vs jw-gradient, sinks left out"} <= set(
        summary["quantity"]
    )
    assert (summary["value_low"] <= summary["value"] + 1e-12).all()
    assert len(figure_sinks(table).axes) == 2


def test_sinks_on_an_encoder_and_a_clear_refusal_for_a_classic_model():
    checkpoint = tiny_bert_checkpoint()
    texts = ["ba ko ti mu ba ko", "mu ti ko ba"]
    table = get_experiment("sinks").run(
        checkpoint, _sinks_frame(texts), {"scores": ["attention"]}, progress=False
    )
    assert table["first_share"].between(0, 1).all() and len(table) == 2
    classic = Checkpoint(
        ClassicModel(ClassicConfig(vocab_size=20, hidden_size=8, embed_dim=8)).eval(),
        TextPipeline(Vocabulary.build([["a", "b"]])),
        ["neg", "pos"],
    )
    with pytest.raises(InvalidInputError, match="classic model has one attention"):
        get_experiment("sinks").run(classic, _sinks_frame(["a b"]), progress=False)


def test_jain_wallace_and_serrano_smith_run_per_generated_step():
    """generation_steps makes each generated token an instance of the registered experiments:
    its prefix the input, the greedy token the prediction, the site row the current
    position's (the attention the cached generation itself gave, as explain_generation reads
    it)."""
    lm, tok = causal_lm("llama"), tokenizer("llama")
    checkpoint, steps = generation_steps(lm, tok, [PROMPT, "john went to the"], max_new_tokens=3)
    assert steps.groupby("prompt")["step"].apply(list).tolist() == [[0, 1, 2], [0, 1, 2]]
    first = steps[steps["prompt"] == 0]
    assert [len(ids) for ids in first["input_ids"]] == [
        len(tok(PROMPT)["input_ids"]) + k for k in range(3)
    ]
    explained = explain_generation(lm, tok, PROMPT, 3, ["attention"])
    assert explained.generated_ids == first["label"].tolist()
    frame = lambda name, **params: get_experiment(name).run(  # noqa: E731
        checkpoint, steps, params or None, progress=False
    )
    correlation = frame("jain_wallace.correlation", methods=["jw-gradient", "leave-one-out"])
    assert (correlation["predicted"] == correlation["label"]).all()  # greedy: the argmax
    rows = explained.scores["attention"]
    np.testing.assert_allclose(
        correlation["max_attention"].to_numpy()[:3], np.nanmax(rows, axis=1), atol=1e-6
    )
    permutation = frame("jain_wallace.permutation", permutations=10)
    assert permutation["median_output_change"].between(0, 1).all()
    adversarial = frame("jain_wallace.adversarial")
    assert len(adversarial) == len(steps)
    zero_top = frame("serrano_smith.zero_top")
    assert len(zero_top) == len(steps)
