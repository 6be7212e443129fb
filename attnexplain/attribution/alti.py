"""ALTI (Ferrando, Gallego & Costa-jussa 2022, "Measuring the Mixing of Contextual
Information in the Transformer").

The attention block of a post-LN layer maps inputs x to y_i = LN(x_i + sum_j sum_h A^h_ij
f^h(x_j) + b_O), with f^h(x) = (x W_V^h + b_V^h) W_O^h. Given the row's statistics,
LN(sum_j z_ij + b) = sum_j gamma * (z_ij - mean(z_ij)) / sigma_i + (bias terms), so

    y_i = sum_j T_i(x_j) + b_i,   T_i(x_j) = gamma * (z_ij - mean(z_ij)) / sigma_i,
    z_ij = sum_h A^h_ij f^h(x_j) + [i = j] x_i.

Token j's contribution to token i is how much closer it brings y_i than nothing (Manhattan):

    c_ij = max(0, ||y_i||_1 - ||y_i - T_i(x_j)||_1),   C[i, j] = c_ij / sum_k c_ik

(rows sum to 1). The layers' matrices are rolled out, C_L ... C_1, and token j scores the
explained row q's entry. Classic models: y = c = sum_t alpha_t h_t and T(x_t) = alpha_t h_t
(no residual, no norm), one layer.
"""

from __future__ import annotations

import torch

from attnexplain.attribution.adapter import Model
from attnexplain.attribution.attention_graph import compose
from attnexplain.attribution.layerwise import explained_rows, rows_of, run
from attnexplain.attribution.norms import (
    AttentionBlock,
    attention_block,
    contribution_vectors,
    head_vectors,
    inputs_of,
)
from attnexplain.attribution.result import MethodOutput
from attnexplain.data.batching import Batch
from attnexplain.errors import HookError
from attnexplain.hooks import capture, list_sites
from attnexplain.models.hf import HFClassifier


def manhattan_contributions(terms: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """C[..., j] = max(0, ||y||_1 - ||y - T_j||_1) normalised to sum 1 over j.

    terms: [..., sources, dim] T(x_j); output: [..., dim] y. Returns [..., sources]; a row
    with no positive contribution is all zero.
    """
    closer = output.abs().sum(-1, keepdim=True) - (output.unsqueeze(-2) - terms).abs().sum(-1)
    contributions = closer.clamp_min(0)
    total = contributions.sum(-1, keepdim=True)
    return contributions / total.clamp_min(torch.finfo(total.dtype).tiny)


def layer_norm_terms(norm: torch.nn.LayerNorm, parts: torch.Tensor) -> torch.Tensor:
    """LN(sum_k parts_k) split into one term per part: gamma * (p_k - mean(p_k)) / sigma,
    with sigma from the sum. parts: [..., parts, dim] -> [..., parts, dim]; the terms plus
    beta add up to the LayerNorm's output."""
    whole = parts.sum(-2, keepdim=True)
    sigma = (whole.var(-1, unbiased=False, keepdim=True) + norm.eps).sqrt()
    return norm.weight * (parts - parts.mean(-1, keepdim=True)) / sigma


def decompose_block(
    block: AttentionBlock, x: torch.Tensor, pattern: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """T_i(x_j) [batch, tokens (i), tokens (j), dim] and the block output y [batch, tokens,
    dim], from its input x [batch, tokens, dim] and attention pattern [batch, heads, tokens,
    tokens] (module docstring). ``block.norm`` must be set (a post-LN block)."""
    mixed = torch.einsum("bhij,bjhe->bije", pattern, head_vectors(block, x, pattern.shape[1]))
    mixed = mixed + torch.diag_embed(x.transpose(1, 2)).permute(0, 2, 3, 1)  # residual, i = j
    bias = block.output.bias
    bias = torch.zeros_like(x[:, :, None]) if bias is None else bias.expand_as(x[:, :, None])
    terms = layer_norm_terms(block.norm, torch.cat([mixed, bias], -2))
    output = terms.sum(-2) + (0 if block.norm.bias is None else block.norm.bias)
    return terms[:, :, :-1], output


def _post_norm_block(model: HFClassifier, layer: int) -> AttentionBlock:
    """Layer ``layer``'s attention block; :class:`HookError` unless it is post-LN."""
    block = attention_block(model, layer)
    if block.norm is None:
        raise HookError(
            "ALTI decomposes post-LN attention blocks (a LayerNorm over residual + attention "
            f"output), and {type(block.attention).__name__} normalises before its attention; "
            "it supports BERT, RoBERTa, ELECTRA and DistilBERT"
        )
    return block


@torch.no_grad()
def alti_matrices(model: HFClassifier, batch: Batch) -> torch.Tensor:
    """Every layer's contribution matrix C_l: [batch, layers, tokens, tokens], first layer
    first, each real row summing to 1."""
    sites = list_sites(model)
    blocks = [_post_norm_block(model, layer) for layer in range(len(sites))]
    with capture(model) as cache, inputs_of([b.attention for b in blocks]) as inputs:
        run(model, batch.token_ids, batch.padding_mask, batch.segments)
    return torch.stack(
        [
            _contributions(block, inputs[k], cache[site])
            for k, (block, site) in enumerate(zip(blocks, sites, strict=True))
        ],
        1,
    )


def _contributions(block: AttentionBlock, x: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """One layer's C [batch, tokens, tokens] from x [batch, tokens, dim] and its pattern
    [batch, heads, tokens, tokens], one instance at a time: the terms T_i(x_j) take
    tokens^2 x dim floats each."""
    return torch.cat(
        [
            manhattan_contributions(*decompose_block(block, x[b : b + 1], pattern[b : b + 1]))
            for b in range(len(x))
        ]
    )


@torch.no_grad()
def alti(model: Model, batch: Batch) -> MethodOutput:
    """ALTI of the explained row (module docstring). Scores [batch, tokens] >= 0."""
    if not isinstance(model, HFClassifier):
        vectors = contribution_vectors(model, batch)
        return MethodOutput(manhattan_contributions(vectors, vectors.sum(1)))
    return MethodOutput(rows_of(compose(alti_matrices(model, batch)), explained_rows(model, batch)))
