"""Jain & Wallace's question-answering and NLI models (papers-spec A6), split at the attention.

    passage ids  --embed--> --encode--> h [B, T, H]
    question ids --embed'-> --encode'-> q [B, H]   (the question encoder's final state)
    alpha = masked softmax over the passage's content tokens of s(h_t, q)        [B, T]
    logits = W2 tanh(Wp c + Wq q + b),  c = sum_t alpha_t h_t

The two encoders are of one kind (BiLSTM, CNN or Average) with separate weights, and, as in
J&W's code, separate embedding tables. The question is part of the encoded state: ``encode``
reads it once, and attention, candidate attentions, attributions and erasure all live on the
passage's content tokens. ``decode`` is not linear in the attention (the tanh), but its first
map is: Wp c = sum_t alpha_t (Wp h_t), so Wp h_t [B, T, H/2] and Wq q + b [B, H/2] are made
once in ``encode`` and each candidate attention costs [T] x [T, H/2], a tanh and W2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attnexplain.data.batching import Batch
from attnexplain.errors import InvalidInputError
from attnexplain.models.classic import (
    _ENCODER_CLASSES,
    AttendingClassifier,
    AttentionHookPoint,
    AverageEncoder,
    ClassicConfig,
    ClassicModel,
    CNNEncoder,
    LSTMEncoder,
)


@dataclass
class PairState:
    """What the attention and the decoder of a pair model read.

    ``hidden``: passage states [batch, tokens, H]; ``content_mask``: [batch, tokens] bool, the
    passage's content tokens; ``question``: q [batch, H]; ``passage_projection``: Wp h_t
    [batch, tokens, H/2] (no bias); ``question_projection``: Wq q + b [batch, H/2].
    """

    hidden: torch.Tensor
    content_mask: torch.Tensor
    question: torch.Tensor
    passage_projection: torch.Tensor
    question_projection: torch.Tensor

    @property
    def support(self) -> torch.Tensor:
        """[batch, tokens] bool: where attention may put mass (the passage content tokens)."""
        return self.content_mask


class QuestionAdditiveAttention(nn.Module):
    """s_t = v^T tanh(Wp h_t + Wq q + b), W: H -> H/2, v without bias."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.projection = nn.Linear(hidden, hidden // 2)
        self.question_projection = nn.Linear(hidden, hidden // 2, bias=False)
        self.vector = nn.Linear(hidden // 2, 1, bias=False)

    def forward(self, hidden: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        """hidden [B, T, H], question [B, H] -> scores [B, T]."""
        conditioned = self.projection(hidden) + self.question_projection(question).unsqueeze(1)
        return self.vector(torch.tanh(conditioned)).squeeze(-1)


class QuestionDotAttention(nn.Module):
    """s_t = h_t . q / sqrt(H) (no parameters)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.scale = hidden**-0.5

    def forward(self, hidden: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        """hidden [B, T, H], question [B, H] -> scores [B, T]."""
        return torch.einsum("bth,bh->bt", hidden, question) * self.scale


_PAIR_ATTENTION_CLASSES = {"additive": QuestionAdditiveAttention, "dot": QuestionDotAttention}


def final_state(encoder: nn.Module, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """A sequence's vector from its encoder states [B, Q, H] and lengths [B] -> [B, H].

    BiLSTM: the last forward state and the last backward state (at position 0), joined;
    CNN: max-pool over positions (the states are ReLUs, zero outside the sequence, so the
    padding never wins); Average: the mean over the sequence's positions (J&W average over
    the padded width too, which makes q depend on the batch; here it does not).
    """
    if isinstance(encoder, LSTMEncoder):
        size = states.shape[-1] // 2
        rows = torch.arange(len(states), device=states.device)
        return torch.cat([states[rows, lengths - 1, :size], states[:, 0, size:]], dim=-1)
    if isinstance(encoder, CNNEncoder):
        return states.max(1).values
    if isinstance(encoder, AverageEncoder):
        inside = torch.arange(states.shape[1], device=states.device) < lengths.unsqueeze(1)
        summed = (states * inside.unsqueeze(-1)).sum(1)
        return summed / lengths.unsqueeze(1).to(states.dtype)
    raise InvalidInputError(f"no final state is defined for {type(encoder).__name__}")


class PairModel(AttendingClassifier):
    """J&W's QA / NLI model: a passage encoder and a question encoder, attention over the
    passage conditioned on the question, and a tanh layer over both before the output.

    The interface is the classic models': ``encode_batch`` -> :class:`PairState` (the
    question encoded once), ``attention(state)`` -> [B, T] over the passage's content tokens
    (through ``attention_hook``), ``decode(state, attention)`` for [B, T] or [B, K, T].

    Example
    -------
    >>> model = PairModel(ClassicConfig(vocab_size=100, num_classes=6, pair=True))
    >>> state = model.encode_batch(batch)             # batch.pair_ids holds the questions
    >>> alpha = model.attention(state)                # [B, T]
    >>> logits = model.decode(state, alpha)           # [B, 6]
    >>> many = model.decode(state, candidates)        # candidates [B, K, T] -> [B, K, 6]
    """

    def __init__(self, config: ClassicConfig) -> None:
        super().__init__()
        if not config.pair:
            raise InvalidInputError(
                "a PairModel needs a config with pair=True; for a single text use ClassicModel "
                "(or classic_model(config), which picks the kind the config names)"
            )
        self.config = config
        encoder = _ENCODER_CLASSES[config.encoder]
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=0)
        self.question_embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=0)
        self.encoder = encoder(config.embed_dim, config.hidden_size)
        self.question_encoder = encoder(config.embed_dim, config.hidden_size)
        hidden = self.encoder.output_size
        self.scorer = (
            _PAIR_ATTENTION_CLASSES[config.attention](hidden)
            if config.attention_mode == "learned"
            else None
        )
        self.passage_output = nn.Linear(hidden, hidden // 2)
        self.question_output = nn.Linear(hidden, hidden // 2, bias=False)
        self.decoder = nn.Linear(hidden // 2, config.output_size)
        self.attention_hook = AttentionHookPoint()

    def encode(
        self,
        token_ids: torch.Tensor | None,
        lengths: torch.Tensor,
        content_mask: torch.Tensor,
        embedded: torch.Tensor | None = None,
        pair_ids: torch.Tensor | None = None,
        pair_lengths: torch.Tensor | None = None,
    ) -> PairState:
        """Passage token_ids [B, T], lengths [B], content_mask [B, T] and question pair_ids
        [B, Q], pair_lengths [B] -> :class:`PairState`.

        ``embedded`` [B, T, E] replaces the passage's embedding lookup (for gradients with
        respect to the passage embeddings); the question is always looked up.
        """
        if pair_ids is None or pair_lengths is None:
            raise InvalidInputError(
                "a pair model reads a question with every passage, and none was given: encode "
                "the rows with the model's pipeline from a split that has a 'pair_tokens' column"
            )
        if embedded is None:
            embedded = self.embedding(token_ids)
        hidden = self.encoder(embedded, lengths)
        question_states = self.question_encoder(self.question_embedding(pair_ids), pair_lengths)
        question = final_state(self.question_encoder, question_states, pair_lengths)
        return PairState(
            hidden,
            content_mask,
            question,
            hidden @ self.passage_output.weight.T,
            self.question_output(question) + self.passage_output.bias,
        )

    def encode_batch(self, batch: Batch) -> PairState:
        """:meth:`encode` for a :class:`~attnexplain.data.Batch` with ``pair_ids``."""
        return self.encode(
            batch.token_ids,
            batch.lengths,
            batch.content_mask,
            pair_ids=batch.pair_ids,
            pair_lengths=batch.pair_lengths,
        )

    def _scores(self, state: PairState) -> torch.Tensor:
        return self.scorer(state.hidden, state.question)

    def undecayed_parameters(self) -> list[nn.Parameter]:
        """None: J&W's QA / NLI code decays every parameter, the attention's too."""
        return []

    def decode(self, state: PairState, attention: torch.Tensor) -> torch.Tensor:
        """Logits for the given attention over the passage.

        attention: [B, T] -> logits [B, C]; or [B, K, T] (K candidates each) -> [B, K, C].
        C is 1 for binary tasks (a sigmoid logit), else the number of classes.
        """
        context = torch.einsum("b...t,btd->b...d", attention, state.passage_projection)
        question = state.question_projection.reshape(
            len(attention), *[1] * (attention.dim() - 2), -1
        )
        return self.decoder(torch.tanh(context + question))

    def forward(
        self,
        token_ids: torch.Tensor,
        lengths: torch.Tensor,
        content_mask: torch.Tensor,
        pair_ids: torch.Tensor,
        pair_lengths: torch.Tensor,
        attention: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [B, C]; ``attention`` [B, T] replaces the model's own when given."""
        state = self.encode(
            token_ids, lengths, content_mask, pair_ids=pair_ids, pair_lengths=pair_lengths
        )
        return self._attend_and_decode(state, attention)

    def forward_batch(self, batch: Batch) -> torch.Tensor:
        """Logits [B, C] for a :class:`~attnexplain.data.Batch` with ``pair_ids``."""
        return self(
            batch.token_ids, batch.lengths, batch.content_mask, batch.pair_ids, batch.pair_lengths
        )


def classic_model(config: ClassicConfig) -> ClassicModel | PairModel:
    """The model ``config`` describes: a :class:`PairModel` when ``config.pair``, else a
    :class:`~attnexplain.models.classic.ClassicModel`."""
    return PairModel(config) if config.pair else ClassicModel(config)
