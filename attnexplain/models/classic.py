"""The classic models of Jain & Wallace 2019 (papers-spec A2), split at the attention.

    token ids --embed--> e [B, T, E] --encode--> h [B, T, H] --attention--> alpha [B, T]
              --decode(h, alpha)--> logits

Because ``decode`` takes the attention as an argument and broadcasts over extra leading
dimensions, one encoding can be decoded under a whole batch of candidate attentions
(``alpha`` of shape [B, K, T]) in one call: this is what permutation, adversarial search and
uniform baselines are built on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

import torch
from torch import nn

from attnexplain.data.batching import Batch
from attnexplain.errors import InvalidInputError, UnknownNameError

ENCODERS = ("lstm", "cnn", "average")
ATTENTIONS = ("additive", "dot")
ATTENTION_MODES = ("learned", "uniform", "fixed")
CNN_KERNELS = (1, 3, 5, 7)


@dataclass
class ClassicConfig:
    """Architecture of a classic model.

    ``encoder``: ``lstm`` (BiLSTM, ``hidden_size`` per direction), ``cnn`` (kernels 1, 3, 5, 7
    with ``hidden_size // 2`` channels each) or ``average`` (per-token tanh projection to
    ``hidden_size``; no context). ``attention``: ``additive`` or ``dot`` (scaled).
    ``attention_mode``: ``learned``; ``uniform`` (frozen 1/n over content tokens, W&P's
    baseline); ``fixed`` (weights given with every call, W&P's diagnostic).
    ``pair``: J&W's question-answering / NLI model (:class:`~attnexplain.models.pair.
    PairModel`): a second encoder of the same kind reads the question (hypothesis), and the
    attention over the passage (premise) and the decoder are conditioned on it. Build either
    kind with :func:`~attnexplain.models.pair.classic_model`.
    """

    vocab_size: int
    num_classes: int = 2
    encoder: str = "lstm"
    attention: str = "additive"
    embed_dim: int = 300
    hidden_size: int = 128
    attention_mode: str = "learned"
    pair: bool = False

    def __post_init__(self) -> None:
        for value, allowed, what in (
            (self.encoder, ENCODERS, "encoder"),
            (self.attention, ATTENTIONS, "attention"),
            (self.attention_mode, ATTENTION_MODES, "attention mode"),
        ):
            if value not in allowed:
                raise UnknownNameError(
                    f"unknown {what} {value!r}; choose one of {', '.join(allowed)}"
                )
        if self.num_classes < 2:
            raise InvalidInputError(f"num_classes must be >= 2, got {self.num_classes}")
        for name, least in (
            ("vocab_size", 1),
            ("embed_dim", 1),
            ("hidden_size", self.min_hidden_size),
        ):
            if getattr(self, name) < least:
                raise InvalidInputError(
                    f"{name} must be >= {least} for a {self.encoder}+{self.attention} model, "
                    f"got {getattr(self, name)}: pass a larger {name}"
                )

    @property
    def min_hidden_size(self) -> int:
        """The smallest ``hidden_size`` that leaves no layer empty: 2 where it is halved (the
        cnn encoder's channels per kernel, the additive scorer and the pair decoder of the
        average encoder)."""
        halved = self.encoder == "cnn" or (
            self.encoder == "average" and (self.attention == "additive" or self.pair)
        )
        return 2 if halved else 1

    @property
    def output_size(self) -> int:
        """Logits per instance: 1 (sigmoid) for binary tasks, else one per class."""
        return 1 if self.num_classes == 2 else self.num_classes

    def to_dict(self) -> dict:
        """The config as plain data; ``pair`` only when set, so that a single-text model's
        checkpoint and training fingerprint read as they did before pair models existed."""
        data = asdict(self)
        if not self.pair:
            del data["pair"]
        return data


@dataclass
class EncodedState:
    """What the attention and the decoder read. ``hidden``: [batch, tokens, H];
    ``content_mask``: [batch, tokens] bool, True at content tokens (not SOS/EOS/PAD);
    ``token_logits``: [batch, tokens, C], the decoder's weights applied to each h_t."""

    hidden: torch.Tensor
    content_mask: torch.Tensor
    token_logits: torch.Tensor

    @property
    def support(self) -> torch.Tensor:
        """[batch, tokens] bool: where attention may put mass (the content tokens)."""
        return self.content_mask


def reverse_within_length(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """Index [batch, width] that reverses each row's first ``length`` positions and leaves the
    padding in place; applying it twice is the identity."""
    positions = torch.arange(width, device=lengths.device).unsqueeze(0)
    last = (lengths - 1).unsqueeze(1)
    return torch.where(positions <= last, last - positions, positions)


def _inside(lengths: torch.Tensor, embedded: torch.Tensor) -> torch.Tensor:
    """[batch, tokens, 1] float: 1 inside each sequence, 0 on padding."""
    positions = torch.arange(embedded.shape[1], device=embedded.device)
    return (positions < lengths.unsqueeze(1)).unsqueeze(-1).to(embedded.dtype)


class LSTMEncoder(nn.Module):
    """Bidirectional LSTM as two one-way LSTMs; the backward one reads each sequence reversed
    within its own length.

    Same outputs as a packed ``nn.LSTM(bidirectional=True)`` at every real position, but it
    runs on the padded tensor: about 4x faster on CPU than packed variable-length batches.
    """

    def __init__(self, embed_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.forward_rnn = nn.LSTM(embed_dim, hidden_size, batch_first=True)
        self.backward_rnn = nn.LSTM(embed_dim, hidden_size, batch_first=True)
        self.output_size = 2 * hidden_size

    def forward(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        index = reverse_within_length(lengths, embedded.shape[1]).unsqueeze(-1)
        forward_states, _ = self.forward_rnn(embedded)
        reversed_input = embedded.gather(1, index.expand(-1, -1, embedded.shape[-1]))
        backward_states, _ = self.backward_rnn(reversed_input)
        backward_states = backward_states.gather(1, index.expand(-1, -1, backward_states.shape[-1]))
        return torch.cat([forward_states, backward_states], dim=-1) * _inside(lengths, embedded)


class CNNEncoder(nn.Module):
    def __init__(self, embed_dim: int, hidden_size: int) -> None:
        super().__init__()
        channels = hidden_size // 2
        self.convs = nn.ModuleList(
            nn.Conv1d(embed_dim, channels, k, padding=k // 2) for k in CNN_KERNELS
        )
        self.output_size = channels * len(CNN_KERNELS)

    def forward(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        inputs = embedded.transpose(1, 2)
        hidden = torch.cat([torch.relu(conv(inputs)) for conv in self.convs], dim=1)
        return hidden.transpose(1, 2) * _inside(lengths, embedded)


class AverageEncoder(nn.Module):
    def __init__(self, embed_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.projection = nn.Linear(embed_dim, hidden_size)
        self.output_size = hidden_size

    def forward(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.projection(embedded))


class AdditiveAttention(nn.Module):
    """s_t = v^T tanh(W1 h_t + b1)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.projection = nn.Linear(hidden, hidden // 2)
        self.vector = nn.Linear(hidden // 2, 1, bias=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.vector(torch.tanh(self.projection(hidden))).squeeze(-1)


class DotAttention(nn.Module):
    """s_t = w^T h_t / sqrt(H)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.vector = nn.Linear(hidden, 1, bias=False)
        self.scale = hidden**-0.5

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.vector(hidden).squeeze(-1) * self.scale


_ENCODER_CLASSES = {"lstm": LSTMEncoder, "cnn": CNNEncoder, "average": AverageEncoder}
_ATTENTION_CLASSES = {"additive": AdditiveAttention, "dot": DotAttention}


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension with masked-out entries at exactly 0.

    scores: [..., tokens]; mask: broadcastable bool, True where allowed.
    """
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


class AttentionHookPoint(nn.Module):
    """Identity on the attention weights: the named point where ``attnexplain.hooks`` captures
    and intervenes. A forward hook sees ``(alpha, content_mask)``, both [batch, tokens], and may
    return new weights."""

    def forward(self, alpha: torch.Tensor, content_mask: torch.Tensor) -> torch.Tensor:
        return alpha


def uniform_attention(content_mask: torch.Tensor) -> torch.Tensor:
    """1 / n over the n content tokens of each row. [batch, tokens] -> [batch, tokens]."""
    weights = content_mask.float()
    return weights / weights.sum(-1, keepdim=True)


class HeadConfig(Protocol):
    """What :class:`AttendingClassifier` reads from a model's config."""

    attention: str
    attention_mode: str
    num_classes: int

    @property
    def output_size(self) -> int: ...


class AttendingClassifier(nn.Module):
    """What every attention-pooling classifier of this package shares: states h [B, T, H]
    from a subclass's encoder, pooled by ``attention`` (through ``attention_hook``, where
    ``attnexplain.hooks`` capture and intervene), then a linear ``decode``.

    A subclass sets ``config`` (with ``attention``, ``attention_mode``, ``num_classes`` and
    ``output_size``), builds its encoder, calls :meth:`_build_head` with the encoder's width,
    and implements ``encode_batch(batch) -> EncodedState`` (through :meth:`_encoded`),
    ``forward`` and ``forward_batch``.
    """

    config: HeadConfig

    def _build_head(self, hidden: int) -> None:
        """The attention scorer (learned mode only), the linear decoder and the hook point,
        for encoder states of width ``hidden``."""
        self.scorer = (
            _ATTENTION_CLASSES[self.config.attention](hidden)
            if self.config.attention_mode == "learned"
            else None
        )
        self.decoder = nn.Linear(hidden, self.config.output_size)
        self.attention_hook = AttentionHookPoint()  # no parameters: checkpoints are unchanged

    def _encoded(self, hidden: torch.Tensor, content_mask: torch.Tensor) -> EncodedState:
        """The state for encoder states ``hidden`` [B, T, H] and ``content_mask`` [B, T]."""
        return EncodedState(hidden, content_mask, hidden @ self.decoder.weight.T)

    def encode_batch(self, batch: Batch) -> EncodedState:
        """The encoder states of a :class:`~attnexplain.data.Batch` (each subclass's own)."""
        raise NotImplementedError

    def attention_parameters(self) -> list[nn.Parameter]:
        """Parameters of the attention scorer."""
        return [] if self.scorer is None else list(self.scorer.parameters())

    def undecayed_parameters(self) -> list[nn.Parameter]:
        """Parameters trained without weight decay: the attention scorer's (J&W's
        classifiers)."""
        return self.attention_parameters()

    def _scores(self, state: EncodedState) -> torch.Tensor:
        """The learned scorer's attention scores [B, T] (before the masked softmax)."""
        return self.scorer(state.hidden)

    def attention(self, state: EncodedState) -> torch.Tensor:
        """The model's own attention over content tokens: [B, T], rows sum to 1.

        It passes through ``attention_hook``, where ``attnexplain.hooks`` captures and
        intervenes; weights given explicitly to ``forward`` or ``decode`` do not.
        """
        if self.config.attention_mode == "uniform":
            alpha = uniform_attention(state.content_mask)
        elif self.config.attention_mode == "fixed":
            raise InvalidInputError(
                "this model's attention is fixed: pass the weights "
                "explicitly (forward(..., attention=weights))"
            )
        else:
            alpha = masked_softmax(self._scores(state), state.content_mask)
        return self.attention_hook(alpha, state.content_mask)

    def decode(self, state: EncodedState, attention: torch.Tensor) -> torch.Tensor:
        """Logits for the given attention.

        attention: [B, T] -> logits [B, C]; or [B, K, T] (K candidates each) -> [B, K, C].
        C is 1 for binary tasks (a sigmoid logit), else the number of classes.

        The decoder is linear, so W (sum_t a_t h_t) + b = sum_t a_t (W h_t) + b: the projection
        W h_t is made once in ``encode`` and each candidate costs [T] x [T, C] instead of
        [T] x [T, H], which makes decoding 100 permutations or K adversaries cheap.
        """
        return torch.einsum("b...t,btc->b...c", attention, state.token_logits) + self.decoder.bias

    def _attend_and_decode(
        self, state: EncodedState, attention: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits [B, C] under ``attention`` [B, T], or the model's own when None."""
        return self.decode(state, self.attention(state) if attention is None else attention)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def output_size(self) -> int:
        return self.config.output_size

    def forward_with_attention(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, C] and the model's attention [B, T] of one differentiable pass (both
        families have it: training against a model's attention reads it here)."""
        state = self.encode_batch(batch)
        alpha = self.attention(state)
        return self.decode(state, alpha), alpha

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits [..., C] -> class distribution [..., num_classes] (binary: [1 - p, p])."""
        if self.config.output_size == 1:
            positive = torch.sigmoid(logits)
            return torch.cat([1 - positive, positive], dim=-1)
        return torch.softmax(logits, dim=-1)


class ClassicModel(AttendingClassifier):
    """Embedding -> encoder -> attention -> linear decoder.

    Example
    -------
    >>> model = ClassicModel(ClassicConfig(vocab_size=100))
    >>> state = model.encode(batch.token_ids, batch.lengths, batch.content_mask)
    >>> alpha = model.attention(state)                 # [B, T]
    >>> logits = model.decode(state, alpha)            # [B, 1]  (binary)
    >>> many = model.decode(state, candidates)         # candidates [B, K, T] -> [B, K, 1]
    """

    def __init__(self, config: ClassicConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=0)
        self.encoder = _ENCODER_CLASSES[config.encoder](config.embed_dim, config.hidden_size)
        self._build_head(self.encoder.output_size)

    def encode(
        self,
        token_ids: torch.Tensor,
        lengths: torch.Tensor,
        content_mask: torch.Tensor,
        embedded: torch.Tensor | None = None,
    ) -> EncodedState:
        """token_ids [B, T], lengths [B], content_mask [B, T] -> hidden [B, T, H].

        ``embedded`` [B, T, E] replaces the embedding lookup (for gradients w.r.t. embeddings).
        """
        if embedded is None:
            embedded = self.embedding(token_ids)
        return self._encoded(self.encoder(embedded, lengths), content_mask)

    def encode_batch(self, batch: Batch) -> EncodedState:
        """:meth:`encode` for a :class:`~attnexplain.data.Batch`: the entry point that the
        classic and transformers models share."""
        return self.encode(batch.token_ids, batch.lengths, batch.content_mask)

    def forward(
        self,
        token_ids: torch.Tensor,
        lengths: torch.Tensor,
        content_mask: torch.Tensor,
        attention: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [B, C]; ``attention`` [B, T] replaces the model's own when given."""
        return self._attend_and_decode(self.encode(token_ids, lengths, content_mask), attention)

    def forward_batch(self, batch: Batch) -> torch.Tensor:
        """Logits [B, C] for a :class:`~attnexplain.data.Batch`."""
        return self(batch.token_ids, batch.lengths, batch.content_mask)
