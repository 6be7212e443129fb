"""J&W's question-answering / NLI pair models (attnexplain.models.pair) behind the one model
interface: a passage and a question, attention over the passage only, the question part of the
encoded state."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from attnexplain.attribution import attribute
from attnexplain.attribution.erasure import leave_one_out
from attnexplain.attribution.fast_erasure import blocker
from attnexplain.data import bucketed_batches, collate
from attnexplain.data.registry import Dataset
from attnexplain.data.text import (
    PairSequence,
    TextPipeline,
    Vocabulary,
    pair_documents,
    tokenize,
)
from attnexplain.errors import InvalidInputError
from attnexplain.experiments.jain_wallace import run_adversarial, run_correlation, run_permutation
from attnexplain.explain import explain
from attnexplain.hooks import CLASSIC_SITE, capture, intervene, permute, replace, uniform
from attnexplain.metrics import tvd
from attnexplain.models import (
    ClassicConfig,
    ClassicModel,
    PairModel,
    classic_model,
    load_checkpoint,
    save_checkpoint,
)
from attnexplain.models.classic import ATTENTIONS, ENCODERS
from attnexplain.models.hf import WordpieceTokenizer, load_hf
from attnexplain.models.train import TrainConfig, predict_proba, train
from tests.conftest import assert_one_error_line, run_cli
from tests.user_models import model_folder, vocabulary

ARCHITECTURES = [(e, a) for e in ENCODERS for a in ATTENTIONS]

# The toy QA task: a passage of filler words and colour-answer pairs, one per colour; the
# question names a colour, the answer is the word after it. Chance: 1 / 4.
COLOURS = ("red", "green", "blue", "gold")
ANSWERS = ("apple", "boat", "cat", "drum")
FILLER = tuple(f"w{i}" for i in range(20))


def toy_frame(rows: int, seed: int) -> pd.DataFrame:
    """A split of the toy task with the pair columns a pair dataset has (``rationale``: the
    answer token)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rows):
        answers = rng.integers(len(ANSWERS), size=len(COLOURS))
        asked = int(rng.integers(len(COLOURS)))
        items = [[w] for w in rng.choice(FILLER, size=rng.integers(2, 6))]
        items += [[colour, ANSWERS[a]] for colour, a in zip(COLOURS, answers, strict=True)]
        tokens = [w for i in rng.permutation(len(items)) for w in items[i]]
        answer_at = tokens.index(COLOURS[asked]) + 1
        question = ["what", "follows", COLOURS[asked]]
        out.append(
            {
                "text": " ".join(tokens),
                "tokens": tokens,
                "text_pair": " ".join(question),
                "pair_tokens": question,
                "label": int(answers[asked]),
                "rationale": [int(i == answer_at) for i in range(len(tokens))],
            }
        )
    return pd.DataFrame(out)


FRAME = toy_frame(6, seed=5)
PIPELINE = TextPipeline(Vocabulary.build(pair_documents(toy_frame(50, seed=0))))


def _batch(frame: pd.DataFrame = FRAME):
    return collate(PIPELINE.encode_split(frame), frame["label"].tolist())


def _model(encoder="lstm", attention="additive", **kwargs) -> PairModel:
    torch.manual_seed(0)
    config = ClassicConfig(
        vocab_size=len(PIPELINE.vocab),
        num_classes=len(ANSWERS),
        encoder=encoder,
        attention=attention,
        embed_dim=12,
        hidden_size=8,
        pair=True,
        **kwargs,
    )
    return classic_model(config).eval()


# ---------------------------------------------------------------- data plumbing


def test_pair_rows_carry_their_question_through_bucketing():
    frame = toy_frame(40, seed=1)
    sequences = PIPELINE.encode_split(frame)
    assert all(isinstance(s, PairSequence) for s in sequences)
    questions = [PIPELINE.vocab.ids(["<SOS>", *q, "<EOS>"]) for q in frame["pair_tokens"]]
    seen = 0
    for batch in bucketed_batches(sequences, frame["label"].tolist(), batch_size=7, shuffle_seed=3):
        for row, index in enumerate(batch.index.tolist()):
            length = int(batch.pair_lengths[row])
            assert batch.pair_ids[row, :length].tolist() == questions[index]
            assert (batch.pair_ids[row, length:] == 0).all()
            assert int(batch.lengths[row]) == len(frame["tokens"][index]) + 2
            seen += 1
    assert seen == len(frame)
    # A frame without questions encodes as before: plain lists, no pair_ids.
    single = PIPELINE.encode_split(frame.drop(columns=["pair_tokens"]))
    assert type(single[0]) is list and collate(single).pair_ids is None


def test_config_kinds_and_errors():
    assert "pair" not in ClassicConfig(vocab_size=5).to_dict()  # single-text dicts unchanged
    assert ClassicConfig(vocab_size=5, pair=True).to_dict()["pair"] is True
    assert type(classic_model(ClassicConfig(vocab_size=5))) is ClassicModel
    with pytest.raises(InvalidInputError, match="pair=True"):
        PairModel(ClassicConfig(vocab_size=5))
    batch = collate([[2, 5, 6, 3]])  # no question
    with pytest.raises(InvalidInputError, match="reads a question"):
        _model().forward_batch(batch)
    with pytest.raises(InvalidInputError, match="hidden_size must be >= 2"):
        ClassicConfig(vocab_size=5, encoder="average", attention="dot", hidden_size=1, pair=True)


# ---------------------------------------------------------------- the interface


@pytest.mark.parametrize(("encoder", "attention"), ARCHITECTURES)
def test_attention_is_a_distribution_over_passage_content_tokens_only(encoder, attention):
    model, batch = _model(encoder, attention), _batch()
    with torch.no_grad():
        alpha = model.attention(model.encode_batch(batch))
    assert alpha.shape == batch.token_ids.shape
    assert torch.allclose(alpha.sum(-1), torch.ones(len(batch)))
    assert (alpha[~batch.content_mask] == 0).all()
    assert (alpha[batch.content_mask] > 0).all()


@pytest.mark.parametrize(("encoder", "attention"), ARCHITECTURES)
def test_the_question_moves_q_and_the_attention_but_never_its_support(encoder, attention):
    model, batch = _model(encoder, attention), _batch()
    other_questions = [["what", "follows", COLOURS[(i + 1) % 4], "w0"] for i in range(len(FRAME))]
    other_batch = _batch(FRAME.assign(pair_tokens=other_questions))
    assert torch.equal(other_batch.token_ids, batch.token_ids)
    assert other_batch.pair_ids.shape[1] != batch.pair_ids.shape[1]
    with torch.no_grad():
        state, other_state = model.encode_batch(batch), model.encode_batch(other_batch)
        alpha, other_alpha = model.attention(state), model.attention(other_state)
    assert torch.equal(state.hidden, other_state.hidden)  # the passage encoding is the same
    assert not torch.allclose(state.question, other_state.question)
    assert not torch.allclose(alpha, other_alpha)
    assert torch.equal(alpha > 0, batch.content_mask)
    assert torch.equal(other_alpha > 0, batch.content_mask)


@pytest.mark.parametrize(("encoder", "attention"), ARCHITECTURES)
def test_split_decode_equals_forward_and_the_written_out_model(encoder, attention):
    model, batch = _model(encoder, attention), _batch()
    with torch.no_grad():
        fused = model.forward_batch(batch)
        state = model.encode_batch(batch)
        alpha = model.attention(state)
        split = model.decode(state, alpha)
        context = (alpha.unsqueeze(-1) * state.hidden).sum(1)
        written = model.decoder(
            torch.tanh(model.passage_output(context) + model.question_output(state.question))
        )
    assert torch.equal(split, fused)
    assert (split - written).abs().max() < 1e-6


@pytest.mark.parametrize(("encoder", "attention"), ARCHITECTURES)
def test_decoding_candidates_at_once_equals_one_by_one(encoder, attention):
    model, batch = _model(encoder, attention), _batch()
    scores = torch.randn(len(batch), 5, batch.token_ids.shape[1])
    candidates = torch.softmax(scores.masked_fill(~batch.content_mask[:, None], -1e9), -1)
    with torch.no_grad():
        state = model.encode_batch(batch)
        together = model.decode(state, candidates)
        assert together.shape == (len(batch), 5, len(ANSWERS))
        for k in range(5):
            assert (together[:, k] - model.decode(state, candidates[:, k])).abs().max() < 1e-6


@pytest.mark.parametrize("encoder", ENCODERS)
def test_padding_of_passage_or_question_changes_nothing(encoder):
    model, batch = _model(encoder), _batch()
    with torch.no_grad():
        together = model.forward_batch(batch)
        for row in range(len(batch)):
            alone = model.forward_batch(_batch(FRAME.iloc[[row]]))
            assert (together[row] - alone[0]).abs().max() < 1e-5


def test_uniform_mode_attends_evenly_over_the_passage():
    model, batch = _model("lstm", attention_mode="uniform"), _batch()
    assert model.scorer is None
    with torch.no_grad():
        alpha = model.attention(model.encode_batch(batch))
    counts = batch.content_mask.sum(-1, keepdim=True)
    assert torch.allclose(alpha, batch.content_mask / counts)


# ---------------------------------------------------------------- attributions and hooks


@pytest.mark.parametrize("encoder", ENCODERS)
def test_leave_one_out_deletes_passage_tokens_and_keeps_the_question(encoder):
    model, batch = _model(encoder), _batch()
    assert blocker(model) is not None  # the classic fast paths do not apply: generic re-run
    scores = leave_one_out(model, batch).scores
    assert (scores[~batch.content_mask] == 0).all()
    assert (scores[batch.content_mask] > 0).all()
    with torch.no_grad():
        full = model.probabilities(model.forward_batch(batch))
        for row, position in [(0, 1), (3, int(batch.lengths[3]) - 2)]:
            tokens = list(FRAME["tokens"][row])
            del tokens[position - 1]
            erased = FRAME.iloc[[row]].assign(tokens=[tokens])
            output = model.probabilities(model.forward_batch(_batch(erased)))
            assert abs(float(tvd(output[0], full[row])) - float(scores[row, position])) < 1e-5


@pytest.mark.parametrize(("encoder", "attention"), ARCHITECTURES)
def test_gradient_methods_score_passage_content_only(encoder, attention):
    model, batch = _model(encoder, attention), _batch()
    for method in ("jw-gradient", "leave-one-out", "integrated-gradients"):
        result = attribute(model, batch, method)
        assert result.scores.shape == batch.token_ids.shape
        assert (result.scores[~batch.content_mask] == 0).all(), method
        assert result.scores[batch.content_mask].abs().sum() > 0, method
    gradient = attribute(model, batch, "jw-gradient").scores
    assert torch.allclose(gradient.sum(-1), torch.ones(len(batch)))
    # integrated gradients' completeness holds with the question held fixed
    delta = attribute(model, batch, "integrated-gradients").convergence_delta
    assert delta.abs().max() < 1e-2


def test_attnlrp_refuses_the_pair_model():
    with pytest.raises(InvalidInputError, match="pair model"):
        attribute(_model(), _batch(), "attnlrp")


@pytest.mark.parametrize(("encoder", "attention"), ARCHITECTURES)
def test_hooks_capture_and_intervene_on_the_passage_attention(encoder, attention):
    model, batch = _model(encoder, attention), _batch()
    with torch.no_grad():
        state = model.encode_batch(batch)
        own = model.attention(state)
        with capture(model) as cache:
            logits = model.forward_batch(batch)
        assert torch.equal(cache[CLASSIC_SITE], own)
        assert torch.equal(logits, model.decode(state, own))
        with intervene(model, {CLASSIC_SITE: uniform()}):
            flat = model.forward_batch(batch)
        even = batch.content_mask / batch.content_mask.sum(-1, keepdim=True)
        assert (flat - model.decode(state, even)).abs().max() < 1e-6
        with intervene(model, {CLASSIC_SITE: permute()}), capture(model) as cache:
            model.forward_batch(batch)
        shuffled = cache[CLASSIC_SITE]
        assert (shuffled[~batch.content_mask] == 0).all()
        assert torch.allclose(shuffled.sort(-1).values, own.sort(-1).values)
        weights = torch.softmax(torch.randn(batch.token_ids.shape), -1) * batch.content_mask
        with intervene(model, {CLASSIC_SITE: replace(weights)}):
            replaced = model.forward_batch(batch)
        assert (replaced - model.decode(state, weights)).abs().max() < 1e-6


# ---------------------------------------------------------------- training and experiments


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny CNN pair model (hidden 32, as J&W's bAbI models) trained on the toy task, and its
    dataset."""
    dataset = Dataset(
        "toy-pair",
        list(ANSWERS),
        {"train": toy_frame(400, 0), "dev": toy_frame(100, 1), "test": toy_frame(200, 2)},
    )
    out = tmp_path_factory.mktemp("pair") / "cnn"
    config = TrainConfig(epochs=15, batch_size=50, lr=0.01, embeddings="random", embed_dim=16)
    result = train(
        dataset,
        out,
        {"encoder": "cnn", "attention": "additive", "hidden_size": 32, "pair": True},
        config,
        progress=False,
    )
    return result, dataset


def test_a_tiny_pair_model_learns_the_toy_task_and_round_trips(trained, tmp_path):
    result, dataset = trained
    assert result.test["accuracy"] > 0.6  # chance: 0.25
    loaded = load_checkpoint(result.checkpoint)
    assert isinstance(loaded.model, PairModel) and loaded.model.config.pair
    sequences = loaded.pipeline.encode_split(dataset.test)
    probabilities = predict_proba(loaded.model, sequences)
    accuracy = (probabilities.argmax(1) == dataset.test["label"].to_numpy()).mean()
    assert accuracy == pytest.approx(result.test["accuracy"])
    again = load_checkpoint(
        save_checkpoint(tmp_path, loaded.model, loaded.pipeline, loaded.classes)
    )
    assert np.array_equal(predict_proba(again.model, sequences), probabilities)


def test_train_refuses_a_pair_model_without_questions(tmp_path):
    frame = toy_frame(20, 0).drop(columns=["pair_tokens"])
    dataset = Dataset("single", list(ANSWERS), {"train": frame, "dev": frame, "test": frame})
    with pytest.raises(InvalidInputError, match="pair_tokens"):
        train(dataset, tmp_path, {"pair": True}, TrainConfig(embeddings="random"), progress=False)


def test_jain_wallace_experiments_run_unchanged_on_a_pair_model(trained):
    result, dataset = trained
    checkpoint = load_checkpoint(result.checkpoint)
    frame = dataset.test.iloc[:24].reset_index(drop=True)
    correlation = run_correlation(checkpoint, frame, {"batch_size": 8}, progress=False)
    assert len(correlation) == len(frame)
    assert correlation[["tau_jw-gradient", "tau_leave-one-out"]].notna().all().all()
    permutation = run_permutation(
        checkpoint, frame, {"permutations": 10, "batch_size": 8}, progress=False
    )
    assert permutation["median_output_change"].between(0, 1).all()
    adversarial = run_adversarial(
        checkpoint, frame, {"adversaries": 2, "steps": 5, "batch_size": 8}, progress=False
    )
    assert adversarial["eps_max_jsd"].between(0, np.log(2) + 1e-6).all()
    for tokens, adversaries in zip(frame["tokens"], adversarial["adversaries"], strict=True):
        for weights in adversaries:  # SOS, the passage, EOS: the question has no weight
            assert len(weights) == len(tokens) + 2
            assert weights[0] == 0 and weights[-1] == 0


# ---------------------------------------------------------------- the transformer cross-encoder


def test_a_cross_encoder_reads_question_first_and_the_passage_alone(tmp_path):
    folder = model_folder(tmp_path, "bert", vocabulary(FRAME, ("text", "text_pair")), classes=4)
    model, reading = load_hf(folder, 64, passage_only=True)
    both = WordpieceTokenizer(reading.tokenizer, 64)
    for row in range(len(FRAME)):
        ids = reading.encode_split(FRAME.iloc[[row]])[0]
        tokens = reading.decode(ids)
        # [CLS] question [SEP] passage [SEP]: the passage's tokens, and only they, are content
        first, second = tokens.index("[SEP]"), len(tokens) - 1
        assert tokens[1:first] == FRAME.at[row, "pair_tokens"]
        assert tokens[first + 1 : second] == FRAME.at[row, "tokens"]
        assert ids.content == [int(first < i < second) for i in range(len(tokens))]
        # read as the tokenizer joins it, the passage comes first and both texts are content
        joined = both.encode_split(FRAME.iloc[[row]])[0]
        assert both.decode(joined)[1 : len(FRAME.at[row, "tokens"]) + 1] == FRAME.at[row, "tokens"]
        assert sum(joined.content) == len(tokens) - 3
    batch = collate(reading.encode_split(FRAME), FRAME["label"].tolist())
    for method in ("attention", "jw-gradient", "leave-one-out"):
        scores = attribute(model, batch, method).scores
        assert (scores[~batch.content_mask] == 0).all(), method
        assert scores[batch.content_mask].abs().sum() > 0, method
    # the reading is part of the checkpoint: it comes back on loading
    save_checkpoint(tmp_path / "saved", model, reading, list(ANSWERS))
    assert load_checkpoint(tmp_path / "saved").pipeline.passage_only


def test_explain_scores_the_passage_of_a_pair_given_its_question(trained, tmp_path):
    result, dataset = trained
    checkpoint = load_checkpoint(result.checkpoint)
    # explain tokenises raw texts as the datasets do (J&W's: digits become qqq)
    rows = dataset.test.iloc[:3].assign(tokens=lambda frame: frame["text"].map(tokenize))
    methods = ["attention", "jw-gradient"]
    frame = explain(checkpoint, rows["text"].tolist(), methods, questions=rows["text_pair"])
    for instance, row in enumerate(rows.itertuples()):
        scored = frame[(frame["instance"] == instance) & (frame["method"] == "attention")]
        assert scored["token"].tolist() == row.tokens  # the passage's, never the question's
        assert scored["score"].sum() == pytest.approx(1.0, abs=1e-5)
        # the same scores as the batch the experiments build from the dataset's rows
        batch = collate(checkpoint.pipeline.encode_split(rows.iloc[[instance]]))
        expected = attribute(checkpoint.model, batch, "attention").scores[batch.content_mask]
        assert np.allclose(scored["score"], expected.numpy(), atol=1e-6)
    other = explain(checkpoint, rows["text"].iloc[0], ["attention"], questions="what follows red")
    assert len(other) == len(rows["tokens"].iloc[0])
    with pytest.raises(InvalidInputError, match=r"a pair model.*questions="):
        explain(checkpoint, rows["text"].tolist())
    with pytest.raises(InvalidInputError, match="3 texts and 1 questions"):
        explain(checkpoint, rows["text"].tolist(), questions=["what follows red"])
    done = run_cli("explain", "--checkpoint", str(result.checkpoint), rows["text"].iloc[0])
    assert_one_error_line(done, "a pair model", "questions=")


def test_a_single_text_model_refuses_questions():
    pipeline = TextPipeline(Vocabulary.build([["a", "b"]]))
    torch.manual_seed(0)
    model = classic_model(ClassicConfig(vocab_size=len(pipeline.vocab), num_classes=2)).eval()
    with pytest.raises(InvalidInputError, match="reads single texts: drop questions"):
        explain(model, ["a b"], ["attention"], pipeline=pipeline, questions=["b"])
