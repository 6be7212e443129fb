"""Transformers models: attention routed through a function registered with AttentionInterface.

While a session is open the model runs under ``attn_implementation="attnexplain"``: an eager
attention (softmax(Q K^T * scaling + mask) V) whose probabilities pass through the session
before they multiply V, at the sites where the session needs them whole; elsewhere PyTorch's
fused attention forms the output and only the query rows a capture keeps are computed
(:func:`hooked_attention_forward`). The model's own implementation is put back when the
session closes.
Nothing else is patched: other models, and this one outside the session, run as before.

Which models are supported is decided four ways, cheapest first:

1. a module whose ``forward`` source mentions ``ALL_ATTENTION_FUNCTIONS`` is an attention
   site; a model without any raises :class:`HookError` (DeBERTa-v2, MPNet, XLNet, ...);
2. a model that runs one attention module at several layers (ALBERT's layer groups, or one
   module registered under several layers) raises :class:`HookError`: a site is one call;
3. after ``set_attn_implementation`` the config must report the new implementation
   (transformers refuses, with only a log line, for models it knows do not dispatch);
4. every forward pass must call the function at least once, at every requested site, and
   at most once per site (checked by the session), so a model that bypasses the interface
   or loops over one attention module can never pass silently.
"""

from __future__ import annotations

import functools
import inspect

import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from attnexplain.errors import HookError
from attnexplain.hooks.session import HookSession
from attnexplain.hooks.sites import layer_site

ATTN_IMPLEMENTATION = "attnexplain"
# Additive masks put finfo.min (transformers 5) or -10000 (older code) on masked keys; anything
# this low is a masked key, while position biases such as ALiBi stay far above it.
_MASKED_AT_OR_BELOW = -1e4
# Keyword arguments that change the attention maths in ways this eager function does not model
# (logit soft-capping, attention sinks, T5-style position bias): refuse rather than be wrong.
_UNMODELLED_KWARGS = ("softcap", "sinks", "s_aux", "position_bias")

# Attention module -> the open session and the module's site name; filled while a session is
# open. Keyed by module because the function transformers calls receives only the module.
_BINDINGS: dict[nn.Module, tuple[HookSession, str]] = {}


def allowed_keys(attention_mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Bool mask broadcastable to ``like`` [batch, heads, queries, keys]: True where a query may
    attend. ``attention_mask`` is additive (float) or boolean (True = attend), or None."""
    if attention_mask is None:
        return torch.ones((1, 1, 1, 1), dtype=torch.bool, device=like.device)
    if attention_mask.dtype == torch.bool:
        return attention_mask
    return attention_mask > _MASKED_AT_OR_BELOW


def hooked_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention whose probabilities pass through the module's hook session, if any.

    query: [batch, heads, queries, dim]; key, value: [batch, kv_heads, keys, dim] where
    kv_heads divides heads (grouped-query attention); attention_mask: additive float or bool,
    broadcastable to [batch, heads, queries, keys], or None. Returns the output
    [batch, queries, heads, dim] and the probabilities [batch, heads, queries, keys] that
    multiplied the values.

    Called without a session (AttnLRP's and the fast decode's own implementations call it
    directly), or where the session needs the whole pattern (an intervention, or a capture of
    every row), the attention is eager. Elsewhere in a session the output comes from
    PyTorch's fused attention and only the query rows a capture keeps are formed (none where
    nothing records the site; the probabilities returned are then None), so capturing a
    generation step's row costs about what the model's own fused attention does.
    """
    unmodelled = [name for name in _UNMODELLED_KWARGS if kwargs.get(name) is not None]
    if unmodelled:
        raise HookError(
            f"{type(module).__name__} passes {', '.join(unmodelled)} to its attention, which "
            "attnexplain's eager attention does not implement; its patterns would be wrong"
        )
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    session, hook = _BINDINGS.get(module, (None, ""))
    num_queries = query.shape[2]
    rows = None if session is None else session.rows_needed(hook, num_queries)
    if rows is not None and dropout > 0 and module.training:
        rows = None  # what the fused kernel's dropout kept cannot be recorded
    if session is not None and rows is not None:
        output = _fused_attention(module, query, key, value, attention_mask, scaling, dropout)
        if not rows:
            session.passed(hook)
            return output, None
        selected = torch.tensor(rows, device=query.device)
        mask = attention_mask
        if mask is not None and mask.shape[2] == num_queries:
            mask = mask.index_select(2, selected)
        probs = _probabilities(query.index_select(2, selected), key, mask, scaling)
        session.record_rows(hook, probs, rows, num_queries)
        return output, probs
    probs = _probabilities(query, key, attention_mask, scaling)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    if session is not None:
        probs = session.process(hook, probs, allowed_keys(attention_mask, probs), module)
    output = torch.matmul(probs, _grouped(value, query.shape[1])).transpose(1, 2).contiguous()
    return output, probs


def _grouped(states: torch.Tensor, heads: int) -> torch.Tensor:
    """Keys or values [batch, kv_heads, keys, dim] repeated to ``heads`` query heads (as
    repeating by ``module.num_key_value_groups``, but read from the shapes, so models without
    grouped-query attention need no special case)."""
    groups = heads // states.shape[1]
    return states.repeat_interleave(groups, dim=1) if groups > 1 else states


def _probabilities(
    query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None, scaling: float
) -> torch.Tensor:
    """softmax(Q K^T * scaling + mask): [batch, heads, queries, keys] from query [batch,
    heads, queries, dim] and key [batch, kv_heads, keys, dim]."""
    scores = torch.matmul(query, _grouped(key, query.shape[1]).transpose(-1, -2)) * scaling
    if attention_mask is not None and attention_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    elif attention_mask is not None:
        scores = scores + attention_mask
    # Softmax in float32 as Llama's eager attention does; a no-op cast for float32 models.
    return torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)


def _fused_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float,
) -> torch.Tensor:
    """The attention output [batch, queries, heads, dim] from PyTorch's fused kernel, which
    forms no probabilities (the same maths as the eager path, up to float rounding)."""
    if attention_mask is not None and attention_mask.dtype != torch.bool:
        attention_mask = attention_mask.to(query.dtype)
    output = nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout if module.training else 0.0,
        scale=scaling,
        enable_gqa=key.shape[1] != query.shape[1],
    )
    return output.transpose(1, 2).contiguous()


@functools.cache
def _dispatches(module_class: type) -> bool:
    """Whether a module class's forward looks its attention up in transformers' registry."""
    try:
        source = inspect.getsource(module_class.forward)
    except (OSError, TypeError):  # built-in or defined where no source is kept (a notebook)
        return False
    return "ALL_ATTENTION_FUNCTIONS" in source


def _first_index(path: str) -> int | None:
    """The first numeric component of a module path: the layer of ``bert.encoder.layer.3...``."""
    return next((int(part) for part in path.split(".") if part.isdigit()), None)


def _shared_attention(model: nn.Module) -> str | None:
    """How ``model`` runs one attention module at several layers (a sentence), or None.

    Seen before any forward pass: ALBERT-style layer groups and one module registered under
    several layers. Anything else that calls a module twice per forward pass is caught by the
    session after that pass.
    """
    return _shared_layer_groups(model) or _shared_module(model)


def _shared_layer_groups(model: nn.Module) -> str | None:
    """ALBERT's sharing: ``config.num_hidden_groups`` groups of layer modules, fewer than
    ``num_hidden_layers``, run in turn (each module once per layer of its group)."""
    config = getattr(model, "config", None)
    layers = getattr(config, "num_hidden_layers", None)
    groups = getattr(config, "num_hidden_groups", None)
    if isinstance(layers, int) and isinstance(groups, int) and groups < layers:
        return (
            f"shares its attention modules across its {layers} layers: they run "
            f"{groups} layer group(s) in turn (config.num_hidden_groups={groups})"
        )
    return None


def _shared_module(model: nn.Module) -> str | None:
    """One attention module registered under several layer indices of ``model``."""
    layer_indices: dict[nn.Module, set[int]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        index = _first_index(path)
        if index is not None and _dispatches(type(module)):
            layer_indices.setdefault(module, set()).add(index)
    for module, indices in layer_indices.items():
        if len(indices) > 1:
            return (
                f"shares one attention module ({type(module).__name__}) across its layers "
                f"{', '.join(map(str, sorted(indices)))}"
            )
    return None


def attention_sites(model: nn.Module) -> dict[str, nn.Module]:
    """Site name -> attention module, in forward order.

    One attention module per layer (encoders, decoder-only models): ``layers.{i}.attn.pattern``.
    Otherwise (encoder-decoder models, cross-attention) layer numbers repeat, so each site is
    named by its module path instead: ``model.decoder.layers.0.encoder_attn.pattern``.

    Raises ``HookError`` for a model that runs one attention module at several layers (ALBERT):
    its per-layer patterns would all land on one site.
    """
    shared = _shared_attention(model)
    if shared is not None:
        raise HookError(
            f"{type(model).__name__} {shared}, so per-layer attention sites are not supported: "
            "one site would mix every layer that runs the module. Use a model whose layers "
            "each have their own attention module (BERT, RoBERTa, ELECTRA, ...)."
        )
    found = [(path, m) for path, m in model.named_modules() if _dispatches(type(m))]
    layers = [_first_index(path) for path, _ in found]
    if None not in layers and len(set(layers)) == len(layers):
        return {layer_site(layer): m for layer, (_, m) in zip(layers, found, strict=True)}
    return {f"{path}.pattern": m for path, m in found}


def _register() -> None:
    AttentionInterface.register(ATTN_IMPLEMENTATION, hooked_attention_forward)
    # masking_utils looks the mask builder up under the same name; without one it builds no
    # mask at all, silently dropping padding and causal masking.
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, eager_mask)


class TransformersBackend:
    """Routes a ``PreTrainedModel``'s attention through a session (see the module docstring)."""

    selectable = True

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self._sites = attention_sites(model)
        self._previous: str | None = None
        if not self._sites:
            raise HookError(
                f"{type(model).__name__} does not dispatch its attention through transformers' "
                "AttentionInterface (no module's forward uses ALL_ATTENTION_FUNCTIONS), so "
                "attnexplain cannot capture or intervene on its attention. Use a family that "
                "does (BERT, RoBERTa, DistilBERT, ELECTRA, GPT-2, Llama, ViT, ...)."
            )

    def site_names(self) -> list[str]:
        return list(self._sites)

    def no_site_message(self) -> str:
        return (
            f"{type(self.model).__name__} ran a forward pass without calling attnexplain's "
            "attention function: its attention bypasses transformers' AttentionInterface, so "
            "nothing was captured or intervened on. Use a model family that dispatches through it."
        )

    def attach(self, session: HookSession) -> None:
        _register()
        self._previous = self.model.config._attn_implementation
        self.model.set_attn_implementation(ATTN_IMPLEMENTATION)
        if self.model.config._attn_implementation != ATTN_IMPLEMENTATION:
            raise HookError(
                f"transformers refused to switch {type(self.model).__name__} to a custom "
                "attention implementation (it does not support setting one dynamically), so "
                "attnexplain cannot capture or intervene on its attention"
            )
        for name, module in self._sites.items():
            _BINDINGS[module] = (session, name)

    def detach(self) -> None:
        for module in self._sites.values():
            _BINDINGS.pop(module, None)
        previous, self._previous = self._previous, None
        if previous is not None and self.model.config._attn_implementation != previous:
            self.model.set_attn_implementation(previous)
