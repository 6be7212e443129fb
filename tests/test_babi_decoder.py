"""A decoder LM trained here on bAbI written as generation: a plan trains a tiny Llama on a
small bAbI-1 slice and runs the J&W battery and the league on it through the runner; the
checkpoint is a plain transformers folder; the passage alone is content; the classifier's
logits are the LM's at the answer words; an interrupted training resumes to the same model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from attnexplain import load_checkpoint
from attnexplain.attribution import attribute
from attnexplain.data.batching import collate
from attnexplain.data.registry import load_dataset
from attnexplain.data.text import SOS_EOS
from attnexplain.errors import PlanError
from attnexplain.models import decoder_train
from attnexplain.models.decoder import decoder_reader
from attnexplain.models.epochs import fit_epoch
from attnexplain.models.train import TrainConfig, predict_proba
from attnexplain.runner import parse_plan, run_plan
from attnexplain.runner.store import RunStore

SLICE = {"name": "babi-1", "options": {"train_questions": 300, "test_questions": 20, "seed": 1}}
TINY = {"decoder": "llama", "layers": 1, "hidden_size": 16, "heads": 2}
METHODS = ["attention", "attention-rollout", "jw-gradient", "leave-one-out", "attnlrp"]
PLAN = {
    "name": "babi-decoder-slice",
    "datasets": [SLICE],
    "models": [TINY],
    "seeds": [10],
    "decoder_train": {"epochs": 2, "batch_size": 50},
    "max_instances": 10,
    "experiments": [
        {"name": "predictions"},
        {"name": "jain_wallace.correlation"},
        {"name": "league.methods", "params": {"methods": METHODS}},
    ],
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The slice's plan, run once."""
    return run_plan(parse_plan(PLAN), tmp_path_factory.mktemp("decoder"), progress=False)


@pytest.fixture(scope="module")
def checkpoint(run):
    training = next(unit for unit in run.units if unit.kind == "train")
    return load_checkpoint(RunStore(run.directory).checkpoint_dir(training.key))


@pytest.fixture(scope="module")
def test_rows():
    return load_dataset(SLICE["name"], **SLICE["options"]).test.iloc[:4]


def test_the_plan_trains_a_decoder_and_runs_the_battery_on_it(run):
    training = next(unit for unit in run.units if unit.kind == "train")
    assert training.model.label == "llama-l1-h16-heads2"
    details = RunStore(run.directory).finished(training.key).details
    assert {"accuracy", "greedy_accuracy"} <= set(details["test"])
    predictions, correlation, league = (run.results(i) for i in range(3))
    assert len(predictions) == 10 and predictions["prob_kitchen"].between(0, 1).all()
    assert correlation["tau_jw-gradient"].notna().all()
    assert set(league["method"]) == set(METHODS)
    assert (league["unsupported"] == "").all()  # attnlrp reaches Llama's blocks
    assert league["auprc"].between(0, 1).all()


def test_the_checkpoint_is_a_plain_transformers_causal_lm(checkpoint, run, test_rows):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    training = next(unit for unit in run.units if unit.kind == "train")
    folder = RunStore(run.directory).checkpoint_dir(training.key)
    lm = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    answers = tokenizer.convert_tokens_to_ids(checkpoint.classes)
    expected = []
    for passage, question in zip(test_rows["text"], test_rows["text_pair"], strict=True):
        ids = tokenizer(passage, question, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            expected.append(torch.softmax(lm(ids).logits[0, -1, answers], -1))
    pipeline = checkpoint.pipeline
    ours = predict_proba(checkpoint.model, pipeline.encode_split(test_rows), pipeline.framing)
    assert torch.from_numpy(ours).float() == pytest.approx(torch.stack(expected), abs=1e-5)


def test_only_the_passage_is_content(checkpoint, test_rows):
    pipeline = checkpoint.pipeline
    sequences = pipeline.encode_split(test_rows)
    for sequence, passage, question in zip(
        sequences, test_rows["tokens"], test_rows["pair_tokens"], strict=True
    ):
        # <s> passage question: the passage's words content, <s> and the question not
        assert pipeline.decode(sequence) == ["<s>", *passage, *question]
        assert sequence.content == [0] + [1] * len(passage) + [0] * len(question)
    batch = collate(sequences, framing=pipeline.framing)
    scores = attribute(checkpoint.model, batch, "jw-gradient").scores
    assert (scores[~batch.content_mask] == 0).all() and scores[batch.content_mask].abs().sum() > 0


def test_the_candidate_logits_are_the_lms_at_the_answer_words(checkpoint, test_rows):
    pipeline, model = checkpoint.pipeline, checkpoint.model
    batch = collate(pipeline.encode_split(test_rows), framing=pipeline.framing)  # right-padded
    assert batch.lengths.unique().numel() > 1
    answers = [pipeline.tokenizer.convert_tokens_to_ids(name) for name in checkpoint.classes]
    with torch.no_grad():
        ours = model.forward_batch(batch)
        full = model.model.lm(**batch.model_inputs()).logits
    last = full[torch.arange(len(batch)), batch.lengths - 1]
    assert ours == pytest.approx(last[:, answers], abs=1e-5)


def test_an_interrupted_training_resumes_to_the_same_model(tmp_path, monkeypatch):
    dataset = load_dataset(SLICE["name"], **SLICE["options"])
    config = TrainConfig.decoder(epochs=2, batch_size=50)
    whole = decoder_train.train_decoder(dataset, tmp_path / "whole", TINY, config, False)
    real_batches = decoder_train.decoder_batches

    def crash_in_epoch_two(ids, labels, config, epoch, framing):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_batches(ids, labels, config, epoch, framing)

    monkeypatch.setattr(decoder_train, "decoder_batches", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        decoder_train.train_decoder(dataset, tmp_path / "cut", TINY, config, False)
    monkeypatch.setattr(decoder_train, "decoder_batches", real_batches)
    resumed = decoder_train.train_decoder(dataset, tmp_path / "cut", TINY, config, False)
    pd.testing.assert_frame_equal(
        pd.DataFrame(resumed.history), pd.DataFrame(whole.history), check_like=True
    )
    assert pd.Series(resumed.test).equals(pd.Series(whole.test))  # NaN (a class absent) too
    first, second = (load_file(str(r.checkpoint / "model.safetensors")) for r in (whole, resumed))
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_the_first_short_epochs_train_on_the_shortest_prompts_only():
    lengths = np.random.default_rng(0).integers(3, 60, 1000)
    sequences = [list(range(n)) for n in lengths]
    config = TrainConfig.decoder(short_epochs=2)
    shortest = set(np.argsort(lengths, kind="stable")[:200])

    def rows(epoch):
        batches = decoder_train.decoder_batches(sequences, np.arange(1000), config, epoch, SOS_EOS)
        return np.concatenate([batch.labels.numpy() for batch in batches])

    first, second, third = rows(1), rows(2), rows(3)
    # as many rows as a full epoch, each of the shortest fifth as often, shuffled per epoch
    assert len(first) == 1000 and set(first) == shortest
    assert np.bincount(first, minlength=1000).max() == 5
    assert not np.array_equal(first, second) and set(second) == shortest
    assert sorted(third) == list(range(1000))
    assert "short_epochs" not in TrainConfig().identity()  # older run keys are kept


def test_a_decoders_gradient_is_clipped():
    weight = torch.nn.Parameter(torch.zeros(4))
    model, optimizer = torch.nn.ParameterList([weight]), torch.optim.SGD([weight], lr=1.0)
    batch, loss = collate([[1, 2, 3]], labels=[0]), lambda _: 100 * weight.sum()
    fit_epoch(model, optimizer, [batch], loss, progress=False, max_grad_norm=1.0)
    assert weight.norm().item() == pytest.approx(1.0)  # the gradient's norm was 200


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"layers": 2}, "add 'decoder: llama'"),
        ({"decoder": "llama", "encoder": "lstm"}, "remove encoder"),
        ({"decoder": "llama", "hidden_size": 30, "heads": 4}, "multiple of heads"),
        ({"decoder": "bert"}, "choose one of llama, gpt2"),
    ],
)
def test_a_decoder_entry_that_cannot_be_trained_is_a_plan_error(model, message):
    with pytest.raises(PlanError, match=message):
        parse_plan({**PLAN, "models": [model]})


def test_a_class_that_is_not_one_token_cannot_be_an_answer(checkpoint):
    with pytest.raises(ValueError, match="not one token"):
        decoder_reader(checkpoint.model.model.lm, checkpoint.pipeline.tokenizer, ["a b"], 64)


def test_a_one_word_text_is_a_prompt(checkpoint):
    pipeline = checkpoint.pipeline
    assert pipeline.decode(pipeline.encode("Kitchen")) == ["<s>", "kitchen"]
    with pytest.raises(ValueError, match="has no tokens"):
        pipeline.encode(" ")
