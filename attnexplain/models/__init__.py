"""Models behind one encode -> attention -> decode interface."""

from attnexplain.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from attnexplain.models.classic import (
    ClassicConfig,
    ClassicModel,
    EncodedState,
    masked_softmax,
    uniform_attention,
)
from attnexplain.models.pair import PairModel, PairState, classic_model

__all__ = [
    "Checkpoint",
    "ClassicConfig",
    "ClassicModel",
    "EncodedState",
    "PairModel",
    "PairState",
    "classic_model",
    "load_checkpoint",
    "masked_softmax",
    "save_checkpoint",
    "uniform_attention",
]
