"""The hooks active on one model, and the check that a forward pass really went through them.

A backend (one per model family) routes each attention call of the model to
:meth:`HookSession.process`, which runs the active interventions in the order their contexts
were entered and then hands the result (what multiplies the values) to every active cache.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, Protocol

import torch
from torch import nn

from attnexplain.errors import HookError
from attnexplain.hooks.cache import AttentionCache
from attnexplain.hooks.interventions import Intervention, apply_intervention
from attnexplain.hooks.sites import Site


class Backend(Protocol):
    """How one model family routes its attention through a session."""

    model: nn.Module
    selectable: bool  # whether its sites accept a heads / queries selection

    def site_names(self) -> list[str]:
        """Every hook name of the model, in forward order."""

    def no_site_message(self) -> str:
        """Why a forward pass may have passed no site at all, and what to do."""

    def attach(self, session: HookSession) -> None:
        """Route the model's attention through ``session.process``."""

    def detach(self) -> None:
        """Undo ``attach``; safe after a partial or failed ``attach``."""


def _summary(names: list[str]) -> str:
    shown = names if len(names) <= 4 else [*names[:2], "...", names[-1]]
    return ", ".join(shown)


class HookSession:
    """The interventions and caches active on one model while at least one context is open."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.interventions: list[tuple[Site, Intervention]] = []
        self.caches: list[AttentionCache] = []
        self.users = 0
        self._calls: Counter[str] = Counter()  # hook -> calls in the current forward pass
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def check_sites(self, sites: Iterable[Site]) -> None:
        """Raise ``HookError`` for a site the model does not have or cannot select in."""
        known = self.backend.site_names()
        model_name = type(self.backend.model).__name__
        for site in sites:
            if site.hook not in known:
                raise HookError(
                    f"{model_name} has no attention site {site.hook!r}; its sites are "
                    f"{_summary(known)} (attnexplain.hooks.list_sites(model) lists them all)"
                )
            if site.selects and not self.backend.selectable:
                raise HookError(
                    f"{model_name}'s site {site.hook!r} has no heads or query rows to select; "
                    f"use {site.hook!r} as it is"
                )

    def open(self) -> None:
        """Attach the backend and watch every forward pass of the model."""
        try:
            self.backend.attach(self)
        except BaseException:
            self.backend.detach()
            raise
        model = self.backend.model
        self._handles = [
            model.register_forward_pre_hook(self._start_forward),
            model.register_forward_hook(self._end_forward),
        ]

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.backend.detach()

    def rows_needed(self, hook: str, num_queries: int) -> tuple[int, ...] | None:
        """What of a pattern with ``num_queries`` query rows the session needs at ``hook``:
        None for the whole pattern (an intervention there, or a cache of every row), else the
        sorted rows the caches keep (empty: none, so the attention may run fused and form no
        probabilities at all)."""
        if any(site.hook == hook for site, _ in self.interventions):
            return None
        needed: set[int] = set()
        for cache in self.caches:
            rows = cache.rows(hook, num_queries)
            if rows is None:
                return None
            needed |= rows
        return tuple(sorted(needed))

    def process(
        self, hook: str, pattern: torch.Tensor, allowed: torch.Tensor, module: nn.Module
    ) -> torch.Tensor:
        """Intervene on and record one attention call.

        pattern: [batch, heads, queries, keys] (classic: [batch, tokens]); allowed: bool,
        broadcastable to it, True where the query may attend. Returns the pattern to use.
        """
        self.passed(hook)
        for site, fn in self.interventions:
            if site.hook == hook:
                pattern = apply_intervention(fn, site, pattern, allowed, module)
        for cache in self.caches:
            cache.record(hook, pattern)
        return pattern

    def record_rows(
        self, hook: str, pattern: torch.Tensor, rows: tuple[int, ...], num_queries: int
    ) -> None:
        """Record one attention call that formed only the query ``rows`` (of ``num_queries``)
        that :meth:`rows_needed` asked for: ``pattern`` [batch, heads, len(rows), keys]."""
        self.passed(hook)
        for cache in self.caches:
            cache.record(hook, pattern, rows, num_queries)

    def passed(self, hook: str) -> None:
        """Count one attention call at ``hook`` (what the after-pass checks read)."""
        self._calls[hook] += 1

    def _start_forward(self, module: nn.Module, args: Any) -> None:
        self._calls = Counter()

    def _end_forward(self, module: nn.Module, args: Any, output: Any) -> None:
        # An intervention that silently did not run would be read as "attention does not
        # matter", so a forward pass that missed a requested site is an error, not a warning.
        if not self._calls:
            raise HookError(self.backend.no_site_message())
        repeated = sorted(hook for hook, calls in self._calls.items() if calls > 1)
        if repeated:
            raise HookError(
                f"{type(module).__name__} ran the attention at site(s) {', '.join(repeated)} "
                "more than once in one forward pass (its layers share an attention module), so "
                "a site would mix several layers; attnexplain does not support this model's "
                "attention. Use a model whose layers each have their own attention module."
            )
        required = {site.hook for site, _ in self.interventions}
        for cache in self.caches:
            required |= cache.hooks or set()
        missing = sorted(required - self._calls.keys())
        if missing:
            raise HookError(
                f"{type(module).__name__} ran a forward pass that did not pass the requested "
                f"site(s) {', '.join(missing)}; nothing was captured or intervened on there"
            )
