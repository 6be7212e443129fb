"""Decode candidate attentions at a transformer's site through only the rows that reach the
classifier: the fast path of :meth:`attnexplain.models.hf_site.SiteSplit.decode`.

A candidate replaces the site's query row q, so in the site layer only row q changes: it is
the candidate times the layer's values, then the layer's per-row maps (output projection,
norms, MLP). What happens above the site depends on the family:

- encoders, site at the last layer: the head reads row q = 0 and nothing else changes;
- decoders, any site: causal attention keeps every row before q unchanged in every layer, so
  each layer above is row q alone, attending to the keys and values of the other rows (from
  one pass over the unchanged input) and its own;
- encoders, site below the last layer: every row of the next layer attends to the changed
  row, so the layers between run on all rows; the last layer again runs row 0 alone, against
  keys and values of all rows.

A row runs alone as a one-token sequence through the real layer modules: under the
attention implementation :data:`ROWS_IMPLEMENTATION` (eager attention, as the hooks use), a
layer with a handler computes its attention from given keys and values instead of the
one-token ones, and the classifier head reads the one token as it reads row 0 or the last
token. Nothing is re-implemented per architecture: anything that dispatches its attention
through transformers' AttentionInterface (the hooks need that too) works. Exact to float
rounding against the full decode (tests: 1e-5 on BERT, DistilBERT, GPT-2 and Llama, site at
the last and at a lower layer).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from attnexplain.data.batching import model_inputs
from attnexplain.errors import HookError
from attnexplain.hooks.transformers_backend import (
    _BINDINGS,
    ATTN_IMPLEMENTATION,
    hooked_attention_forward,
)

if TYPE_CHECKING:
    from attnexplain.models.hf_site import SiteSplit, TransformerState

ROWS_IMPLEMENTATION = "attnexplain-site-rows"
# attention module -> what computes its attention while a decode runs (see _attention)
Handler = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]
_HANDLERS: dict[nn.Module, Handler] = {}


def _attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The attention function of :data:`ROWS_IMPLEMENTATION`: the module's handler if it
    has one, else eager attention (the hooks' function, with no session bound)."""
    handler = _HANDLERS.get(module, hooked_attention_forward)
    return handler(module, query, key, value, attention_mask, scaling, dropout, **kwargs)


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ROWS_IMPLEMENTATION, _attention)
    AttentionMaskInterface.register(ROWS_IMPLEMENTATION, eager_mask)


class _Stop(Exception):
    """Ends a forward pass once what it was run for has been recorded."""


def _query_row(mask: torch.Tensor | None, query: torch.Tensor) -> torch.Tensor | None:
    """Row ``query[b]`` of an attention mask [batch or 1, heads or 1, queries, keys]:
    [batch, heads or 1, 1, keys]; None stays None."""
    if mask is None:
        return None
    mask = mask.expand(len(query), *mask.shape[1:])
    if mask.shape[-2] == 1:
        return mask
    return mask[torch.arange(len(query)), :, query].unsqueeze(2)


def _attend_to(
    keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None, own: torch.Tensor | None
) -> Handler:
    """A handler: the one-token query attends to ``keys``/``values`` [rows, kv_heads, tokens,
    dim] under ``mask`` [rows, *, 1, tokens], with the token's own key and value put at
    position ``own`` [rows] (decoders: its row in the sequence), or not (None)."""

    def handler(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        all_keys, all_values = keys, values
        if own is not None:
            rows = torch.arange(len(own))
            all_keys, all_values = keys.clone(), values.clone()
            all_keys[rows, :, own] = key[:, :, 0]
            all_values[rows, :, own] = value[:, :, 0]
        return hooked_attention_forward(
            module, query, all_keys, all_values, mask, scaling, dropout, **kwargs
        )

    return handler


def _record(into: dict, name: str, query_rows: torch.Tensor, stop: bool) -> Handler:
    """A handler that records the keys, values and query rows' mask under ``name`` and then
    attends as usual, or ends the pass (``stop``)."""

    def handler(module, query, key, value, attention_mask, *args, **kwargs):
        into[name] = (key, value, _query_row(attention_mask, query_rows))
        if stop:
            raise _Stop
        return hooked_attention_forward(module, query, key, value, attention_mask, *args, **kwargs)

    return handler


@dataclass
class _Shared:
    """What every candidate of one state shares: the site's keys/values/mask row, the keys,
    values and mask rows of the layers above (decoders), and the site layer's output on all
    rows (encoders with layers above the site)."""

    site: tuple
    above: dict[int, tuple] = field(default_factory=dict)
    output: torch.Tensor | None = None


class RowDecoder:
    """The fast decode of one :class:`SiteSplit` (module docstring).

    What every candidate of a state shares (one pass of the site layer, and of the layers
    above for decoders) is computed once per state and kept while nothing can ask for
    gradients through it; when something can (grad mode on and the weights or the state's
    hidden states require gradients), it is recomputed on every call so that gradients are
    exact.
    """

    def __init__(self, split: SiteSplit, attention_modules: list[nn.Module]) -> None:
        self.split = split
        self.modules = attention_modules
        self.last = len(attention_modules) - 1
        self._cache: tuple | None = None  # (key, weakref to the state's hidden, _Shared)

    def blocker(self) -> str | None:
        """Why rows cannot be decoded alone right now (a sentence), or None."""
        model = self.split.model
        if model.training:
            return "the model is in training mode (dropout differs per row)"
        if model.config._attn_implementation == ATTN_IMPLEMENTATION or any(
            module in _BINDINGS for module in self.modules
        ):
            return "a capture or intervention session is open on the model"
        return None

    def decode(self, state: TransformerState, flat: torch.Tensor, k: int) -> torch.Tensor:
        """Logits [batch * k, classes] for candidates ``flat`` [batch * k, heads, tokens],
        k consecutive ones per instance."""
        split, site = self.split, self.split.layer
        shared = self._shared(state)
        count, heads, tokens = len(state.query), flat.shape[-2], flat.shape[-1]
        _, values, _ = shared.site
        values = values.repeat_interleave(heads // values.shape[1], dim=1)  # query heads
        weights = flat.reshape(count, k, heads, tokens).to(values.dtype)
        mixed = torch.einsum("bkht,bhtd->bkhd", weights, values).reshape(count * k, 1, heads, -1)

        def candidates_times_values(*args, **kwargs):
            return mixed, flat.unsqueeze(2)

        handlers = {site: candidates_times_values}
        rows = torch.arange(count)
        query = state.query.repeat_interleave(k)
        hidden = state.hidden[rows, state.query].repeat_interleave(k, 0).unsqueeze(1)
        inputs = _row_inputs(state, k)
        if split.causal or site == self.last:
            for layer, recorded in shared.above.items():
                handlers[layer] = _attend_to(*(_repeat(t, k) for t in recorded), query)
            # decoders: the one token sits at its own position (rotary embeddings)
            positions = {"position_ids": query.unsqueeze(1)} if split.causal else {}
            return self._run(site, hidden, inputs, handlers, **positions)
        row = self._run(site, hidden, inputs, handlers, stop_after=site)
        above = shared.output.repeat_interleave(k, 0)
        above = above.index_put((torch.arange(count * k), query), row[:, 0])
        return self._above_an_encoder_site(state, above, query, inputs, k)

    def _above_an_encoder_site(
        self,
        state: TransformerState,
        above: torch.Tensor,
        query: torch.Tensor,
        row_inputs: dict[str, torch.Tensor],
        k: int,
    ) -> torch.Tensor:
        """Logits from the site layer's output ``above`` [batch * k, tokens, dim] of an
        encoder below its last layer: the layers between on every row, up to the last
        layer's attention (its keys, values and input), then the last layer for row
        ``query`` alone (``row_inputs``: :func:`_row_inputs`)."""
        split = self.split
        recorded, last_input = {}, {}

        def grab_input(module, args, kwargs):
            last_input["hidden"] = args[0] if args else kwargs["hidden_states"]

        handle = split.layers[self.last].register_forward_pre_hook(grab_input, with_kwargs=True)
        try:
            self._run(
                split.layer + 1,
                above,
                model_inputs(
                    *(_repeat(t, k) for t in (state.token_ids, state.padding_mask, state.pixels))
                ),
                {self.last: _record(recorded, "last", query, stop=True)},
            )
        except _Stop:
            pass
        finally:
            handle.remove()
        handlers = {self.last: _attend_to(*recorded["last"], None)}
        hidden = last_input["hidden"][torch.arange(len(query)), query].unsqueeze(1)
        return self._run(self.last, hidden, row_inputs, handlers)

    def _run(
        self,
        start: int,
        hidden: torch.Tensor,
        inputs: dict[str, torch.Tensor],
        handlers: dict[int, Handler],
        stop_after: int | None = None,
        **extra,
    ) -> torch.Tensor:
        """The model from layer ``start`` (reading ``hidden`` [rows, tokens, dim]) with
        ``handlers`` computing the attention of their layers: the logits, or the output
        [rows, tokens, dim] of layer ``stop_after`` (the pass ends there). ``inputs`` (the
        model's keyword inputs for ``rows``, see :func:`~attnexplain.data.batching.model_inputs`)
        feed what the model computes before its layers (masks, positions, embeddings that the
        site's ``hidden`` then replaces); ``extra`` go to the model too."""
        split = self.split
        grabbed = {}

        def stop(module, args, output):
            grabbed["output"] = output[0] if isinstance(output, tuple) else output
            raise _Stop

        with self._handled(handlers), split._starting_at(start, hidden):
            if stop_after is None:
                return split.model(**inputs, **extra).logits
            handle = split.layers[stop_after].register_forward_hook(stop)
            try:
                split.model(**inputs, **extra)
            except _Stop:
                pass
            finally:
                handle.remove()
        return grabbed["output"]

    @contextmanager
    def _handled(self, handlers: dict[int, Handler]) -> Iterator[None]:
        """The model under :data:`ROWS_IMPLEMENTATION` with ``handlers`` (layer -> handler)
        bound; its own implementation is put back afterwards."""
        _register()
        model = self.split.model
        previous = model.config._attn_implementation
        bound = [self.modules[layer] for layer in handlers]
        _HANDLERS.update(zip(bound, handlers.values(), strict=True))
        try:
            if previous != ROWS_IMPLEMENTATION:
                model.set_attn_implementation(ROWS_IMPLEMENTATION)
            if model.config._attn_implementation != ROWS_IMPLEMENTATION:
                raise HookError(
                    f"transformers refused to switch {type(model).__name__} to a custom "
                    "attention implementation; decode it with fast=False"
                )
            yield
        finally:
            for module in bound:
                _HANDLERS.pop(module, None)
            if model.config._attn_implementation != previous:
                model.set_attn_implementation(previous)

    def _shared(self, state: TransformerState) -> _Shared:
        """:class:`_Shared` for ``state``, from the cache when it may be kept (class
        docstring)."""
        weights = [p for layer in self.split.layers[self.split.layer :] for p in layer.parameters()]
        if torch.is_grad_enabled() and (
            state.hidden.requires_grad or any(p.requires_grad for p in weights)
        ):
            return self._compute_shared(state)
        key = (id(state.hidden), state.hidden._version, sum(p._version for p in weights))
        cached = self._cache
        if cached is not None and cached[0] == key and cached[1]() is state.hidden:
            return cached[2]
        shared = self._compute_shared(state)
        self._cache = (key, weakref.ref(state.hidden), shared)
        return shared

    def _compute_shared(self, state: TransformerState) -> _Shared:
        """One pass over every row of ``state`` from the site layer with the model's own
        attention, recording what :meth:`decode` reuses; it ends as soon as that is done."""
        split, site = self.split, self.split.layer
        recorded = {}
        keep_output = not split.causal and site < self.last
        # decoders record every layer above; the pass ends at the last attention it needs
        layers = range(site, self.last + 1) if split.causal else [site]
        handlers = {
            layer: _record(
                recorded, layer, state.query, stop=layer == layers[-1] and not keep_output
            )
            for layer in layers
        }
        try:
            output = self._run(
                site,
                state.hidden,
                state.model_inputs(),
                handlers,
                stop_after=site if keep_output else None,
            )
        except _Stop:
            output = None
        return _Shared(
            recorded[site],
            {layer: recorded[layer] for layer in layers if layer != site},
            output if keep_output else None,
        )


def _row_inputs(state: TransformerState, k: int) -> dict[str, torch.Tensor]:
    """The model's keyword inputs for the query rows run alone, each ``k`` times in a row:
    text, the query token's id and mask [batch * k, 1]; images, the images [batch * k,
    channels, height, width] (their embeddings are computed and then replaced at the site)."""
    ids = state.token_ids[torch.arange(len(state.query)), state.query]
    ids = ids.repeat_interleave(k, 0).unsqueeze(1)
    return model_inputs(ids, torch.ones_like(ids), _repeat(state.pixels, k))


def _repeat(tensor: torch.Tensor | None, times: int) -> torch.Tensor | None:
    """Each row ``times`` times in a row (None stays None)."""
    return None if tensor is None else tensor.repeat_interleave(times, dim=0)
