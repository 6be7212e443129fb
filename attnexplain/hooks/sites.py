"""Site names: where in a model attention is captured or intervened on.

A site is a hook name plus an optional selection of heads and query rows, printed and parsed as

    layers.3.attn.pattern                         every head and query row of layer 3
    layers.3.attn.pattern[heads=0,2]              heads 0 and 2
    layers.3.attn.pattern[heads=0; queries=0]     head 0, query row 0 (BERT's [CLS] row)
    layers.11.attn.pattern[queries=-1]            the last query row (negative counts from the end)
    attention                                     a classic model's single attention step

Transformers patterns are [batch, heads, queries, keys]; a classic model's is [batch, tokens]
and takes no selection.

TransformerLens's key for a layer's pattern, ``("pattern", 3)`` (its ``cache["pattern", 3]``,
short for ``blocks.3.attn.hook_pattern``), names ``layers.3.attn.pattern`` wherever a site
is taken.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from attnexplain.errors import HookError

CLASSIC_SITE = "attention"
_SITE_PATTERN = re.compile(r"^(?P<hook>[^\[\]\s]+)(?:\[(?P<selection>[^\[\]]*)\])?$")
_SELECTION_KEYS = ("heads", "queries")
_EXAMPLE = "'layers.3.attn.pattern[heads=0,2; queries=0]'"


def layer_site(layer: int) -> str:
    """A transformer layer's self-attention hook name, e.g. ``layers.3.attn.pattern``."""
    return f"layers.{layer}.attn.pattern"


def _lens_name(key: tuple) -> str:
    """TransformerLens's ``("pattern", layer)`` as our hook name."""
    if len(key) != 2 or key[0] != "pattern" or not isinstance(key[1], int):
        raise HookError(
            f"cannot read site {key!r}: the TransformerLens-style key is ('pattern', layer), "
            f"e.g. ('pattern', 3) for {layer_site(3)!r}"
        )
    return layer_site(key[1])


def as_indices(value: int | Iterable[int], what: str) -> tuple[int, ...]:
    """``value`` (an index or indices) as a non-empty tuple of ints; ``what`` names it in
    the error."""
    indices = (value,) if isinstance(value, int) else tuple(int(i) for i in value)
    if not indices:
        raise HookError(f"an empty {what} selection selects nothing; leave it out to select all")
    return indices


@dataclass(frozen=True)
class Site:
    """One hook name with an optional selection of heads and query rows.

    ``Site("layers.3.attn.pattern", heads=[0, 2], queries=0)`` and
    ``Site.parse("layers.3.attn.pattern[heads=0,2; queries=0]")`` are the same site; ``str``
    gives the canonical name. ``None`` selects every head / query row.
    """

    hook: str
    heads: tuple[int, ...] | None = None
    queries: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        # Accept an int or any iterable, store a tuple so that sites hash and compare by value.
        for key in _SELECTION_KEYS:
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, as_indices(value, key))

    @classmethod
    def parse(cls, name: str | Site | tuple[str, int]) -> Site:
        """Read a site name (see the module docstring) or TransformerLens's ``("pattern",
        layer)``; a ``Site`` is returned as is."""
        if isinstance(name, Site):
            return name
        if isinstance(name, tuple):
            name = _lens_name(name)
        match = _SITE_PATTERN.match(name.strip())
        if match is None:
            raise HookError(f"cannot read site name {name!r}; expected e.g. {_EXAMPLE}")
        selection: dict[str, tuple[int, ...]] = {}
        for part in filter(None, (p.strip() for p in (match["selection"] or "").split(";"))):
            key, _, values = part.partition("=")
            key = key.strip()
            if key not in _SELECTION_KEYS or key in selection:
                raise HookError(
                    f"cannot read selection {part!r} in site {name!r}: use heads=... and/or "
                    f"queries=..., each once, separated by ';', e.g. {_EXAMPLE}"
                )
            try:
                selection[key] = as_indices((int(v) for v in values.split(",")), key)
            except ValueError:
                raise HookError(
                    f"{key} in site {name!r} must be comma-separated integers, got {values!r}"
                ) from None
        return cls(match["hook"], **selection)

    def __str__(self) -> str:
        parts = [
            f"{key}={','.join(map(str, getattr(self, key)))}"
            for key in _SELECTION_KEYS
            if getattr(self, key) is not None
        ]
        return f"{self.hook}[{'; '.join(parts)}]" if parts else self.hook

    @property
    def selects(self) -> bool:
        """True when the site narrows its hook to some heads or query rows."""
        return self.heads is not None or self.queries is not None

    def select(self, pattern: torch.Tensor) -> torch.Tensor:
        """The selected part of a pattern: [batch, heads, queries, keys] ->
        [batch, selected heads, selected queries, keys]. Without a selection, ``pattern``."""
        if not self.selects:
            return pattern
        return pattern[self._index(pattern)]

    def assign(self, pattern: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
        """``pattern`` with its selected part replaced by ``selected`` (shaped as ``select``
        returns); differentiable with respect to both, ``pattern`` itself is not modified."""
        if not self.selects:
            return selected
        result = pattern.clone()
        result[self._index(pattern)] = selected
        return result

    def _index(self, pattern: torch.Tensor) -> tuple:
        """Index of the selected [:, heads, queries] of a [batch, heads, queries, keys] tensor."""
        if pattern.ndim != 4:
            raise HookError(f"site {self} selects heads or query rows, but its pattern has none")
        _, num_heads, num_queries, _ = pattern.shape
        heads = self._checked(self.heads, num_heads, "head", pattern.device)
        queries = self._checked(self.queries, num_queries, "query row", pattern.device)
        # heads as a column and queries as a row broadcast to a [heads, queries] grid of rows.
        return slice(None), heads.unsqueeze(1), queries

    def _checked(
        self, indices: tuple[int, ...] | None, size: int, what: str, device: torch.device
    ) -> torch.Tensor:
        if indices is None:
            return torch.arange(size, device=device)
        for i in indices:
            if not -size <= i < size:
                raise HookError(f"site {self} selects {what} {i}, but there are only {size}")
        return torch.tensor([i % size for i in indices], device=device)
