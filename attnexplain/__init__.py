"""attnexplain: does a model's attention explain its predictions? Measure it."""

from attnexplain.attribution import Attribution, attribute, describe_methods, list_methods
from attnexplain.audit import AuditResult, audit
from attnexplain.data import Dataset, TextPipeline, list_datasets, load_dataset
from attnexplain.errors import (
    ArgumentTypeError,
    AttnExplainError,
    CheckpointError,
    DataSourceError,
    HookError,
    InvalidInputError,
    PlanError,
    UnknownNameError,
)
from attnexplain.experiments import experiment_parameters, get_experiment, list_experiments
from attnexplain.explain import Explanation, explain
from attnexplain.explain_generation import GenerationExplanation, explain_generation
from attnexplain.hooks import capture, intervene, list_sites, run_with_cache, run_with_hooks
from attnexplain.models import ClassicConfig, ClassicModel, load_checkpoint, save_checkpoint
from attnexplain.models.generation import generation_steps
from attnexplain.models.train import TrainConfig, TrainResult, evaluate, train
from attnexplain.predict import predict
from attnexplain.runner import RunResult, load_plan, run_plan

__version__ = "0.1.0"

__all__ = [
    "ArgumentTypeError",
    "AttnExplainError",
    "Attribution",
    "AuditResult",
    "CheckpointError",
    "ClassicConfig",
    "ClassicModel",
    "DataSourceError",
    "Dataset",
    "Explanation",
    "GenerationExplanation",
    "HookError",
    "InvalidInputError",
    "PlanError",
    "RunResult",
    "TextPipeline",
    "TrainConfig",
    "TrainResult",
    "UnknownNameError",
    "attribute",
    "audit",
    "capture",
    "describe_methods",
    "evaluate",
    "experiment_parameters",
    "explain",
    "explain_generation",
    "generation_steps",
    "get_experiment",
    "intervene",
    "list_datasets",
    "list_experiments",
    "list_methods",
    "list_sites",
    "load_checkpoint",
    "load_dataset",
    "load_plan",
    "predict",
    "run_plan",
    "run_with_cache",
    "run_with_hooks",
    "save_checkpoint",
    "train",
]
