"""The public verbs: ``capture``, ``intervene``, ``run_with_cache``, ``run_with_hooks`` and
``list_sites``.

They work alike on transformers models (sites ``layers.{i}.attn.pattern``, patterns [batch,
heads, queries, keys]) and on the classic models (site ``attention``, patterns [batch, tokens]).
Contexts nest freely on one model: the first one entered switches the model over, the last one
left switches it back, also when the body raised.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn

from attnexplain.errors import HookError, InvalidInputError
from attnexplain.hooks.cache import AttentionCache
from attnexplain.hooks.classic_backend import ClassicBackend
from attnexplain.hooks.interventions import Intervention
from attnexplain.hooks.session import Backend, HookSession
from attnexplain.hooks.sites import Site, as_indices
from attnexplain.hooks.target import hooked_module

# Model -> its open session. A plain dict: the session refers to its model, so weak keys would
# not free anything; entries are removed when the last context on the model closes.
_SESSIONS: dict[nn.Module, HookSession] = {}


def _is_instance(model: nn.Module, module_name: str, class_name: str) -> bool:
    """``isinstance(model, module_name.class_name)``, without importing ``module_name``: whoever
    holds such a model has imported its module already. Keeps the hooks free of imports of
    transformers (~2 s) and of the model packages (which depend on the hooks, not the reverse).
    """
    module = sys.modules.get(module_name)
    return module is not None and isinstance(model, getattr(module, class_name))


def _backend(model: nn.Module) -> Backend:
    # ClassicModel, AttentionCNN: every model that pools by attention through attention_hook
    if _is_instance(model, "attnexplain.models.classic", "AttendingClassifier"):
        return ClassicBackend(model)
    if _is_instance(model, "transformers", "PreTrainedModel"):
        from attnexplain.hooks.transformers_backend import TransformersBackend

        return TransformersBackend(model)
    raise HookError(
        "attention hooks work on attnexplain's attention-pooling classifiers (ClassicModel, "
        "AttentionCNN), on transformers models "
        "(PreTrainedModel) and on wrappers of those that implement attnexplain.hooks.HookTarget "
        f"(such as HFClassifier); got {type(model).__name__}"
    )


@contextmanager
def _session(model: nn.Module, sites: list[Site]) -> Iterator[HookSession]:
    model = hooked_module(model)
    session = _SESSIONS.get(model)
    if session is None:
        session = HookSession(_backend(model))
    session.check_sites(sites)
    if session.users == 0:
        session.open()
        _SESSIONS[model] = session
    session.users += 1
    try:
        yield session
    finally:
        session.users -= 1
        if session.users == 0:
            del _SESSIONS[model]
            session.close()


def list_sites(model: nn.Module) -> list[str]:
    """The attention sites of ``model`` in forward order, e.g. ``["layers.0.attn.pattern",
    ...]`` for a transformer or ``["attention"]`` for a classic model.

    Raises ``HookError`` for a model whose attention cannot be hooked.
    """
    model = hooked_module(model)
    session = _SESSIONS.get(model)
    return (session.backend if session is not None else _backend(model)).site_names()


@contextmanager
def capture(
    model: nn.Module,
    sites: Iterable[str | Site] | str | Site | None = None,
    detach: bool = True,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    queries: int | Iterable[int] | None = None,
) -> Iterator[AttentionCache]:
    """Record the attention probabilities of every forward pass run inside the block.

    Parameters
    ----------
    model : a transformers ``PreTrainedModel`` whose attention dispatches through
        ``AttentionInterface``, or a ``ClassicModel``. No ``output_attentions`` or eager switch
        is needed; the model's own attention implementation is restored on exit.
    sites : hook names to record (default: all, see ``list_sites``). Select heads or query rows
        when reading instead: ``cache["layers.0.attn.pattern[queries=0]"]``.
    detach : store detached tensors (default); ``False`` keeps them in the autograd graph.
    reduce : keep ``reduce(pattern)`` instead of each whole pattern, e.g. ``lambda p: p.mean(1,
        keepdim=True)`` (the head mean), so that long inputs keep little. Selecting heads or
        rows when reading applies to what was kept.
    queries : keep only these query rows of each pattern (negative: from the end; ``-1`` is a
        generation step's row), [batch, heads, rows, keys]. Only those rows are then computed:
        where no intervention or whole-pattern capture needs more, the model's output comes
        from PyTorch's fused attention, so capturing the last row of a long prompt costs
        little more than not capturing (transformers models only).

    Yields
    ------
    AttentionCache
        ``cache["layers.3.attn.pattern"]`` -> [batch, heads, queries, keys] (classic:
        ``cache["attention"]`` -> [batch, tokens]), the probabilities that multiplied the
        values, after any intervention active on the model.

    Raises
    ------
    HookError
        For an unknown site or a model whose attention cannot be hooked (checked on entry and
        again after every forward pass).

    Example
    -------
    >>> with capture(model) as cache:
    ...     model(**inputs)
    >>> cache["layers.0.attn.pattern"].shape          # [batch, heads, queries, keys]
    """
    if isinstance(sites, (str, Site)):
        sites = [sites]
    parsed = None if sites is None else [Site.parse(name) for name in sites]
    for site in parsed or []:
        if site.selects:
            raise HookError(
                f"capture records whole patterns; name {site.hook!r} and select when reading, "
                f"e.g. cache[{str(site)!r}]"
            )
    hooks = None if parsed is None else frozenset(site.hook for site in parsed)
    rows = None if queries is None else as_indices(queries, "queries")
    cache = AttentionCache(hooks, detach=detach, reduce=reduce, queries=rows)
    with _session(model, parsed or []) as session:
        if rows is not None and not session.backend.selectable:
            raise HookError(
                f"{type(session.backend.model).__name__}'s attention has no query rows to keep "
                "(one weight per token); capture it without queries="
            )
        session.caches.append(cache)
        try:
            yield cache
        finally:
            # By identity: list.remove would compare caches as mappings of tensors.
            session.caches = [other for other in session.caches if other is not cache]


@contextmanager
def intervene(
    model: nn.Module, interventions: Mapping[str | Site | tuple[str, int], Intervention]
) -> Iterator[None]:
    """Change the attention probabilities at some sites for forward passes run inside the block.

    Parameters
    ----------
    model : as for :func:`capture`.
    interventions : site -> ``fn(pattern, call) -> pattern``. ``pattern`` is the site's selected
        probabilities, [batch, selected heads, selected queries, keys] (classic: [batch,
        tokens]); ``call`` is a :class:`SiteCall` with the ``allowed`` keys. What ``fn`` returns
        is what multiplies the values; gradients flow through it. Built-ins: ``replace``,
        ``uniform``, ``permute``, ``zero_keys``. Interventions run in order, nested contexts'
        after the outer ones.

    Raises
    ------
    HookError
        For an unknown site, a model whose attention cannot be hooked, or a forward pass that
        did not reach an intervened site (an intervention never does nothing silently).

    Example
    -------
    >>> with intervene(model, {"layers.5.attn.pattern[queries=0]": uniform()}):
    ...     logits = model(**inputs).logits
    """
    pairs = [(Site.parse(name), fn) for name, fn in interventions.items()]
    for site, fn in pairs:
        if not callable(fn):
            raise InvalidInputError(
                f"the intervention at {site} must be a function fn(pattern, call) -> pattern, "
                f"got {type(fn).__name__}"
            )
    with _session(model, [site for site, _ in pairs]) as session:
        session.interventions.extend(pairs)
        try:
            yield
        finally:
            for pair in pairs:
                session.interventions.remove(pair)


def run_with_cache(
    model: nn.Module,
    *args: Any,
    sites: Iterable[str | Site] | str | Site | None = None,
    detach: bool = True,
    **kwargs: Any,
) -> tuple[Any, AttentionCache]:
    """``model(*args, **kwargs)`` under :func:`capture`; returns ``(output, cache)``.

    >>> output, cache = run_with_cache(model, **inputs)
    >>> cache["pattern", 0]                      # TransformerLens's key: layers.0.attn.pattern
    """
    with capture(model, sites=sites, detach=detach) as cache:
        output = model(*args, **kwargs)
    return output, cache


def run_with_hooks(
    model: nn.Module,
    *args: Any,
    hooks: Iterable[tuple[str | Site | tuple[str, int], Intervention]],
    **kwargs: Any,
) -> Any:
    """``model(*args, **kwargs)`` with the attention at each site of ``hooks`` changed by its
    function (:func:`intervene`, one context per pair, in order); returns the output.

    ``hooks``: ``[(site, fn), ...]``; ``fn(pattern, call) -> pattern`` as for
    :func:`intervene`; a site may be named twice (its functions run in order). Side by side
    with TransformerLens:

    ========================================================  =================================
    TransformerLens                                           attnexplain
    ========================================================  =================================
    ``model.run_with_hooks(tokens, fwd_hooks=[(name, fn)])``  ``run_with_hooks(model,
                                                              **inputs, hooks=[(site, fn)])``
    ``"blocks.3.attn.hook_pattern"``                          ``"layers.3.attn.pattern"`` or
                                                              ``("pattern", 3)``
    ``fn(pattern, hook) -> pattern``                          ``fn(pattern, call) -> pattern``
    ========================================================  =================================

    Unlike TransformerLens, ``model`` is the transformers model (or a classic model) itself,
    and ``pattern`` is the site's selection (e.g. ``"layers.3.attn.pattern[heads=0]"``).

    Example
    -------
    >>> logits = run_with_hooks(model, **inputs, hooks=[(("pattern", 5), uniform())]).logits
    """
    with ExitStack() as stack:
        for site, fn in hooks:
            stack.enter_context(intervene(model, {site: fn}))
        return model(*args, **kwargs)
