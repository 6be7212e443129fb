"""Attention rollout and attention flow (Abnar & Zuidema 2020) on recorded patterns.

Both read the layers as a graph: token j in layer l-1 feeds token i in layer l with weight
A_l[i, j], where A_l = 0.5 * mean over heads of the attention + 0.5 * I (the residual
connection), rows renormalised. Rollout multiplies the layers (A_L ... A_1); flow takes, for
each input token, the maximum flow from it to an output position with A as edge capacities.

A token's score reads one or more output positions' rows, each normalised to sum 1 (as
A&Z's code does; rollout rows already do), and takes the maximum over them: the row the
classifier reads (their subject-verb script, ``run_bert_sv.py``: the verb's row), or every
output position (their SST script, ``compute_corel_distilbert_sst.py``).
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
    patterns: torch.Tensor, lengths: torch.Tensor, outputs: torch.Tensor
) -> torch.Tensor:
    """Maximum flow from every input token to each selected output position.

    patterns: [batch, layers, heads, tokens, tokens]; lengths: [batch], tokens beyond a row's
    length are left out; outputs: [batch, tokens] bool, the output positions to compute (e.g.
    :func:`output_positions`). Returns [batch, tokens, tokens] float: row i the flows into
    output position i, 0 in rows not selected and beyond each row's length. One max-flow per
    (input, output) pair (networkx preflow-push): fine for short texts, slow for long ones
    (cost grows with layers x tokens^3 per output).
    """
    import networkx as nx  # here: only flow needs it, and it is slow to import

    layers = residual_attention(patterns.double())
    num_layers = layers.shape[1]
    flows = torch.zeros(patterns.shape[0], patterns.shape[-1], patterns.shape[-1])
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
        for i in outputs[b, :n].nonzero()[:, 0].tolist():
            for j in range(n):
                flows[b, i, j] = nx.maximum_flow_value(graph, (0, j), (num_layers, i))
    return flows.to(patterns.device)


SCORINGS = ("row", "max-over-outputs")


def output_positions(
    query: torch.Tensor, lengths: torch.Tensor, tokens: int, scoring: str
) -> torch.Tensor:
    """The output positions a token's score reads, for ``scoring`` one of :data:`SCORINGS`:
    [batch, tokens] bool, ``"row"`` the row ``query`` [batch] long (the one the classifier
    reads), ``"max-over-outputs"`` every position below the row's length (``lengths``
    [batch])."""
    positions = torch.arange(tokens, device=lengths.device)
    if scoring == "row":
        return positions == query.unsqueeze(-1)
    return positions < lengths.unsqueeze(-1)


def max_over_outputs(matrices: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """Each input token's largest share over the selected output positions.

    matrices: [batch, tokens, tokens] >= 0, row i output position i's mix of input tokens;
    outputs: [batch, tokens] bool. Each selected row is normalised to sum 1; returns [batch,
    tokens], the maximum over the selected rows (one selected row: that row).
    """
    rows = matrices / matrices.sum(-1, keepdim=True).clamp_min(torch.finfo(matrices.dtype).tiny)
    return rows.masked_fill(~outputs.unsqueeze(-1), 0.0).amax(1)
