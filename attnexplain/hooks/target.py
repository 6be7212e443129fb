"""Wrappers hooked through a module they hold: the hooks' side of the adapters' contract.

An adapter (such as :class:`attnexplain.models.hf.HFClassifier`) that wraps a model the hooks
know implements :class:`HookTarget`; the hooks then capture and intervene on the wrapped model,
and the wrapper and the wrapped model share one session. The hooks never import an adapter.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import nn


@runtime_checkable
class HookTarget(Protocol):
    """An object whose attention lives in another module: ``hooked_module()`` returns it (a
    transformers ``PreTrainedModel``, a ``ClassicModel`` or another ``HookTarget``)."""

    def hooked_module(self) -> nn.Module:
        """The module the hooks attach to in place of this object."""


def hooked_module(model: nn.Module) -> nn.Module:
    """The module the hooks attach to for ``model``: ``model`` itself, or, for a
    :class:`HookTarget`, what it wraps (followed through nested wrappers)."""
    while isinstance(model, HookTarget):
        inner = model.hooked_module()
        if inner is model:
            break
        model = inner
    return model
