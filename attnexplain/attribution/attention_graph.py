"""Attention rollout and attention flow (Abnar & Zuidema 2020) on recorded patterns.

Both read the layers as a graph: token j in layer l-1 feeds token i in layer l with weight
A_l[i, j], where A_l = 0.5 * mean over heads of the attention + 0.5 * I (the residual
connection), rows renormalised. Rollout multiplies the layers (A_L ... A_1); flow takes, for
each input token, the maximum flow from it to the output token with A as edge capacities.
"""

from __future__ import annotations

import torch


def residual_attention(patterns: torch.Tensor) -> torch.Tensor:
    """0.5 * head-mean attention + 0.5 * I, rows summing to 1.

    patterns: [batch, layers, heads, tokens, tokens] (queries, keys). Returns [batch, layers,
    tokens, tokens].
    """
    mixed = 0.5 * patterns.mean(2) + 0.5 * torch.eye(
        patterns.shape[-1], dtype=patterns.dtype, device=patterns.device
    )
    return mixed / mixed.sum(-1, keepdim=True)


def attention_rollout(patterns: torch.Tensor) -> torch.Tensor:
    """How much each input token reaches each output position through all layers.

    patterns: [batch, layers, heads, tokens, tokens], first layer first. Returns [batch,
    tokens, tokens]: row i is output position i's mix of input tokens (rows sum to 1).
    """
    return compose(residual_attention(patterns))


def compose(layers: torch.Tensor) -> torch.Tensor:
    """The product of per-layer token-to-token matrices, last layer leftmost: L_n ... L_1.

    layers: [batch, layers, tokens, tokens], first layer first, row i of a layer mixing the
    previous layer's tokens into position i. Returns [batch, tokens, tokens]. Every rollout
    (of attention, of gradient-weighted attention, of ALTI or value-zeroing matrices) is this
    product of its own layer matrices.
    """
    rollout = layers[:, 0]
    for layer in range(1, layers.shape[1]):
        rollout = layers[:, layer] @ rollout
    return rollout


def attention_flow(
    patterns: torch.Tensor, query: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """Maximum flow from every input token to output position ``query``.

    patterns: [batch, layers, heads, tokens, tokens]; query: [batch] long, the output position
    explained (e.g. [CLS]); lengths: [batch], tokens beyond a row's length are left out.
    Returns [batch, tokens] float, 0 beyond each row's length. One max-flow per token (networkx
    preflow-push): fine for short texts, slow for long ones (cost grows with layers x tokens^3).
    """
    import networkx as nx  # here: only flow needs it, and it is slow to import

    layers = residual_attention(patterns.double())
    num_layers = layers.shape[1]
    flows = torch.zeros(patterns.shape[0], patterns.shape[-1])
    for b in range(patterns.shape[0]):
        n = int(lengths[b])
        graph = nx.DiGraph()
        for layer in range(num_layers):
            weights = layers[b, layer, :n, :n].tolist()
            graph.add_weighted_edges_from(
                (
                    ((layer, j), (layer + 1, i), weights[i][j])
                    for i in range(n)
                    for j in range(n)
                    if weights[i][j] > 0
                ),
                weight="capacity",
            )
        sink = (num_layers, int(query[b]))
        for j in range(n):
            flows[b, j] = nx.maximum_flow_value(graph, (0, j), sink)
    return flows.to(patterns.device)
