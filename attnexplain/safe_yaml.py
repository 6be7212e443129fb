"""Reading YAML a user wrote, without the traps of YAML itself: a key given twice (YAML keeps
the last silently), nesting deep enough to exhaust Python's stack, and aliases that expand a
few hundred bytes into billions of nodes. The shape of the document is checked on its event
stream, before any document is built."""

from __future__ import annotations

from typing import Any

import yaml

# Far beyond any plan (about 5 levels) and far below Python's recursion limit.
MAX_DEPTH = 64
# Nodes of the document with every alias expanded: a plan has hundreds.
MAX_NODES = 100_000


class YamlShapeError(ValueError):
    """A YAML document refused for its shape (a duplicate key, too deep, too large)."""


def load_yaml(text: str) -> Any:
    """The one YAML document in ``text``, built with the safe loader.

    Raises :class:`YamlShapeError` for a duplicate key in a mapping, nesting deeper than
    :data:`MAX_DEPTH` or more than :data:`MAX_NODES` nodes once aliases are expanded (before
    building anything); :class:`yaml.YAMLError` for text that is not YAML.
    """
    _check_shape(text)
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass


def _check_shape(text: str) -> None:
    """Walk the events of ``text`` counting depth and expanded nodes (an alias counts as the
    nodes of its anchor)."""
    sizes: dict[str, int] = {}  # anchor -> nodes of the anchored node, expanded
    frames: list[list[Any]] = []  # open collections: [anchor, nodes so far]
    total = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            added = sizes.get(event.anchor, 1)
        elif isinstance(event, yaml.ScalarEvent):
            added = 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            frames.append([event.anchor, 1])
            total += 1
            if len(frames) > MAX_DEPTH:
                raise YamlShapeError(
                    f"nested more than {MAX_DEPTH} levels deep (line {event.start_mark.line + 1})"
                )
            continue
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, added = frames.pop()
            if anchor is not None:
                sizes[anchor] = added
            if frames:
                frames[-1][1] += added
            continue
        else:
            continue
        total += added
        if frames:
            frames[-1][1] += added
        if total > MAX_NODES:
            raise YamlShapeError(
                f"expands to more than {MAX_NODES:,} values (line {event.start_mark.line + 1}); "
                "aliases (*name) that repeat large anchors (&name) are refused"
            )


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a key that a mapping has twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *base" may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                break
            if first is not None:
                raise YamlShapeError(
                    f"the key {key!r} is given twice in one mapping (lines {first} and "
                    f"{line}); YAML would keep only the last: remove one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)
