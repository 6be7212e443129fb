"""The recorder: a read-only mapping from site names to the attention recorded there."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import torch

from attnexplain.errors import UnknownNameError
from attnexplain.hooks.sites import Site


class AttentionCache(Mapping[str, torch.Tensor]):
    """Attention probabilities recorded per site, as they multiplied the values (after any
    active intervention).

    ``cache["layers.3.attn.pattern"]`` is the latest forward pass's pattern, [batch, heads,
    queries, keys] (classic models: ``cache["attention"]``, [batch, tokens]); a selection in the
    key narrows it, e.g. ``cache["layers.3.attn.pattern[queries=0]"]`` -> [batch, heads, 1, keys].
    ``cache.all(name)`` lists one tensor per forward pass, oldest first. With ``queries``,
    only those query rows of each pattern are kept (and only they are computed, see
    :meth:`rows`); with ``reduce``, what is kept of each pattern is ``reduce(pattern)`` (e.g.
    the head mean, so that a long generation keeps little).

    TransformerLens's idiom reads the same tensor: ``cache["pattern", 3]`` is
    ``cache["layers.3.attn.pattern"]``.

    ============================================  ==============================================
    TransformerLens                               attnexplain
    ============================================  ==============================================
    ``_, cache = model.run_with_cache(tokens)``   ``_, cache = run_with_cache(model, **inputs)``
    ``cache["pattern", 3]``                       ``cache["pattern", 3]`` (or
                                                  ``cache["layers.3.attn.pattern"]``)
    ``cache["blocks.3.attn.hook_pattern"]``       ``cache["layers.3.attn.pattern"]``
    (no equivalent)                               ``cache["layers.3.attn.pattern[heads=0]"]``
    ============================================  ==============================================
    """

    def __init__(
        self,
        hooks: frozenset[str] | None = None,
        detach: bool = True,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
        queries: tuple[int, ...] | None = None,
    ) -> None:
        self.hooks = hooks  # the hook names recorded; None records every hook
        self.queries = queries  # the query rows kept (negative: from the end); None keeps all
        self._detach = detach
        self._reduce = reduce
        self._calls: dict[str, list[torch.Tensor]] = {}

    def records(self, hook: str) -> bool:
        """Whether this cache keeps the patterns of ``hook`` (every hook when none were
        named)."""
        return self.hooks is None or hook in self.hooks

    def rows(self, hook: str, num_queries: int) -> set[int] | None:
        """The query rows of a pattern with ``num_queries`` rows at ``hook`` that this cache
        keeps, as indices in [0, num_queries): None for every row, empty when it does not
        record ``hook``."""
        if not self.records(hook):
            return set()
        if self.queries is None:
            return None
        return {row % num_queries for row in self.queries if -num_queries <= row < num_queries}

    def record(
        self,
        hook: str,
        pattern: torch.Tensor,
        rows: Sequence[int] | None = None,
        num_queries: int | None = None,
    ) -> None:
        """Keep ``pattern`` [batch, heads, queries, keys] (its kept rows, then its reduction)
        if this cache records ``hook``. ``rows``: the query rows ``pattern`` holds, of
        ``num_queries``, when it holds only some (they include every row :meth:`rows` asked
        for); None when it holds them all (classic models: [batch, tokens])."""
        if not self.records(hook):
            return
        kept = pattern.detach() if self._detach else pattern
        if self.queries is not None:
            wanted = sorted(self.rows(hook, kept.shape[2] if rows is None else num_queries))
            held = wanted if rows is None else [list(rows).index(row) for row in wanted]
            kept = kept[:, :, held]
        kept = kept if self._reduce is None else self._reduce(kept)
        self._calls.setdefault(hook, []).append(kept)

    def all(self, name: str | Site | tuple[str, int]) -> list[torch.Tensor]:
        """Every recorded pattern at ``name``, one per forward pass, oldest first."""
        site = Site.parse(name)
        if site.hook not in self._calls:
            recorded = ", ".join(self._calls) or "nothing yet"
            raise UnknownNameError(f"no attention recorded at {site.hook!r}; recorded: {recorded}")
        return [site.select(pattern) for pattern in self._calls[site.hook]]

    def __getitem__(self, name: str | Site | tuple[str, int]) -> torch.Tensor:
        return self.all(name)[-1]

    def __iter__(self) -> Iterator[str]:
        return iter(self._calls)

    def __len__(self) -> int:
        return len(self._calls)

    def __repr__(self) -> str:
        return f"AttentionCache({', '.join(self._calls)})"
