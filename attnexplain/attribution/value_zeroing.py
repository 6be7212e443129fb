"""Value zeroing (Mohebbi, Zuidema, Chrupala & Alishahi 2023, "Quantifying Context Mixing in
Transformers"), as the authors' code (github.com/hmohebbi/ValueZeroing,
scoring/value_zeroing.py) computes it.

At layer l, the contribution of token j to token i is how far token i's output moves when
token j's value vector is zeroed (in every head, for every query row, i = j included), the
layer rerun on the input it has in a plain pass:

    VZ_l[i, j] = 1 - cos(y_i, y_i^{not j}),   y: the layer's output, v_j = 0 in every row

and each row is then normalised to sum 1. Zeroing v_j is exactly zeroing the attention
weight A[i, j] in every row without renormalising, which is how it is done here: through the
hooks, on any transformer they support. A token that row i does not attend to (A[i, j] = 0
in every head) changes nothing and scores exactly 0.

``rollout=False`` (default): the row the classifier reads at the site layer. ``rollout=True``:
the normalised matrices multiplied across layers, VZ_L ... VZ_1 (no residual added), at that
row. Classic models (one attention step, no layer around it): the output is the context
vector c = sum_t alpha_t h_t, and token t scores 1 - cos(c, c - alpha_t h_t), unnormalised.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional

from attnexplain.attribution.adapter import Model
from attnexplain.attribution.attention_graph import compose
from attnexplain.attribution.layerwise import explained_rows, layer_stack, rows_of, run
from attnexplain.attribution.norms import contribution_vectors
from attnexplain.attribution.result import MethodOutput
from attnexplain.data.batching import TOKEN_BUDGET, Batch
from attnexplain.hooks import SiteCall, intervene, list_sites
from attnexplain.models.hf import HFClassifier


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cos(a, b) over the last dimension, as ||a/|a| - b/|b|||^2 / 2: exactly 0 for equal
    vectors. [..., dim] x [..., dim] -> [...]."""
    difference = functional.normalize(a, dim=-1) - functional.normalize(b, dim=-1)
    return 0.5 * difference.square().sum(-1)


def zeroed_columns(copies: range, tokens: int) -> torch.Tensor:
    """[len(copies), 1, 1, tokens] float, broadcast over heads and query rows: copy 0 keeps
    every weight; copy 1 + j zeroes column j (the weight on token j's value) in every row,
    j's own included."""
    keep = torch.ones(len(copies), 1, 1, tokens)
    for row, copy in enumerate(copies):
        if copy > 0:
            keep[row, ..., copy - 1] = 0.0
    return keep


@contextmanager
def _layer_calls(modules: list[nn.Module]) -> Iterator[dict[int, tuple[tuple, dict]]]:
    """Record, during the block, the positional and keyword arguments each of ``modules`` is
    called with: ``calls[k] = (args, kwargs)``, the latest call."""
    calls: dict[int, tuple[tuple, dict]] = {}

    def recorder(k: int):
        def record(module: nn.Module, args: tuple, kwargs: dict) -> None:
            calls[k] = (args, kwargs)

        return record

    handles = [
        module.register_forward_pre_hook(recorder(k), with_kwargs=True)
        for k, module in enumerate(modules)
    ]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def _repeated(value: object, rows: int) -> object:
    """``value`` (a call's argument) with every tensor of one row, [1, ...], repeated to
    ``rows`` rows (in tuples, lists and dicts too); a key/value cache (which the layer would extend)
    None; other values as they are."""
    if hasattr(value, "get_seq_length"):  # a transformers Cache
        return None
    if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[0] == 1:
        return value.expand(rows, *value.shape[1:])
    if isinstance(value, (tuple, list)):
        return type(value)(_repeated(item, rows) for item in value)
    if isinstance(value, dict):
        return {key: _repeated(item, rows) for key, item in value.items()}
    return value


def _zeroed_outputs(
    model: HFClassifier,
    token_ids: torch.Tensor,
    layers: list[int],
    segments: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Each of ``layers``' output for one unpadded sequence ``token_ids`` [tokens] (a text
    pair's ``segments`` [tokens], else None), as is
    (copy 0) and with each token's value zeroed there (copy 1 + j): per layer [tokens + 1,
    tokens, dim].

    One plain pass records what each of ``layers`` is called with; then each layer alone
    runs on the copies of its input (every layer reads the input it has in a plain pass, so
    zeroing at one layer does not reach the next), in chunks of at most
    :data:`~attnexplain.data.batching.TOKEN_BUDGET` positions.
    """
    tokens = len(token_ids)
    stack = [layer_stack(model)[layer] for layer in layers]
    sites = list_sites(model)
    keep = [zeroed_columns(range(1), tokens)]  # the current copies' columns

    def zero_values(pattern: torch.Tensor, call: SiteCall) -> torch.Tensor:
        return pattern * keep[0].to(pattern.device, pattern.dtype)

    size = max(1, TOKEN_BUDGET // tokens)
    outputs = []
    # the plain pass (copy 0) under the same hooks, so that each layer is called with the
    # masks the hooks' attention reads (a model's fused attention may take none)
    with intervene(model, {sites[layer]: zero_values for layer in layers}):
        with _layer_calls(stack) as calls:
            run(
                model,
                token_ids[None],
                torch.ones_like(token_ids[None]),
                None if segments is None else segments[None],
            )
        for k, module in enumerate(stack):
            args, kwargs = calls[k]
            chunks = []
            for first in range(0, tokens + 1, size):
                copies = range(first, min(first + size, tokens + 1))
                keep[:] = [zeroed_columns(copies, tokens)]
                output = module(*_repeated(args, len(copies)), **_repeated(kwargs, len(copies)))
                chunks.append(output[0] if isinstance(output, tuple) else output)
            outputs.append(torch.cat(chunks))
    return outputs


@torch.no_grad()
def value_zeroing_matrices(model: HFClassifier, batch: Batch, layers: list[int]) -> torch.Tensor:
    """VZ_l[i, j] for each of ``layers``, before rows are normalised: [batch, len(layers),
    tokens, tokens], zero beyond each row's length."""
    width, device = batch.token_ids.shape[1], batch.token_ids.device
    matrices = torch.zeros(len(batch), len(layers), width, width, device=device)
    for b, length in enumerate(batch.lengths.tolist()):
        segments = None if batch.segments is None else batch.segments[b, :length]
        zeroed = _zeroed_outputs(model, batch.token_ids[b, :length], layers, segments)
        for k, outputs in enumerate(zeroed):
            # outputs[1 + j, i] is row i with v_j zeroed: transpose to [i, j, dim].
            distances = cosine_distance(outputs[0].unsqueeze(1), outputs[1:].transpose(0, 1))
            matrices[b, k, :length, :length] = distances
    return matrices


def _classic(model: Model, batch: Batch) -> torch.Tensor:
    """1 - cos(c, c - alpha_t h_t) [batch, tokens] of a classic model."""
    vectors = contribution_vectors(model, batch)
    context = vectors.sum(1, keepdim=True)
    return cosine_distance(context, context - vectors)


@torch.no_grad()
def value_zeroing(model: Model, batch: Batch, rollout: bool = False) -> MethodOutput:
    """Value-zeroing scores of the explained row (module docstring). Scores [batch, tokens]
    >= 0; a transformer's sum to 1 over the row's tokens, framing included."""
    if not isinstance(model, HFClassifier):
        return MethodOutput(_classic(model, batch))
    count = len(list_sites(model))
    layers = list(range(count)) if rollout else [model.site_layer % count]
    matrices = value_zeroing_matrices(model, batch, layers)
    total = matrices.sum(-1, keepdim=True).clamp_min(torch.finfo(matrices.dtype).tiny)
    return MethodOutput(rows_of(compose(matrices / total), explained_rows(model, batch)))
