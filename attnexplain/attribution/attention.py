"""Attention-derived token scores: raw attention at the site, gradient x attention, norm-based
attention, rollout and flow.

Rollout and flow score a token by the row the classifier reads (``scoring="row"``, default)
or, as Abnar & Zuidema's SST script does, by its maximum over every output position's row
(``scoring="max-over-outputs"``); see :mod:`attnexplain.attribution.attention_graph`.
Classic models have one attention step with no residual path around it, so their attention
graph is a single layer with one output: rollout and flow of that graph are the raw attention
itself (exactly, not as an approximation), and those methods return it under either scoring.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from attnexplain.attribution.adapter import Model
from attnexplain.attribution.attention_graph import (
    SCORINGS,
    attention_flow,
    attention_rollout,
    max_over_outputs,
    output_positions,
)
from attnexplain.attribution.norms import attention_norm
from attnexplain.attribution.result import MethodOutput
from attnexplain.data.batching import Batch
from attnexplain.errors import InvalidInputError
from attnexplain.hooks import capture, list_sites
from attnexplain.models.hf import HFClassifier

HEAD_REDUCTIONS = ("mean", "max")


def aggregate_heads(attention: torch.Tensor, heads: str | int) -> torch.Tensor:
    """[batch, heads, tokens] (or [batch, tokens]: one head) -> [batch, tokens].

    heads: ``"mean"`` or ``"max"`` over heads, or an int selecting one head (per-head scores).
    """
    per_head = attention.unsqueeze(1) if attention.dim() == 2 else attention
    if heads == "mean":
        return per_head.mean(1)
    if heads == "max":
        return per_head.amax(1)
    count = per_head.shape[1]
    if isinstance(heads, bool) or not isinstance(heads, int) or not -count <= heads < count:
        raise InvalidInputError(
            f"heads must be one of {', '.join(HEAD_REDUCTIONS)} or a head index in "
            f"[0, {count}), got {heads!r}"
        )
    return per_head[:, heads]


@torch.no_grad()
def raw_attention(model: Model, batch: Batch, heads: str | int = "mean") -> MethodOutput:
    """The site's attention (transformers: the row the classifier reads), heads aggregated
    as :func:`aggregate_heads` says. Scores [batch, tokens]."""
    return MethodOutput(aggregate_heads(model.attention(model.encode_batch(batch)), heads))


def site_gradient(
    model: Model, batch: Batch, objective: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The site attention and the gradient of ``objective(logits)`` (a scalar) with respect
    to it, both [batch, tokens] (classic) or [batch, heads, tokens] (transformers' site row)."""
    with torch.no_grad():
        state = model.encode_batch(batch)
        attention = model.attention(state)
    attention = attention.detach().requires_grad_()
    (gradient,) = torch.autograd.grad(objective(model.decode(state, attention)), attention)
    return attention.detach(), gradient


def grad_attention(model: Model, batch: Batch, target: torch.Tensor) -> MethodOutput:
    """alpha_t * d p_target / d alpha_t (Serrano & Smith 2019), the first-order share of the
    output owed to each attention weight, summed over heads. Signed, [batch, tokens]."""

    def chosen(logits: torch.Tensor) -> torch.Tensor:
        return model.probabilities(logits).gather(-1, target.unsqueeze(-1)).sum()

    attention, gradient = site_gradient(model, batch, chosen)
    product = attention * gradient
    return MethodOutput(product.reshape(len(batch), -1, product.shape[-1]).sum(1))


def norm_attention(model: Model, batch: Batch) -> MethodOutput:
    """Kobayashi et al.'s norm-based attention ||alpha f(x)|| (see
    :mod:`attnexplain.attribution.norms`). Scores [batch, tokens] >= 0."""
    return MethodOutput(attention_norm(model, batch))


@torch.no_grad()
def _all_layers(model: HFClassifier, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Every layer's pattern [batch, layers, heads, tokens, tokens] and the query row [batch]
    the classifier reads, from one forward pass."""
    with capture(model) as cache:
        state = model.encode(batch)
    return torch.stack([cache[site] for site in list_sites(model)], 1), state.query


def _graph_scores(
    model: Model,
    batch: Batch,
    scoring: str,
    graph: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> MethodOutput:
    """Scores [batch, tokens] read from ``graph(patterns, lengths, outputs)`` [batch, tokens,
    tokens] (rows: output positions) at the output positions ``scoring`` names; classic
    models: the raw attention (module docstring)."""
    if scoring not in SCORINGS:
        raise InvalidInputError(f"scoring must be one of {', '.join(SCORINGS)}, got {scoring!r}")
    if not isinstance(model, HFClassifier):
        return raw_attention(model, batch)
    patterns, query = _all_layers(model, batch)
    outputs = output_positions(query, batch.lengths, patterns.shape[-1], scoring)
    return MethodOutput(max_over_outputs(graph(patterns, batch.lengths, outputs), outputs))


def rollout(model: Model, batch: Batch, scoring: str = "row") -> MethodOutput:
    """Attention rollout through all layers, read as ``scoring`` says (module docstring).
    Scores [batch, tokens]."""
    return _graph_scores(
        model, batch, scoring, lambda patterns, lengths, outputs: attention_rollout(patterns)
    )


def flow(model: Model, batch: Batch, scoring: str = "row") -> MethodOutput:
    """Attention flow (networkx max-flow per input token and output position), read as
    ``scoring`` says (module docstring). Scores [batch, tokens]."""
    return _graph_scores(model, batch, scoring, attention_flow)
