"""attnexplain: does a model's attention explain its predictions? Measure it."""

from attnexplain.data import Dataset, TextPipeline, list_datasets, load_dataset
from attnexplain.errors import (
    AttnExplainError,
    CheckpointError,
    DataSourceError,
    InvalidInputError,
    UnknownNameError,
)
from attnexplain.models import ClassicConfig, ClassicModel, load_checkpoint, save_checkpoint
from attnexplain.models.train import TrainConfig, TrainResult, evaluate, train

__version__ = "0.1.0"

__all__ = [
    "AttnExplainError",
    "CheckpointError",
    "ClassicConfig",
    "ClassicModel",
    "DataSourceError",
    "Dataset",
    "InvalidInputError",
    "TextPipeline",
    "TrainConfig",
    "TrainResult",
    "UnknownNameError",
    "evaluate",
    "list_datasets",
    "load_checkpoint",
    "load_dataset",
    "save_checkpoint",
    "train",
]
