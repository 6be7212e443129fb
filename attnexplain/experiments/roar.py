"""ROAR (Hooker et al. 2019, "A benchmark for interpretability methods in deep neural
networks"): remove each instance's top-k% tokens by a method's scores, retrain the model on
what is left, and measure its accuracy on test texts cut the same way. Deleting tokens makes
inputs the model never saw; retraining on them removes that shift, so an accuracy that
falls says the removed tokens carried the label, not that the model was surprised. Random
removal is the baseline a method must beat.

The scores are the trained model's, for every split; k% of n tokens is ceil(k n / 100),
capped at n - 1 so that every text keeps a token (a classic model has no output for an
empty text). Classic models only here: they retrain in seconds to minutes.

Two registered experiments, so that every retrained model is a unit of the runner (cached,
resumable, shared between plans):

- ``roar.retrain``: one method at one k; per test instance, the retrained model's prediction.
- ``roar.curve``: needs ``roar.retrain`` for each method (and ``random``) at each k; per
  instance and point, whether the retrained model is right; the accuracy curve per method.
"""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from attnexplain.attribution import attribute, list_methods
from attnexplain.data.batching import Batch, bucketed_batches
from attnexplain.data.registry import Dataset
from attnexplain.device import draw, seeded_generator
from attnexplain.errors import InvalidInputError
from attnexplain.experiments.needs import (
    ExperimentResult,
    Needs,
    RunContext,
    Setting,
    needs_nothing,
    retrain_like,
    trained_checkpoint_dir,
)
from attnexplain.metrics import top_k_mask
from attnexplain.models.checkpoint import Checkpoint
from attnexplain.models.classic import ClassicModel
from attnexplain.models.train import predict_proba
from attnexplain.uncertainty import interval_columns

ROAR_PERCENTS = (10, 30, 50, 70, 90)
RANDOM = "random"
RETRAIN_DEFAULTS = {"method": "jw-gradient", "percent": 30, "seed": 0, "batch_size": 64}
CURVE_DEFAULTS = {"methods": ["attention", "jw-gradient"], "percents": list(ROAR_PERCENTS)}
RETRAIN_PARAMETERS = {
    "method": f"whose top tokens are removed (a registered method, or {RANDOM!r})",
    "percent": "the share of each text's content tokens removed, in percent",
    "seed": "the seed of random removal",
}
CURVE_PARAMETERS = {
    "methods": "the methods compared (random removal is always added)",
    "percents": "the shares of tokens removed, in percent (one retrained model each)",
}

Scorer = Callable[[Batch, pd.DataFrame], torch.Tensor]
"""``scorer(batch, frame) -> scores [batch, tokens]`` for a batch of ``frame``'s rows
``batch.index``."""


def method_scorer(checkpoint: Checkpoint, method: str) -> Scorer:
    """The registered attribution ``method`` on ``checkpoint``'s model."""
    return lambda batch, frame: attribute(checkpoint.model, batch, method).scores


def random_scorer(seed: int) -> Scorer:
    """Uniform random scores, the same for the same row of the same frame and ``seed``."""

    def scores(batch: Batch, frame: pd.DataFrame) -> torch.Tensor:
        device = batch.content_mask.device
        rows = [
            draw(
                torch.rand,
                (batch.content_mask.shape[1],),
                seeded_generator(seed * 1_000_003 + int(index)),
                device,
            )
            for index in batch.index.tolist()
        ]
        return torch.stack(rows)

    return scores


def removal_counts(lengths: torch.Tensor, percent: int) -> torch.Tensor:
    """Tokens to remove of texts of ``lengths`` [N] content tokens: ceil(``percent``% of
    each), at most all but one."""
    return torch.minimum(-(-percent * lengths // 100), (lengths - 1).clamp_min(0))


def remove_top(
    checkpoint: Checkpoint, frame: pd.DataFrame, scorer: Scorer, percent: int, batch_size: int
) -> pd.DataFrame:
    """``frame`` with each row's ``tokens`` cut by its top ``percent``% by ``scorer`` (module
    docstring), in order."""
    pipeline = checkpoint.pipeline
    kept: list[list[str]] = [[] for _ in range(len(frame))]
    sequences = pipeline.encode_split(frame)
    for batch in bucketed_batches(sequences, batch_size=batch_size, framing=pipeline.framing):
        content = batch.content_mask
        removed = top_k_mask(
            scorer(batch, frame), content, removal_counts(content.sum(-1), percent)
        )
        for row, index in enumerate(batch.index.tolist()):
            tokens = frame["tokens"].iloc[index]
            flags = (~removed[row])[content[row]].tolist()
            if len(flags) != len(tokens):
                raise InvalidInputError(
                    f"row {index} has {len(tokens)} tokens but its encoding {len(flags)} "
                    f"content positions: ROAR needs the pipeline to keep every token"
                )
            kept[index] = [token for token, keep in zip(tokens, flags, strict=True) if keep]
    return frame.assign(tokens=kept)


def _check_classic(checkpoint: Checkpoint) -> None:
    if not isinstance(checkpoint.model, ClassicModel):
        raise InvalidInputError(
            f"ROAR retrains the classic single-text models here, not a "
            f"{type(checkpoint.model).__name__}: run it on an lstm, cnn or average model"
        )


def retrain_without(
    checkpoint: Checkpoint,
    dataset: Dataset,
    scorer: Scorer,
    percent: int,
    folder,
    cache=None,
    progress: bool = False,
    batch_size: int = 64,
) -> tuple[Checkpoint, Dataset]:
    """The model of ``checkpoint`` retrained (same architecture and recipe) on ``dataset``
    with every split cut by :func:`remove_top`, saved in ``folder`` (a retraining resumes
    there); returns its checkpoint and the cut dataset."""
    _check_classic(checkpoint)
    cut = Dataset(
        dataset.name,
        dataset.classes,
        {
            name: remove_top(checkpoint, split, scorer, percent, batch_size)
            for name, split in dataset.splits.items()
        },
        dataset.min_df,
    )
    return retrain_like(checkpoint, cut, folder, cache, progress), cut


def validate_retrain(params: dict) -> None:
    if params["method"] not in [*list_methods(), RANDOM]:
        raise InvalidInputError(
            f"method must be a registered method or {RANDOM!r}, got {params['method']!r}"
        )
    if not 0 < params["percent"] < 100:
        raise InvalidInputError(f"percent must lie in (0, 100), got {params['percent']}")


def run_retrain(
    checkpoint: Checkpoint,
    frame: pd.DataFrame,
    params: dict,
    progress: bool,
    context: RunContext,
) -> pd.DataFrame:
    """Retrain without the top ``percent``% tokens by ``method`` and predict ``frame`` cut
    the same way: one row per instance."""
    method, percent = params["method"], params["percent"]
    scorer = (
        random_scorer(params["seed"]) if method == RANDOM else method_scorer(checkpoint, method)
    )
    retrained, _ = retrain_without(
        checkpoint,
        context.dataset,
        scorer,
        percent,
        trained_checkpoint_dir(context.workdir),
        context.cache,
        progress,
        params["batch_size"],
    )
    cut = remove_top(checkpoint, frame, scorer, percent, params["batch_size"])
    pipeline = retrained.pipeline
    predicted = predict_proba(retrained.model, pipeline.encode_split(cut), pipeline.framing)
    return pd.DataFrame(
        {
            "instance": np.arange(len(frame)),
            "method": method,
            "percent": percent,
            "label": frame["label"].to_numpy(),
            "predicted": predicted.argmax(1),
        }
    ).assign(correct=lambda table: (table["label"] == table["predicted"]).astype(float))


def summarise_roar(df: pd.DataFrame) -> pd.DataFrame:
    """Per method and percent: accuracy of the retrained model with its 95% bootstrap
    interval."""
    rows = [
        {"method": method, "percent": percent, **interval_columns("accuracy", group["correct"])}
        for (method, percent), group in df.groupby(["method", "percent"], sort=True)
    ]
    return pd.DataFrame(rows)


def figure_roar(df: pd.DataFrame) -> plt.Figure:
    """Accuracy of the retrained model against the share of tokens removed, per method."""
    summary = summarise_roar(df)
    fig, ax = plt.subplots(figsize=(5, 4))
    for method, group in summary.groupby("method"):
        ax.plot(group["percent"], group["accuracy"], marker="o", label=method)
        ax.fill_between(group["percent"], group["accuracy_low"], group["accuracy_high"], alpha=0.2)
    ax.set(xlabel="top tokens removed (%)", ylabel="accuracy after retraining", title="ROAR")
    ax.legend()
    fig.tight_layout()
    return fig


def _role(method: str, percent: int) -> str:
    return f"{method}@{percent}"


def validate_curve(params: dict) -> None:
    for method in params["methods"]:
        validate_retrain({"method": method, "percent": 50})
    if not params["methods"] or not params["percents"]:
        raise InvalidInputError("methods and percents must be non-empty lists")
    for percent in params["percents"]:
        validate_retrain({"method": RANDOM, "percent": percent})


def curve_needs(params: dict, setting: Setting) -> Needs:
    return {
        _role(method, percent): ExperimentResult(
            "roar.retrain", {"method": method, "percent": percent}
        )
        for method in dict.fromkeys([*params["methods"], RANDOM])
        for percent in params["percents"]
    }


def run_curve(
    checkpoint: Checkpoint,
    frame: pd.DataFrame,
    params: dict,
    progress: bool,
    context: RunContext,
) -> pd.DataFrame:
    """Every retrained model's per-instance table, stacked."""
    _check_classic(checkpoint)
    parts = [
        context.result(_role(method, percent))
        for method in dict.fromkeys([*params["methods"], RANDOM])
        for percent in params["percents"]
    ]
    return pd.concat(parts, ignore_index=True)


REGISTRATIONS = [
    {
        "name": "roar.retrain",
        "function": run_retrain,
        "summary": summarise_roar,
        "figure": figure_roar,
        "defaults": RETRAIN_DEFAULTS,
        "parameters": RETRAIN_PARAMETERS,
        "description": "ROAR: accuracy of the model retrained without one method's top-k% tokens",
        "needs": needs_nothing,
        "validate": validate_retrain,
    },
    {
        "name": "roar.curve",
        "function": run_curve,
        "summary": summarise_roar,
        "figure": figure_roar,
        "defaults": CURVE_DEFAULTS,
        "parameters": CURVE_PARAMETERS,
        "description": "ROAR: accuracy after retraining without each method's top-k% tokens, "
        "against random removal",
        "needs": curve_needs,
        "validate": validate_curve,
    },
]
