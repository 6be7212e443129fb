"""Split a transformers classifier at one attention site: encode the layers below it once,
then decode many candidate attentions through the site layer and what follows.

The site is one layer's attention, all heads, at the query row the classifier reads: row 0
(``[CLS]``) for encoders, the last real token for decoders (GPT-2, Llama), whose
``...ForSequenceClassification`` heads read that token.

Decoding runs only what a candidate changes (:mod:`attnexplain.models.site_rows`): the site
layer for the query row alone and, above it, only the rows whose output reaches the
classifier. ``decode(..., fast=False)`` runs the site layer and everything above on every
row, with the candidate put in through the hooks: the reference the fast path is tested
against (1e-5).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attnexplain.data.batching import Batch, model_inputs
from attnexplain.errors import HookError
from attnexplain.hooks import capture, intervene, layer_site
from attnexplain.hooks.interventions import SiteCall
from attnexplain.hooks.transformers_backend import attention_sites
from attnexplain.models.site_rows import RowDecoder


@dataclass
class TransformerState:
    """What decoding needs, computed once per batch.

    hidden: [batch, tokens, dim], the hidden states entering the site layer;
    token_ids, padding_mask, content_mask: [batch, tokens]; query: [batch] long, the row the
    classifier reads; attention: [batch, heads, tokens], the site's own weights in that row;
    pixels: [batch, channels, height, width] for an image model (what it reads instead of
    ``token_ids``), else None.
    """

    hidden: torch.Tensor
    token_ids: torch.Tensor
    padding_mask: torch.Tensor
    content_mask: torch.Tensor
    query: torch.Tensor
    attention: torch.Tensor
    pixels: torch.Tensor | None = None

    @property
    def support(self) -> torch.Tensor:
        """[batch, tokens] bool: where the site row may put mass (every unpadded key, the
        special tokens included; decoders: all of them precede the last-token row)."""
        return self.padding_mask.bool()

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """transformers' keyword inputs that reproduce this state's batch."""
        return model_inputs(self.token_ids, self.padding_mask, self.pixels)

    def repeat(self, times: int) -> TransformerState:
        """Each instance ``times`` times in a row (for K candidates per instance)."""
        return TransformerState(
            *(
                None if t is None else t.repeat_interleave(times, dim=0)
                for t in (
                    self.hidden,
                    self.token_ids,
                    self.padding_mask,
                    self.content_mask,
                    self.query,
                    self.attention,
                    self.pixels,
                )
            )
        )


class _Skip(nn.Module):
    """Stands in for a layer below the site during decoding: passes hidden states [batch,
    tokens, dim] through. Other attributes are the layer's, for models whose layer loop reads
    them (ModernBERT picks each layer's mask by ``layer.attention_type``)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self._layer = (layer,)  # in a tuple: not registered as a submodule

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "_layer":  # not set yet (a copy being built): no layer to ask
                raise
            return getattr(self._layer[0], name)

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden_states


def _layer_stack(model: nn.Module, attention_modules: list[nn.Module]) -> nn.ModuleList:
    """The ModuleList of transformer layers: each of its children holds one attention site."""
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == len(attention_modules):
            owners = [
                any(m is a for m in layer.modules())
                for layer, a in zip(module, attention_modules, strict=True)
            ]
            if all(owners):
                return module
    raise HookError(
        f"could not find the layer stack of {type(model).__name__}: the split "
        f"encode/decode works on models with one attention module per layer"
    )


def _check_reads_one_row(model: nn.Module) -> None:
    """Raise ``HookError`` for a classifier head that pools every row (ModernBERT's
    ``classifier_pooling="mean"``): the split needs a head that reads one row."""
    pooling = getattr(model.config, "classifier_pooling", "cls")
    if pooling != "cls":
        raise HookError(
            f"{type(model).__name__} pools every row into its classifier "
            f"(config.classifier_pooling={pooling!r}), but the site split needs a classifier "
            "that reads one row ([CLS] or the last token); use classifier_pooling='cls'"
        )


def _replace_hidden(hidden: torch.Tensor):
    """A forward pre-hook that swaps the layer's input hidden states for ``hidden``."""

    def hook(module, args, kwargs):
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}

    return hook


def _with_rows(pattern: torch.Tensor, query: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``pattern`` [batch, heads, queries, keys] with row ``query[b]`` of each instance set to
    ``rows`` [batch, heads, keys]; a new tensor, differentiable in ``rows``."""
    pattern = pattern.clone()
    pattern[torch.arange(len(query)), :, query] = rows.to(pattern.dtype)
    return pattern


class SiteSplit:
    """encode -> attention -> decode for a transformers sequence classifier at layer
    ``layer`` (negative counts from the end; default: the last layer)."""

    def __init__(self, model: nn.Module, layer: int = -1) -> None:
        sites = attention_sites(model)
        if not sites:
            raise HookError(
                f"{type(model).__name__} does not dispatch its attention through "
                f"transformers' AttentionInterface: it cannot be split at a site"
            )
        _check_reads_one_row(model)
        modules = list(sites.values())
        if not -len(modules) <= layer < len(modules):
            raise HookError(
                f"{type(model).__name__} has {len(modules)} layers; layer {layer} does not exist"
            )
        self.model = model
        self.layer = layer % len(modules)
        self.site = layer_site(self.layer)
        self.layers = _layer_stack(model, modules)
        self.causal = bool(getattr(modules[self.layer], "is_causal", False))
        self._rows = RowDecoder(self, modules)

    def query_rows(self, batch: Batch) -> torch.Tensor:
        """[batch] long: 0 for encoders, the last real token for decoders."""
        return batch.lengths - 1 if self.causal else torch.zeros_like(batch.lengths)

    def encode(self, batch: Batch) -> TransformerState:
        """One forward pass; keeps the hidden states entering the site layer and the site's
        weights at the query rows. Differentiable (nothing is detached)."""
        grabbed = {}

        def grab(module, args, kwargs):
            grabbed["hidden"] = args[0] if args else kwargs["hidden_states"]

        handle = self.layers[self.layer].register_forward_pre_hook(grab, with_kwargs=True)
        try:
            _, rows = self.forward_with_attention(batch)
        finally:
            handle.remove()
        return TransformerState(
            grabbed["hidden"],
            batch.token_ids,
            batch.padding_mask,
            batch.content_mask,
            self.query_rows(batch),
            rows,
            batch.pixels,
        )

    def forward_with_attention(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [batch, classes] and the site's weights at the query rows [batch, heads,
        tokens], from one differentiable forward pass (for training against attention)."""
        with capture(self.model, self.site, detach=False) as cache:
            logits = self.model(**batch.model_inputs()).logits
        rows = cache[self.site][torch.arange(len(batch)), :, self.query_rows(batch)]
        return logits, rows

    def uniform_rows(self, batch: Batch):
        """A context in which the site's query rows attend uniformly to their allowed keys
        (W&P's uniform baseline for a transformer); the model's own code is untouched."""
        query = self.query_rows(batch)
        rows = torch.arange(len(batch))

        def uniform_at_query(pattern: torch.Tensor, call: SiteCall) -> torch.Tensor:
            allowed = call.allowed.expand_as(pattern)[rows, :, query].to(pattern.dtype)
            return _with_rows(pattern, query, allowed / allowed.sum(-1, keepdim=True))

        return intervene(self.model, {self.site: uniform_at_query})

    def decode(
        self, state: TransformerState, attention: torch.Tensor, fast: bool = True
    ) -> torch.Tensor:
        """Logits for candidate weights at the site's query rows.

        attention: [batch, heads, tokens] -> logits [batch, classes]; or [batch, K, heads,
        tokens] -> [batch, K, classes]. Only the site layer and those above it run: with
        ``fast`` (the default) only their rows that reach the classifier
        (:mod:`attnexplain.models.site_rows`), otherwise all their rows. ``fast`` falls back
        to the full decode while a capture or intervention session is open on the model (it
        must see every call of the site) and in training mode (dropout). Differentiable in
        ``attention`` (and in ``state.hidden`` and the weights, whenever gradients are being
        recorded).
        """
        candidates = attention.dim() == 4
        k = attention.shape[1] if candidates else 1
        flat = attention.reshape(-1, *attention.shape[-2:]) if candidates else attention
        if fast and self.row_decode_blocker() is None:
            logits = self._rows.decode(state, flat, k)
        else:
            logits = self._decode_full(state, flat, k)
        return logits.reshape(attention.shape[0], k, -1) if candidates else logits

    def row_decode_blocker(self) -> str | None:
        """Why :meth:`decode` cannot run the query rows alone right now (a sentence), or None."""
        return self._rows.blocker()

    def _decode_full(self, state: TransformerState, flat: torch.Tensor, k: int) -> torch.Tensor:
        """Every row of the site layer and above, the candidates put in through the hooks."""
        expanded = state.repeat(k) if k > 1 else state

        def put_rows(pattern: torch.Tensor, call: SiteCall) -> torch.Tensor:
            return _with_rows(pattern, expanded.query, flat)

        with self._from_site(expanded.hidden), intervene(self.model, {self.site: put_rows}):
            return self.model(**expanded.model_inputs()).logits

    @contextmanager
    def _from_site(self, hidden: torch.Tensor) -> Iterator[None]:
        """Layers below the site pass through; the site layer reads ``hidden``."""
        with self._starting_at(self.layer, hidden):
            yield

    @contextmanager
    def _starting_at(self, index: int, hidden: torch.Tensor) -> Iterator[None]:
        """Layers below ``index`` pass through; layer ``index`` reads ``hidden`` (its other
        pre-hooks see ``hidden`` too)."""
        below = [self.layers[i] for i in range(index)]
        handle = self.layers[index].register_forward_pre_hook(
            _replace_hidden(hidden), with_kwargs=True, prepend=True
        )
        try:
            for i in range(index):
                self.layers[i] = _Skip(below[i])
            yield
        finally:
            for i, module in enumerate(below):
                self.layers[i] = module
            handle.remove()
