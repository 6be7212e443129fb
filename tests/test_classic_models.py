import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnexplain.data import collate
from attnexplain.errors import InvalidInputError, UnknownNameError
from attnexplain.models import ClassicConfig, ClassicModel
from attnexplain.models.classic import ATTENTIONS, ENCODERS, LSTMEncoder


def _batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    lengths = [9, 4, 7, 3]
    return collate(
        [[2, *torch.randint(4, 50, (n - 2,), generator=generator).tolist(), 3] for n in lengths],
        labels=[1, 0, 1, 0],
    )


def _model(encoder="lstm", attention="additive", num_classes=2, **kwargs) -> ClassicModel:
    torch.manual_seed(0)
    return ClassicModel(
        ClassicConfig(
            vocab_size=50,
            num_classes=num_classes,
            encoder=encoder,
            attention=attention,
            embed_dim=16,
            hidden_size=8,
            **kwargs,
        )
    ).eval()


ARCHITECTURES = [(e, a) for e in ENCODERS for a in ATTENTIONS]


@pytest.mark.parametrize(("encoder", "attention"), ARCHITECTURES)
def test_split_forward_equals_fused_forward_exactly(encoder, attention):
    model, batch = _model(encoder, attention), _batch()
    fused = model(batch.token_ids, batch.lengths, batch.content_mask)
    state = model.encode(batch.token_ids, batch.lengths, batch.content_mask)
    split = model.decode(state, model.attention(state))
    assert torch.equal(split, fused)


@pytest.mark.parametrize(("encoder", "attention"), ARCHITECTURES)
def test_decoding_many_candidate_attentions_at_once_equals_one_by_one(encoder, attention):
    model, batch = _model(encoder, attention, num_classes=3), _batch()
    state = model.encode(batch.token_ids, batch.lengths, batch.content_mask)
    scores = torch.randn(4, 5, batch.token_ids.shape[1])
    candidates = torch.softmax(scores.masked_fill(~batch.content_mask[:, None], -1e9), -1)
    together = model.decode(state, candidates)
    assert together.shape == (4, 5, 3)
    for k in range(5):
        one = model.decode(state, candidates[:, k])
        assert torch.allclose(together[:, k], one, atol=1e-6)


@pytest.mark.parametrize(("encoder", "attention"), ARCHITECTURES)
def test_padding_does_not_change_a_sequence(encoder, attention):
    model, batch = _model(encoder, attention), _batch()
    together = model(batch.token_ids, batch.lengths, batch.content_mask)
    for row in range(len(batch)):
        n = int(batch.lengths[row])
        alone = collate([batch.token_ids[row, :n].tolist()])
        single = model(alone.token_ids, alone.lengths, alone.content_mask)
        assert torch.allclose(together[row], single[0], atol=1e-6)


@pytest.mark.parametrize(("encoder", "attention"), ARCHITECTURES)
def test_attention_is_a_distribution_over_content_tokens_only(encoder, attention):
    model, batch = _model(encoder, attention), _batch()
    state = model.encode(batch.token_ids, batch.lengths, batch.content_mask)
    alpha = model.attention(state)
    assert torch.allclose(alpha.sum(-1), torch.ones(len(batch)))
    assert (alpha[~batch.content_mask] == 0).all()
    assert (alpha[batch.content_mask] > 0).all()


def test_lstm_encoder_equals_a_packed_bidirectional_lstm():
    torch.manual_seed(1)
    encoder = LSTMEncoder(6, 5)
    reference = nn.LSTM(6, 5, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(reference, f"{name}_l0").copy_(getattr(encoder.forward_rnn, f"{name}_l0"))
            getattr(reference, f"{name}_l0_reverse").copy_(
                getattr(encoder.backward_rnn, f"{name}_l0")
            )
    inputs, lengths = torch.randn(4, 9, 6), torch.tensor([9, 3, 6, 1])
    packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    expected, _ = pad_packed_sequence(reference(packed)[0], batch_first=True, total_length=9)
    assert torch.allclose(encoder(inputs, lengths), expected, atol=1e-6)


def test_uniform_mode_has_no_attention_parameters_and_weighs_tokens_equally():
    model, batch = _model(attention_mode="uniform"), _batch()
    assert model.attention_parameters() == []
    state = model.encode(batch.token_ids, batch.lengths, batch.content_mask)
    alpha = model.attention(state)
    counts = batch.content_mask.sum(-1, keepdim=True)
    assert torch.allclose(alpha, batch.content_mask / counts)


def test_fixed_mode_uses_the_given_weights_and_refuses_to_guess():
    model, batch = _model(attention_mode="fixed"), _batch()
    weights = batch.content_mask.float()
    weights[:, 1] = weights[:, 1] * 3
    weights = weights / weights.sum(-1, keepdim=True)
    state = model.encode(batch.token_ids, batch.lengths, batch.content_mask)
    logits = model(batch.token_ids, batch.lengths, batch.content_mask, attention=weights)
    assert torch.equal(logits, model.decode(state, weights))
    with pytest.raises(InvalidInputError, match="fixed"):
        model(batch.token_ids, batch.lengths, batch.content_mask)


def test_probabilities_are_full_distributions():
    binary, multi = _model(), _model(num_classes=4)
    batch = _batch()
    for model, classes in ((binary, 2), (multi, 4)):
        probs = model.probabilities(model(batch.token_ids, batch.lengths, batch.content_mask))
        assert probs.shape == (4, classes)
        assert torch.allclose(probs.sum(-1), torch.ones(4))


@pytest.mark.parametrize(
    "bad", [{"encoder": "gru"}, {"attention": "multiplicative"}, {"attention_mode": "random"}]
)
def test_unknown_architecture_names_are_typed_errors(bad):
    with pytest.raises(UnknownNameError, match="choose one of"):
        ClassicConfig(vocab_size=10, **bad)
