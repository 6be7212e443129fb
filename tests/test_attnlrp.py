"""AttnLRP (Achtibat et al. 2024): relevance conservation on tiny bias-free transformers, a
hand-computed classic case, padding, restoring the model, and refusals."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from attnexplain.attribution import attribute, list_methods
from attnexplain.attribution.attnlrp import attnlrp
from attnexplain.data import Framing, collate
from attnexplain.errors import HookError
from attnexplain.models import ClassicConfig, ClassicModel
from attnexplain.models.hf import HFClassifier
from tests.tiny_transformers import tiny_model

SEQUENCES = [[1, 5, 6, 7, 2], [1, 8, 9, 10, 11, 12, 13, 2]]
FRAMED = Framing(0, 1, 1)
TARGET = torch.tensor([0, 1])


@pytest.fixture(scope="module")
def batch():
    return collate(SEQUENCES, framing=FRAMED)


def _bias_free(name: str) -> HFClassifier:
    """A copy of a tiny model with every bias and the position / token-type embeddings zeroed:
    its logit is then a homogeneous function of the word embeddings but for the softmaxes."""
    model = copy.deepcopy(tiny_model(name))
    with torch.no_grad():
        for parameter_name, parameter in model.named_parameters():
            if parameter_name.endswith("bias") or any(
                part in parameter_name for part in ("position_embeddings", "token_type", "wpe")
            ):
                parameter.zero_()
    return HFClassifier(model)


def _logits(model: HFClassifier, batch) -> torch.Tensor:
    with torch.no_grad():
        return model.forward_batch(batch)


def _target_logit(logits: torch.Tensor) -> torch.Tensor:
    return logits.gather(-1, TARGET.unsqueeze(-1)).squeeze(-1)


def relevance_and_softmax_share(
    model, batch, target, monkeypatch: pytest.MonkeyPatch
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """AttnLRP's relevance [batch, tokens], the relevance [batch] the attention softmaxes keep
    (0.5 (sum s * dy/ds - sum x * dy/dx), where 0.5 is A's half of A V under the uniform
    rule, recorded from each softmax's inputs and outputs), and how many softmaxes ran."""
    softmaxes: list[tuple[torch.Tensor, torch.Tensor]] = []
    softmax = torch.softmax

    def recording_softmax(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        s = softmax(x, *args, **kwargs)
        x.retain_grad()
        s.retain_grad()
        softmaxes.append((x, s))
        return s

    monkeypatch.setattr(torch, "softmax", recording_softmax)
    relevance = attnlrp(model, batch, target).scores
    monkeypatch.undo()
    kept = sum(
        0.5 * ((s * s.grad).sum((1, 2, 3)) - (x * x.grad).sum((1, 2, 3))) for x, s in softmaxes
    )
    return relevance, kept, len(softmaxes)


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama"])
def test_relevance_plus_what_the_softmaxes_keep_is_the_target_logit(name, batch, monkeypatch):
    """Bias-free, every rule but the softmax's passes relevance on exactly (norms, activations,
    the 0.5 on each bilinear factor: with 1 instead the sum is far off); the softmax keeps
    0.5 (sum s dy/ds - sum x dy/dx), recorded here from its inputs and outputs."""
    model = _bias_free(name)
    relevance, kept, softmaxes = relevance_and_softmax_share(model, batch, TARGET, monkeypatch)
    assert softmaxes == 2  # one per layer
    expected = _target_logit(_logits(model, batch))
    torch.testing.assert_close(relevance.sum(-1) + kept, expected, rtol=1e-4, atol=1e-6)
    assert (kept.abs() > 1e-4).all()  # the softmax term is not vacuous


def test_classic_relevance_matches_the_hand_computed_rules():
    """Average encoder (bias-free), dot attention, binary: with u_t = w . h_t the token logit,
    a = softmax(s) and S = sum_j a_j u_j, the uniform rule gives a_t u_t / 2 to each factor of
    y = sum_t a_t u_t + b; the softmax rule turns a's half into s_t (a_t u_t - a_t S) / 2; tanh
    (identity rule) and the projection (no bias) pass both on: R_t = a_t u_t / 2 + that."""
    torch.manual_seed(0)
    model = ClassicModel(
        ClassicConfig(vocab_size=10, encoder="average", attention="dot", embed_dim=3, hidden_size=4)
    ).eval()
    with torch.no_grad():
        model.encoder.projection.bias.zero_()
    batch = collate([[2, 5, 6, 3]])
    with torch.no_grad():
        hidden = torch.tanh(model.encoder.projection(model.embedding(batch.token_ids[0, 1:3])))
        u = hidden @ model.decoder.weight[0]
        s = model.scorer(hidden)
        a = torch.softmax(s, -1)
    expected = a * u / 2 + s * (a * u - a * (a * u).sum()) / 2
    relevance = attnlrp(model, batch, torch.tensor([1])).scores
    torch.testing.assert_close(relevance[0, 1:3], expected)
    assert (relevance[0, [0, 3]] == 0).all()  # <SOS>, <EOS>: no attention, no relevance


@pytest.mark.parametrize("name", ["bert", "llama"])
def test_padding_gets_no_relevance_and_rows_do_not_interact(name, batch):
    model = HFClassifier(tiny_model(name))
    scores = attnlrp(model, batch, TARGET).scores
    assert scores.isfinite().all()
    assert (scores[0, 5:] == 0).all()  # padded keys: no attention, no relevance
    for row, sequence in enumerate(SEQUENCES):
        alone = attnlrp(model, collate([sequence], framing=FRAMED), TARGET[row : row + 1]).scores
        torch.testing.assert_close(scores[row, : len(sequence)], alone[0], rtol=1e-4, atol=1e-6)


def _hooks(model: nn.Module) -> int:
    return sum(len(module._forward_hooks) for module in model.modules())


def _fail(module: nn.Module, args: tuple, output: object) -> None:
    raise RuntimeError("fails mid-call")


@pytest.mark.parametrize("fails", [False, True])
def test_the_model_is_restored_after_the_call(batch, fails):
    model = HFClassifier(tiny_model("bert"))
    before, implementation = _logits(model, batch), model.model.config._attn_implementation
    handle = model.model.bert.encoder.layer[1].register_forward_hook(_fail) if fails else None
    try:
        if fails:
            with pytest.raises(RuntimeError, match="mid-call"):
                attnlrp(model, batch, TARGET)
        else:
            attnlrp(model, batch, TARGET)
    finally:
        if handle is not None:
            handle.remove()
    assert model.model.config._attn_implementation == implementation
    assert _hooks(model) == 0
    assert torch.equal(_logits(model, batch), before)


class ShiftedRMSNorm(nn.Module):
    """(1 + w) x / rms: an RMSNorm the rule's reimplementation does not match."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = 1e-6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (1 + self.weight) * x / (x.square().mean(-1, keepdim=True) + self.eps).sqrt()


def test_a_norm_the_rule_does_not_match_is_refused_and_the_model_restored(batch):
    model = _bias_free("bert")
    model.model.bert.embeddings.LayerNorm = ShiftedRMSNorm(32)
    with pytest.raises(HookError, match="ShiftedRMSNorm"):
        attnlrp(model, batch, TARGET)
    assert _hooks(model) == 0 and model.model.config._attn_implementation != "attnexplain-attnlrp"


@pytest.mark.parametrize(
    ("name", "component", "message"),
    [
        ("roberta", None, "RobertaClassificationHead.*torch.tanh"),
        ("bert", nn.Sigmoid(), "Sigmoid"),
        ("bert", nn.BatchNorm1d(32), "BatchNorm1d"),
    ],
)
def test_components_without_a_rule_are_refused(name, component, message, batch):
    model = HFClassifier(copy.deepcopy(tiny_model(name)))
    if component is not None:
        model.model.bert.pooler.activation = component
    with pytest.raises(HookError, match=message):
        attnlrp(model, batch, TARGET)
    assert _hooks(model) == 0


def _classic(
    encoder: str, attention: str = "additive", num_classes: int = 2, mode: str = "learned"
) -> ClassicModel:
    torch.manual_seed(0)
    config = ClassicConfig(
        vocab_size=40,
        num_classes=num_classes,
        encoder=encoder,
        attention=attention,
        embed_dim=8,
        hidden_size=8,
        attention_mode=mode,
    )
    return ClassicModel(config).eval()


def test_lstm_signal_take_all_conserves_the_logit_under_constant_attention():
    """Bias-free BiLSTM with uniform (constant) attention: detached gates and the identity rule
    on tanh make every step linear, so the relevance adds up to the logit exactly."""
    model = _classic("lstm", mode="uniform")
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "bias" in name:
                parameter.zero_()
    batch = collate([[2, 5, 6, 7, 3], [2, 8, 9, 3]])
    relevance = attnlrp(model, batch, torch.tensor([1, 1])).scores
    with torch.no_grad():
        logits = model.forward_batch(batch)[:, 0]
    torch.testing.assert_close(relevance.sum(-1), logits, rtol=1e-4, atol=1e-6)
    assert _hooks(model) == 0


CLASSIC_SEQUENCES = [[2, 5, 6, 7, 3], [2, 8, 9, 10, 11, 12, 13, 3]]


@pytest.mark.parametrize(
    ("model", "batch"),
    [
        (HFClassifier(tiny_model("bert")), collate(SEQUENCES, framing=FRAMED)),
        (_classic("average"), collate(CLASSIC_SEQUENCES)),
        (_classic("lstm"), collate(CLASSIC_SEQUENCES)),
        (_classic("cnn", "dot", num_classes=3), collate(CLASSIC_SEQUENCES)),
    ],
    ids=["bert", "classic-average", "classic-lstm", "classic-cnn"],
)
def test_registered_as_an_attention_method(model, batch):
    assert "attnlrp" in list_methods("attention")
    result = attribute(model, batch, "attnlrp")
    assert result.scores.shape == batch.token_ids.shape and result.scores.isfinite().all()
    assert (result.scores[~batch.content_mask] == 0).all()
    assert (result.scores[batch.content_mask] != 0).all()
