"""Gradient-weighted attention rollout (Chefer, Gur & Wolf 2021, "Generic Attention-model
Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers"), encoder rule.

Per layer l, with A_l [heads, tokens, tokens] the attention probabilities and
grad A_l = d y_target / d A_l the gradient of the explained class's logit:

    Abar_l = mean over heads of (grad A_l * A_l)^+          (clamped at 0, then averaged)
    R = I;  R <- R + Abar_l R   for l = 1 .. L              i.e. R = (I + Abar_L) ... (I + Abar_1)

and token j scores R[q, j] at the row q the classifier reads. R keeps the identity it starts
from, so a decoder's explained (last) token also carries its own residual 1.
Classic models have one attention step and no query token: token t scores
(alpha_t * d y_target / d alpha_t)^+.
"""

from __future__ import annotations

import torch

from attnexplain.attribution.adapter import Model
from attnexplain.attribution.attention import site_gradient
from attnexplain.attribution.attention_graph import compose
from attnexplain.attribution.layerwise import explained_rows, rows_of, run, target_logit
from attnexplain.attribution.result import MethodOutput
from attnexplain.data.batching import Batch
from attnexplain.hooks import Intervention, SiteCall, intervene, list_sites
from attnexplain.models.hf import HFClassifier


def relevance_maps(model: HFClassifier, batch: Batch, target: torch.Tensor) -> torch.Tensor:
    """Abar_l for every layer: [batch, layers, tokens, tokens] >= 0, first layer first.

    Each layer's pattern gets a zero offset, a leaf of the graph, added where it multiplies
    the values (through the hooks): the offset's gradient is d y_target / d A_l with every
    path from A_l to the output included (through the layers above, their attention too),
    whether or not the model's weights require gradients.
    """
    sites = list_sites(model)
    patterns: dict[str, torch.Tensor] = {}
    offsets: dict[str, torch.Tensor] = {}

    def with_offset(site: str) -> Intervention:
        def intervention(pattern: torch.Tensor, call: SiteCall) -> torch.Tensor:
            patterns[site] = pattern.detach()
            offsets[site] = torch.zeros_like(patterns[site], requires_grad=True)
            return pattern + offsets[site]

        return intervention

    with torch.enable_grad(), intervene(model, {site: with_offset(site) for site in sites}):
        objective = target_logit(
            run(model, batch.token_ids, batch.padding_mask, batch.segments), target
        ).sum()
        gradients = torch.autograd.grad(objective, [offsets[site] for site in sites])
    maps = [
        (patterns[site] * gradient).clamp_min(0).mean(1)
        for site, gradient in zip(sites, gradients, strict=True)
    ]
    return torch.stack(maps, 1)


def relevance_rollout(maps: torch.Tensor) -> torch.Tensor:
    """R = (I + Abar_L) ... (I + Abar_1): maps [batch, layers, tokens, tokens] -> [batch,
    tokens, tokens]."""
    identity = torch.eye(maps.shape[-1], dtype=maps.dtype, device=maps.device)
    return compose(identity + maps)


def gradient_rollout(model: Model, batch: Batch, target: torch.Tensor) -> MethodOutput:
    """Chefer et al.'s relevance of each token for the target class (module docstring).
    Scores [batch, tokens] >= 0."""
    if not isinstance(model, HFClassifier):

        def objective(logits: torch.Tensor) -> torch.Tensor:
            return target_logit(logits, target).sum()

        attention, gradient = site_gradient(model, batch, objective)
        return MethodOutput((attention * gradient).clamp_min(0))
    rollout = relevance_rollout(relevance_maps(model, batch, target))
    return MethodOutput(rows_of(rollout, explained_rows(model, batch)))
