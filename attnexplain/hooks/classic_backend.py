"""Classic models: their single attention step, through ``ClassicModel.attention_hook``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from attnexplain.hooks.session import HookSession
from attnexplain.hooks.sites import CLASSIC_SITE

if TYPE_CHECKING:  # the model package depends on the hooks, not the reverse
    from attnexplain.models.classic import ClassicModel


class ClassicBackend:
    """Routes a ``ClassicModel``'s attention ``alpha`` [batch, tokens] through a session; the
    allowed keys are its content tokens (not SOS/EOS/PAD)."""

    selectable = False

    def __init__(self, model: ClassicModel) -> None:
        self.model = model
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def site_names(self) -> list[str]:
        return [CLASSIC_SITE]

    def no_site_message(self) -> str:
        return (
            f"ClassicModel ran a forward pass without its {CLASSIC_SITE!r} site: attention given "
            "explicitly (forward(..., attention=weights)) bypasses the site; leave it out to "
            "capture or intervene on the model's own attention"
        )

    def attach(self, session: HookSession) -> None:
        def hook(module: nn.Module, inputs: tuple, alpha: torch.Tensor) -> torch.Tensor:
            _, content_mask = inputs
            return session.process(CLASSIC_SITE, alpha, content_mask, module)

        self._handle = self.model.attention_hook.register_forward_hook(hook)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
