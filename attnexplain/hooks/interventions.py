"""Interventions: functions ``fn(pattern, call) -> pattern`` run inside the forward pass.

``pattern`` is the selected part of a site's attention probabilities ([batch, heads, queries,
keys] for transformers, [batch, tokens] for classic models) and ``call`` a :class:`SiteCall`
saying which keys each query may attend to. What ``fn`` returns is what multiplies the values,
so gradients flow through it (to a replacement tensor too).

The built-in interventions are factories: ``replace(weights)``, ``uniform()``,
``permute(generator)`` and ``zero_keys(keys)``. All keep the mass inside the allowed keys, so
nothing ever moves onto padding or, in a decoder, onto future tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from attnexplain.device import draw
from attnexplain.errors import InvalidInputError
from attnexplain.hooks.sites import Site


@dataclass(frozen=True)
class SiteCall:
    """One call of a site, as an intervention sees it.

    ``site``: the site as requested (hook name and selection). ``allowed``: bool, the shape of
    the pattern the intervention gets; True where the query may attend (unpadded keys, inside
    the causal triangle for decoders; a classic model's content tokens). ``module``: the
    attention module being run (a classic model's hook point).
    """

    site: Site
    allowed: torch.Tensor
    module: nn.Module

    @property
    def name(self) -> str:
        return str(self.site)


Intervention = Callable[[torch.Tensor, SiteCall], torch.Tensor]


def apply_intervention(
    fn: Intervention, site: Site, pattern: torch.Tensor, allowed: torch.Tensor, module: nn.Module
) -> torch.Tensor:
    """Run ``fn`` on the part of ``pattern`` that ``site`` selects and write the result back.

    pattern: [batch, heads, queries, keys] (classic: [batch, tokens]); allowed: bool,
    broadcastable to ``pattern``. Returns a new tensor of ``pattern``'s shape.
    """
    selected = site.select(pattern)
    call = SiteCall(site, site.select(allowed.expand_as(pattern)), module)
    result = fn(selected, call)
    if not isinstance(result, torch.Tensor) or result.shape != selected.shape:
        got = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__
        raise InvalidInputError(
            f"the intervention at {site} must return a tensor of shape {tuple(selected.shape)} "
            f"(the selected pattern), got {got}"
        )
    return site.assign(pattern, result)


def replace(weights: torch.Tensor) -> Intervention:
    """Use ``weights`` as the attention, exactly as given (no masking, no renormalising).

    weights: broadcastable to the selected pattern, e.g. [batch, 1, 1, keys] for every head
    and query row of a transformer site, [batch, tokens] for a classic model. Gradients flow
    back to ``weights`` when it requires them.
    """

    def intervention(pattern: torch.Tensor, call: SiteCall) -> torch.Tensor:
        try:
            return weights.to(pattern.device, pattern.dtype).expand(pattern.shape)
        except RuntimeError:
            raise InvalidInputError(
                f"replacement weights of shape {tuple(weights.shape)} do not broadcast to the "
                f"pattern at {call.name}, of shape {tuple(pattern.shape)}"
            ) from None

    return intervention


def uniform() -> Intervention:
    """1 / n over the n allowed keys of each query row (rows with none become all zero)."""

    def intervention(pattern: torch.Tensor, call: SiteCall) -> torch.Tensor:
        allowed = call.allowed.to(pattern.dtype)
        # A fully masked row (a left-padded query in a decoder) would be 0 / 0: keep it at zero
        # rather than let NaN reach the values, where 0 * NaN would poison real tokens.
        return allowed / allowed.sum(-1, keepdim=True).clamp_min(1)

    return intervention


def permute(generator: torch.Generator | None = None) -> Intervention:
    """Shuffle each query row's weights among its allowed keys, independently per row.

    Weights on disallowed keys stay where they are, so the multiset of weights over the allowed
    keys is kept and no mass moves onto padding or future tokens. ``generator`` makes the
    shuffle reproducible.
    """

    def intervention(pattern: torch.Tensor, call: SiteCall) -> torch.Tensor:
        return shuffle_allowed(pattern, call.allowed, generator)

    return intervention


def shuffle_allowed(
    pattern: torch.Tensor, allowed: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Shuffle the last dimension of ``pattern`` among the ``allowed`` positions, independently
    for every row; other positions keep their values.

    pattern: [..., keys]; allowed: bool, broadcastable to ``pattern``. Returns [..., keys].
    """
    allowed = allowed.expand_as(pattern)
    positions = torch.arange(pattern.shape[-1], device=pattern.device)
    noise = draw(torch.rand, pattern.shape, generator, pattern.device)
    # Sources: allowed positions in random order, then disallowed ones ascending (their keys
    # exceed every noise value). Targets: allowed ascending, then disallowed ascending. The
    # tails agree, so disallowed positions map to themselves.
    sources = torch.where(allowed, noise, 1.0 + positions).argsort(-1)
    targets = (~allowed).to(torch.uint8).argsort(dim=-1, stable=True)
    index = torch.empty_like(sources).scatter_(-1, targets, sources)
    return pattern.gather(-1, index)


def zero_keys(keys: Sequence[int] | torch.Tensor) -> Intervention:
    """Zero the attention to ``keys`` and renormalise each row over the rest.

    keys: key positions shared by the whole batch (ints, negative from the end), or a bool mask
    [batch, keys] with True at the keys to zero in each instance. A row left with no mass
    becomes all zero.
    """

    def intervention(pattern: torch.Tensor, call: SiteCall) -> torch.Tensor:
        kept = pattern.masked_fill(_key_mask(keys, pattern), 0.0)
        tiny = torch.finfo(pattern.dtype).tiny
        return kept / kept.sum(-1, keepdim=True).clamp_min(tiny)

    return intervention


def _key_mask(keys: Sequence[int] | torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """Bool mask broadcastable to ``pattern`` [batch, ..., keys], True at the keys to zero."""
    batch, num_keys = pattern.shape[0], pattern.shape[-1]
    if isinstance(keys, torch.Tensor) and keys.dtype == torch.bool:
        if keys.shape != (batch, num_keys):
            raise InvalidInputError(
                f"a key mask must be [batch, keys] = {(batch, num_keys)}, got {tuple(keys.shape)}"
            )
        return keys.to(pattern.device).view(batch, *[1] * (pattern.ndim - 2), num_keys)
    positions = torch.as_tensor(keys, dtype=torch.long, device=pattern.device).flatten()
    if ((positions < -num_keys) | (positions >= num_keys)).any():
        raise InvalidInputError(
            f"key positions {positions.tolist()} out of range for {num_keys} keys"
        )
    mask = torch.zeros(num_keys, dtype=torch.bool, device=pattern.device)
    return mask.index_fill(0, positions % num_keys, True)
