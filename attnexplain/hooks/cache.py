"""The recorder: a read-only mapping from site names to the attention recorded there."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import torch

from attnexplain.errors import UnknownNameError
from attnexplain.hooks.sites import Site


class AttentionCache(Mapping[str, torch.Tensor]):
    """Attention probabilities recorded per site, as they multiplied the values (after any
    active intervention).

    ``cache["layers.3.attn.pattern"]`` is the latest forward pass's pattern, [batch, heads,
    queries, keys] (classic models: ``cache["attention"]``, [batch, tokens]); a selection in the
    key narrows it, e.g. ``cache["layers.3.attn.pattern[queries=0]"]`` -> [batch, heads, 1, keys].
    ``cache.all(name)`` lists one tensor per forward pass, oldest first. With ``reduce``, what
    is kept of each pattern is ``reduce(pattern)`` (e.g. the last query row, or the head mean,
    so that a long generation keeps little).

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
    ) -> None:
        self.hooks = hooks  # the hook names recorded; None records every hook
        self._detach = detach
        self._reduce = reduce
        self._calls: dict[str, list[torch.Tensor]] = {}

    def record(self, hook: str, pattern: torch.Tensor) -> None:
        """Keep ``pattern`` (or its reduction) if this cache records ``hook`` (all hooks when
        none were named)."""
        if self.hooks is None or hook in self.hooks:
            kept = pattern.detach() if self._detach else pattern
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
