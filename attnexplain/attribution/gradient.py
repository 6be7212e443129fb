"""The Jain & Wallace gradient importance (papers-spec A3)."""

from __future__ import annotations

import torch

from attnexplain.attribution.adapter import Model, input_forward, site_name
from attnexplain.attribution.result import MethodOutput
from attnexplain.data.batching import Batch
from attnexplain.hooks import SiteCall, intervene


def _detached(pattern: torch.Tensor, call: SiteCall) -> torch.Tensor:
    return pattern.detach()


def jw_gradient(model: Model, batch: Batch, target: torch.Tensor) -> MethodOutput:
    """g_t = |sum_d d p_target / d e_{t,d} * e_{t,d}| normalised to sum 1 over content tokens,
    with no gradient flowing through the attention at the site (J&W detach it).

    e is the word embedding, equal to the gradient with respect to the one-hot input at the
    active word times that one-hot; for an image, a token's block of pixels. For transformers
    the whole site layer's attention pattern is detached; attention in the other layers stays
    differentiable. A row whose gradient is all zero scores all zero. Returns [batch, tokens].
    """
    forward = input_forward(model, batch)
    content, trailing = forward.inputs(batch)
    content.requires_grad_()
    with intervene(model, {site_name(model): _detached}):
        probabilities = forward(content, *trailing)
    chosen = probabilities.gather(-1, target.unsqueeze(-1)).sum()
    (gradient,) = torch.autograd.grad(chosen, content)
    importance = (gradient * content.detach()).sum(-1).abs().masked_fill(~batch.content_mask, 0)
    total = importance.sum(-1, keepdim=True).clamp_min(torch.finfo(importance.dtype).tiny)
    return MethodOutput(importance / total)
