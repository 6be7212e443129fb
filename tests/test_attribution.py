"""attnexplain.attribution on a classic model and on tiny random transformers: every method,
and the properties that pin each family down (IG completeness, leave-one-out by hand,
rollout and flow on known graphs, norm-based attention against the module's own output)."""

from __future__ import annotations

import pytest
import torch

from attnexplain.attribution import (
    attention_flow,
    attention_rollout,
    attribute,
    get_method,
    list_methods,
    residual_attention,
)
from attnexplain.attribution.adapter import EmbeddingForward
from attnexplain.attribution.attention_graph import max_over_outputs, output_positions
from attnexplain.attribution.erasure import erase
from attnexplain.attribution.norms import contribution_vectors, site_projections
from attnexplain.data import Framing, collate
from attnexplain.errors import HookError, InvalidInputError, UnknownNameError
from attnexplain.hooks import capture, list_sites
from attnexplain.models import ClassicConfig, ClassicModel
from attnexplain.models.hf import HFClassifier
from tests.tiny_transformers import tiny_model

CLASSIC_SEQUENCES = [[2, 5, 6, 7, 3], [2, 8, 9, 10, 11, 12, 13, 3]]
BERT_SEQUENCES = [[1, 5, 6, 7, 2], [1, 8, 9, 10, 11, 12, 13, 2]]
FRAMED = Framing(0, 1, 1)  # <SOS> ... <EOS> and [CLS] ... [SEP] alike, pad id 0


@pytest.fixture(scope="module")
def classic():
    torch.manual_seed(0)
    model = ClassicModel(ClassicConfig(vocab_size=40, embed_dim=16, hidden_size=8)).eval()
    return model, collate(CLASSIC_SEQUENCES)


@pytest.fixture(scope="module")
def bert():
    return HFClassifier(tiny_model("bert")), collate(BERT_SEQUENCES, framing=FRAMED)


@pytest.fixture(params=["classic", "bert"])
def family(request):
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("method", list_methods())
def test_every_method_gives_masked_finite_scores_on_both_families(family, method):
    model, batch = family
    result = attribute(model, batch, method)
    assert result.method == method
    assert result.scores.shape == batch.token_ids.shape
    assert torch.equal(result.content_mask, batch.content_mask)
    assert (result.scores[~batch.content_mask] == 0).all()
    assert result.scores.isfinite().all()
    assert [len(tokens) for tokens in result.tokens] == batch.lengths.tolist()


def test_attributions_know_their_tokens_and_make_a_tidy_frame(classic):
    model, batch = classic

    class Names:
        def decode(self, ids):
            return [f"w{i}" for i in ids]

    result = attribute(model, batch, "attention", pipeline=Names())
    assert result.tokens[0] == ["w2", "w5", "w6", "w7", "w3"]
    frame = result.to_frame(first_instance=10)
    assert list(frame.columns) == ["instance", "position", "token", "method", "score"]
    assert len(frame) == int(batch.content_mask.sum())
    first = frame[frame["instance"] == 10]
    assert first["token"].tolist() == ["w5", "w6", "w7"]
    assert first["position"].tolist() == [0, 1, 2]
    assert first["score"].tolist() == pytest.approx(result.scores[0, 1:4].tolist())


def _target_probability(model, batch, embedded, target) -> torch.Tensor:
    """p_target for given input embeddings, through the model's own forward path."""
    with torch.no_grad():
        if isinstance(model, HFClassifier):
            logits = model.model(inputs_embeds=embedded, attention_mask=batch.padding_mask).logits
        else:
            state = model.encode(batch.token_ids, batch.lengths, batch.content_mask, embedded)
            logits = model.decode(state, model.attention(state))
    return model.probabilities(logits).gather(-1, target.unsqueeze(-1)).squeeze(-1)


def test_integrated_gradients_is_complete_within_captums_delta(family):
    model, batch = family
    result = attribute(model, batch, "integrated-gradients", n_steps=100)
    with torch.no_grad():
        probabilities = model.probabilities(model.forward_batch(batch))
    target = probabilities.argmax(-1)
    words = (
        model.model.get_input_embeddings() if isinstance(model, HFClassifier) else model.embedding
    )
    with torch.no_grad():
        # The baseline: content tokens' embeddings zeroed, special tokens kept.
        baseline = words(batch.token_ids) * ~batch.content_mask.unsqueeze(-1)
    difference = probabilities.gather(-1, target.unsqueeze(-1)).squeeze(-1) - _target_probability(
        model, batch, baseline, target
    )
    delta = result.convergence_delta
    assert delta.shape == (len(batch),)
    assert (delta.abs() < 1e-3).all()
    assert torch.allclose(result.scores.sum(-1), difference, atol=float(delta.abs().max()) + 1e-5)


def test_integrated_gradients_runs_its_steps_in_chunks_that_fit_the_memory_bound(
    family, monkeypatch
):
    from attnexplain.attribution import captum_methods
    from attnexplain.attribution.adapter import input_forward

    model, batch = family
    whole = attribute(model, batch, "integrated-gradients", n_steps=20)
    forward = input_forward(model, batch)
    per_row = captum_methods.saved_bytes_per_row(forward, *forward.inputs(batch))
    assert per_row > 0
    # a bound of three rows' activations: 40 rows in chunks of three, then 2 (one step of the
    # batch at least)
    sizes = []
    original = captum_methods.EmbeddingForward.forward
    monkeypatch.setattr(captum_methods, "GRADIENT_CHUNK_BYTES", 3 * per_row)
    monkeypatch.setattr(
        captum_methods.EmbeddingForward,
        "forward",
        lambda self, content, *rest: sizes.append(len(content)) or original(self, content, *rest),
    )
    chunked = attribute(model, batch, "integrated-gradients", n_steps=20)
    assert max(sizes[1:]) == 2 and sum(sizes[1:]) >= 40  # [0]: the measuring pass
    torch.testing.assert_close(chunked.scores, whole.scores, atol=1e-6, rtol=1e-5)


def test_a_classic_baseline_is_the_pad_token(classic):
    model, batch = classic
    padded = batch.token_ids.masked_fill(batch.content_mask, 0)
    target = torch.zeros(len(batch), dtype=torch.long)
    with torch.no_grad():
        from_ids = model.probabilities(model(padded, batch.lengths, batch.content_mask))[:, 0]
    content, trailing = EmbeddingForward(model).inputs(batch)
    zero = EmbeddingForward(model)(torch.zeros_like(content), *trailing)[:, 0]
    assert torch.allclose(from_ids, zero.detach(), atol=1e-6)
    assert torch.allclose(zero.detach(), _target_probability(model, batch, trailing[0], target))


def test_leave_one_out_equals_one_forward_per_deleted_token(family):
    model, batch = family
    scores = attribute(model, batch, "leave-one-out").scores
    sequences = CLASSIC_SEQUENCES if isinstance(model, ClassicModel) else BERT_SEQUENCES
    with torch.no_grad():
        for row, ids in enumerate(sequences):
            full = model.probabilities(model.forward_batch(collate([ids], framing=FRAMED)))
            for position in range(1, len(ids) - 1):
                deleted = ids[:position] + ids[position + 1 :]
                logits = model.forward_batch(collate([deleted], framing=FRAMED))
                expected = 0.5 * (model.probabilities(logits) - full).abs().sum()
                assert scores[row, position].item() == pytest.approx(expected.item(), abs=1e-6)


def test_erase_deletes_content_tokens_and_keeps_special_ones(classic):
    _, batch = classic
    keep = torch.ones(2, batch.token_ids.shape[1], dtype=torch.bool)
    keep[0, 2] = False  # second content token of row 1
    keep[1, 1:6] = False
    erased = erase(batch, torch.tensor([1, 0]), keep, pad=0)
    assert erased.token_ids.tolist() == [[2, 8, 10, 11, 12, 13, 3], [2, 3, 0, 0, 0, 0, 0]]
    assert erased.lengths.tolist() == [7, 2]
    assert erased.content_mask.sum(-1).tolist() == [5, 0]
    assert erased.index.tolist() == [1, 0]


def test_rollout_of_identity_attention_is_the_identity():
    identity = torch.eye(6).expand(2, 3, 4, 6, 6)
    assert torch.equal(attention_rollout(identity), torch.eye(6).expand(2, 6, 6))


def test_rollout_multiplies_residual_layers_and_flow_of_one_layer_is_its_row():
    patterns = torch.softmax(
        torch.randn(1, 2, 3, 4, 4, generator=torch.Generator().manual_seed(0)), -1
    )
    layers = residual_attention(patterns)
    assert torch.allclose(layers.sum(-1), torch.ones(1, 2, 4))
    assert torch.allclose(layers[0, 0], 0.5 * patterns[0, 0].mean(0) + 0.5 * torch.eye(4))
    assert torch.allclose(attention_rollout(patterns)[0], layers[0, 1] @ layers[0, 0])
    # One layer: the only path from input j to output q is the edge of capacity A[q, j].
    third = torch.tensor([[False, False, True, False]])
    flow = attention_flow(patterns[:, :1], torch.tensor([4]), third)
    assert torch.allclose(flow[0, 2], layers[0, 0, 2].float(), atol=1e-6)
    assert (flow[0, [0, 1, 3]] == 0).all()  # rows not asked for are not computed


def test_flow_of_identity_attention_reaches_only_the_token_itself():
    identity = torch.eye(5).expand(1, 2, 2, 5, 5)
    first = torch.tensor([[True, False, False, False, False]])
    flow = attention_flow(identity, torch.tensor([4]), first)
    assert flow[0, 0].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_max_over_outputs_normalises_the_selected_rows_and_skips_the_rest():
    matrices = torch.tensor([[[1.0, 1.0, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 3.0]]])
    lengths, query = torch.tensor([2]), torch.tensor([1])
    every = output_positions(query, lengths, 3, "max-over-outputs")
    assert every.tolist() == [[True, True, False]]  # row 2 is padding
    assert torch.allclose(max_over_outputs(matrices, every), torch.tensor([[0.5, 2 / 3, 0.0]]))
    row = output_positions(query, lengths, 3, "row")
    assert torch.allclose(max_over_outputs(matrices, row), torch.tensor([[1 / 3, 2 / 3, 0.0]]))


def test_rollout_and_flow_scored_by_hand_at_one_row_and_at_every_output():
    """Two layers, two tokens, one head. With the residual, A_1 = [[.5, .5], [0, 1]] and
    A_2 = [[1, 0], [.5, .5]]: rollout A_2 A_1 = [[.5, .5], [.25, .75]]. Flow into output 0:
    .5 from each input (one path each, through layer-1 token 0); into output 1: .5 from input
    0, .5 + .5 from input 1 (through both layer-1 tokens), i.e. [1/3, 2/3] once normalised."""
    patterns = torch.tensor([[[0.0, 1.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])[None, :, None]
    lengths, cls = torch.tensor([2]), torch.tensor([0])
    row = output_positions(cls, lengths, 2, "row")
    every = output_positions(cls, lengths, 2, "max-over-outputs")
    rollout = attention_rollout(patterns)
    assert torch.allclose(max_over_outputs(rollout, row), torch.tensor([[0.5, 0.5]]))
    assert torch.allclose(max_over_outputs(rollout, every), torch.tensor([[0.5, 0.75]]))
    flow = attention_flow(patterns, lengths, every)
    assert torch.allclose(flow, torch.tensor([[[0.5, 0.5], [0.5, 1.0]]]))
    assert torch.allclose(max_over_outputs(flow, row), torch.tensor([[0.5, 0.5]]))
    assert torch.allclose(max_over_outputs(flow, every), torch.tensor([[0.5, 2 / 3]]))


def test_max_over_outputs_scoring_reaches_rollout_and_flow_through_the_registry(bert):
    model, batch = bert
    with capture(model) as cache:
        model.forward_batch(batch)
    rollout = attention_rollout(torch.stack([cache[site] for site in list_sites(model)], 1))
    expected = (
        torch.stack([rollout[b, :n].amax(0) for b, n in enumerate(batch.lengths.tolist())])
        * batch.content_mask
    )
    scores = attribute(model, batch, "attention-rollout", scoring="max-over-outputs").scores
    assert torch.allclose(scores, expected, atol=1e-6)
    for method in ("attention-rollout", "attention-flow"):
        assert "scoring" in get_method(method).parameters
        at_row = attribute(model, batch, method).scores
        at_max = attribute(model, batch, method, scoring="max-over-outputs").scores
        assert (at_max >= at_row - 1e-6).all() and (at_max > at_row + 1e-3).any()


@pytest.mark.parametrize("method", ["attention-rollout", "attention-flow"])
def test_rollout_and_flow_name_the_scorings_they_take(family, method):
    model, batch = family
    with pytest.raises(InvalidInputError, match="max-over-outputs"):
        attribute(model, batch, method, scoring="column")


@pytest.mark.parametrize("scoring", ["row", "max-over-outputs"])
@pytest.mark.parametrize("method", ["attention-rollout", "attention-flow"])
def test_rollout_and_flow_of_a_classic_model_are_its_attention(classic, method, scoring):
    model, batch = classic
    expected = attribute(model, batch, "attention").scores
    assert torch.equal(attribute(model, batch, method, scoring=scoring).scores, expected)


def test_grad_attention_is_attention_times_the_probability_gradient_summed_over_heads(bert):
    """alpha * d p_target / d alpha at the [CLS] row of the last layer, by plain autograd
    through transformers' forward and the captured (non-leaf) pattern."""
    model, batch = bert
    target = torch.tensor([1, 0])
    with capture(model, detach=False) as cache:
        probabilities = torch.softmax(model.forward_batch(batch), -1)
    pattern = cache[list_sites(model)[-1]]
    (gradient,) = torch.autograd.grad(probabilities[torch.arange(2), target].sum(), pattern)
    expected = (pattern * gradient)[:, :, 0].sum(1).detach() * batch.content_mask
    scores = attribute(model, batch, "grad-attention", target=target).scores
    assert torch.allclose(scores, expected, atol=1e-6)
    assert (scores < 0).any() and (scores > 0).any()  # signed


def test_attention_heads_aggregate_or_select(bert):
    model, batch = bert
    mean = attribute(model, batch, "attention").scores
    highest = attribute(model, batch, "attention", heads="max").scores
    heads = [attribute(model, batch, "attention", heads=h).scores for h in range(4)]
    assert torch.allclose(torch.stack(heads).mean(0), mean, atol=1e-6)
    assert torch.allclose(torch.stack(heads).amax(0), highest)
    with pytest.raises(InvalidInputError, match="head index"):
        attribute(model, batch, "attention", heads=4)


def test_classic_norms_add_up_to_the_context_vector(classic):
    model, batch = classic
    vectors = contribution_vectors(model, batch)
    with torch.no_grad():
        state = model.encode(batch.token_ids, batch.lengths, batch.content_mask)
        context = torch.einsum("bt,bth->bh", model.attention(state), state.hidden)
    assert torch.allclose(vectors.sum(1), context, atol=1e-6)
    norms = attribute(model, batch, "attention-norm").scores
    assert torch.allclose(norms, vectors.norm(dim=-1), atol=1e-6)


@pytest.mark.parametrize("name", ["bert", "distilbert", "llama"])
def test_transformer_norm_vectors_add_up_to_the_output_projection(name):
    """sum_j alpha_qj f(x_j) + b_O is what the attention block's output projection gives at the
    row the classifier reads (Kobayashi et al.'s decomposition)."""
    model = HFClassifier(tiny_model(name))
    causal = name == "llama"
    batch = collate(BERT_SEQUENCES, framing=Framing(0, 0, 0) if causal else FRAMED)
    _, _, output = site_projections(model)
    grabbed = {}
    handle = output.register_forward_hook(lambda m, args, out: grabbed.setdefault("out", out))
    try:
        with torch.no_grad():
            model.forward_batch(batch)
            vectors = contribution_vectors(model, batch)
    finally:
        handle.remove()
    rows = batch.lengths - 1 if causal else torch.zeros(2, dtype=torch.long)
    expected = grabbed["out"][torch.arange(2), rows]
    bias = 0 if output.bias is None else output.bias
    assert torch.allclose(vectors.sum(1) + bias, expected, atol=1e-5)


def test_norm_attention_names_the_supported_families():
    model = HFClassifier(tiny_model("gpt2"))
    batch = collate(BERT_SEQUENCES, framing=Framing(0, 0, 0))
    with pytest.raises(HookError, match="BERT, RoBERTa"):
        attribute(model, batch, "attention-norm")


def test_jw_gradient_detaches_attention(classic):
    model, batch = classic
    result = attribute(model, batch, "jw-gradient").scores
    embedded = model.embedding(batch.token_ids).detach().requires_grad_()
    state = model.encode(batch.token_ids, batch.lengths, batch.content_mask, embedded)
    logits = model.decode(state, model.attention(state).detach())
    probabilities = model.probabilities(logits)
    chosen = probabilities.gather(-1, probabilities.argmax(-1, keepdim=True)).sum()
    (gradient,) = torch.autograd.grad(chosen, embedded)
    expected = (gradient * embedded).sum(-1).abs() * batch.content_mask
    expected = expected / expected.sum(-1, keepdim=True)
    assert torch.allclose(result, expected.detach(), atol=1e-6)
    assert torch.allclose(result.sum(-1), torch.ones(2))


def test_an_explicit_target_is_explained(classic):
    model, batch = classic
    for target in (0, 1):
        targets = torch.full((2,), target)
        result = attribute(model, batch, "integrated-gradients", target=targets)
        assert result.convergence_delta.abs().max() < 1e-3
    zero = attribute(model, batch, "input-x-gradient", target=torch.zeros(2, dtype=torch.long))
    one = attribute(model, batch, "input-x-gradient", target=1)
    assert torch.allclose(zero.scores, -one.scores, atol=1e-6)  # p_0 = 1 - p_1
    with pytest.raises(InvalidInputError, match="one per row"):
        attribute(model, batch, "saliency", target=torch.zeros(3, dtype=torch.long))


def test_unknown_method_lists_the_known_ones(classic):
    model, batch = classic
    with pytest.raises(UnknownNameError, match="integrated-gradients"):
        attribute(model, batch, "shapley")


def test_methods_are_listed_by_family():
    assert list_methods("erasure") == ["leave-one-out"]
    assert set(list_methods("captum")) < set(list_methods())
    with pytest.raises(UnknownNameError, match="attention, gradient"):
        list_methods("gradients")


def test_bad_options_target_and_model_are_clear_errors(classic):
    model, batch = classic
    with pytest.raises(InvalidInputError, match="takes n_steps; got steps"):
        attribute(model, batch, "integrated-gradients", steps=3)
    with pytest.raises(InvalidInputError, match="does not explain a class"):
        attribute(model, batch, "attention", target=torch.zeros(2, dtype=torch.long))
    with pytest.raises(InvalidInputError, match="ClassicModel, AttentionCNN and HFClassifier"):
        attribute(torch.nn.Linear(2, 2), batch, "attention")
