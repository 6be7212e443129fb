"""Models behind one encode -> attention -> decode interface."""

from attnexplain.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from attnexplain.models.classic import (
    ClassicConfig,
    ClassicModel,
    EncodedState,
    masked_softmax,
    uniform_attention,
)

__all__ = [
    "Checkpoint",
    "ClassicConfig",
    "ClassicModel",
    "EncodedState",
    "load_checkpoint",
    "masked_softmax",
    "save_checkpoint",
    "uniform_attention",
]
