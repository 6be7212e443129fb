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

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional

from attnexplain.attribution.adapter import Model
from attnexplain.attribution.attention_graph import compose
from attnexplain.attribution.layerwise import explained_rows, layer_stack, rows_of, run
from attnexplain.attribution.norms import contribution_vectors, inputs_of
from attnexplain.attribution.result import MethodOutput
from attnexplain.data.batching import Batch
from attnexplain.hooks import SiteCall, intervene, list_sites
from attnexplain.models.hf import HFClassifier


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cos(a, b) over the last dimension, as ||a/|a| - b/|b|||^2 / 2: exactly 0 for equal
    vectors. [..., dim] x [..., dim] -> [...]."""
    difference = functional.normalize(a, dim=-1) - functional.normalize(b, dim=-1)
    return 0.5 * difference.square().sum(-1)


def zeroing_mask(tokens: int) -> torch.Tensor:
    """[tokens + 1, 1, tokens, tokens] float: copy 0 keeps every weight; copy 1 + j zeroes
    column j (the weight on token j's value) in every row, j's own included."""
    keep = torch.ones(tokens + 1, tokens, tokens)
    j = torch.arange(tokens)
    keep[1 + j, :, j] = 0.0
    return keep.unsqueeze(1)


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

    One pass over the copies does every layer: each of ``layers`` reads the input it has in
    a plain pass (recorded first), so zeroing at one layer does not reach the next.
    """
    # Imported here: it needs transformers, which `import attnexplain` avoids.
    from attnexplain.models.hf_site import _replace_hidden

    tokens = len(token_ids)
    keep = zeroing_mask(tokens)
    stack = [layer_stack(model)[layer] for layer in layers]
    with inputs_of(stack) as originals:
        run(
            model,
            token_ids[None],
            torch.ones_like(token_ids[None]),
            None if segments is None else segments[None],
        )
    outputs: dict[int, torch.Tensor] = {}

    def zero_values(pattern: torch.Tensor, call: SiteCall) -> torch.Tensor:
        return pattern * keep.to(pattern.device, pattern.dtype)

    def recorder(k: int) -> Callable[[nn.Module, tuple, object], None]:
        def record(module: nn.Module, args: tuple, output: object) -> None:
            outputs[k] = output[0] if isinstance(output, tuple) else output

        return record

    handles = [module.register_forward_hook(recorder(k)) for k, module in enumerate(stack)]
    handles += [
        module.register_forward_pre_hook(
            _replace_hidden(originals[k].expand(tokens + 1, -1, -1)), with_kwargs=True
        )
        for k, module in enumerate(stack)
    ]
    sites = list_sites(model)
    copies = token_ids.expand(tokens + 1, tokens)
    try:
        with intervene(model, {sites[layer]: zero_values for layer in layers}):
            run(model, copies, torch.ones_like(copies))
    finally:
        for handle in handles:
            handle.remove()
    return [outputs[k] for k in range(len(layers))]


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
