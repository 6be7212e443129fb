"""The companion models that some faithfulness measures read instead of the explained model
(:mod:`attnexplain.measures.companion`), trained as units of the runner: cached, resumable,
shared by every league on the same model that asks for them.

Registered as ``companion.train`` (``kind``: ``shuffled-labels``, the model's recipe trained
again on shuffled labels; ``random-deletion``, the model fine-tuned from its own weights on
training texts with up to ``beta`` of their tokens deleted at random). Its per-instance
table is the companion's prediction on the experiment's split: a shuffled-label model near
chance and a fine-tuned model near the original are what the measures assume.
"""

from __future__ import annotations

from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from attnexplain.attribution.adapter import pad_id
from attnexplain.errors import InvalidInputError
from attnexplain.experiments.needs import (
    ExperimentResult,
    Needs,
    RunContext,
    needs_nothing,
    retrain_like,
    trained_checkpoint_dir,
    training_recipe,
)
from attnexplain.measures import get_measure
from attnexplain.measures.companion import (
    COMPANIONS,
    SHUFFLED_LABELS,
    random_deletion,
    shuffled_labels,
)
from attnexplain.models.checkpoint import Checkpoint, load_checkpoint
from attnexplain.models.train import fine_tune, predict_proba
from attnexplain.uncertainty import interval_columns

COMPANION_DEFAULTS = {"kind": SHUFFLED_LABELS, "seed": 0, "beta": 0.5, "epochs": 2}
COMPANION_PARAMETERS = {
    "kind": f"which companion: one of {', '.join(COMPANIONS)}",
    "seed": "the seed of the shuffled labels",
    "beta": "the largest share of a training text deleted (random-deletion)",
    "epochs": "fine-tuning epochs (random-deletion; the model's own recipe otherwise)",
}


def companion_role(kind: str) -> str:
    """The role under which an experiment needs the companion ``kind``."""
    return f"companion:{kind}"


def companion_needs(measures: list[str]) -> Needs:
    """The companions the named ``measures`` read, as needs of the experiment measuring."""
    kinds = dict.fromkeys(
        spec.companion for spec in map(get_measure, measures) if spec.companion is not None
    )
    # on the whole split: one companion unit, whatever share of the split a league reads
    return {
        companion_role(kind): ExperimentResult(
            "companion.train", {"kind": kind}, max_instances=None
        )
        for kind in kinds
    }


def validate_companion(params: dict) -> None:
    if params["kind"] not in COMPANIONS:
        raise InvalidInputError(f"kind must be one of {COMPANIONS}, got {params['kind']!r}")
    if not 0 < params["beta"] < 1 or params["epochs"] < 1:
        raise InvalidInputError(
            f"beta must lie in (0, 1) and epochs be >= 1, got {params['beta']}, {params['epochs']}"
        )


def train_companion(checkpoint: Checkpoint, params: dict, context: RunContext) -> Checkpoint:
    """The companion ``params["kind"]`` of ``checkpoint``, trained (or resumed, or reused)
    in the unit's folder."""
    folder = trained_checkpoint_dir(context.workdir)
    if params["kind"] == SHUFFLED_LABELS:
        data = shuffled_labels(context.dataset, params["seed"])
        return retrain_like(checkpoint, data, folder, context.cache, context.progress)
    recipe = replace(training_recipe(checkpoint), epochs=params["epochs"], patience=None)
    transform = random_deletion(params["beta"], pad_id(checkpoint.model))
    fine_tune(checkpoint, context.dataset, folder, recipe, transform, context.progress)
    return load_checkpoint(folder)


def run_companion(
    checkpoint: Checkpoint,
    frame: pd.DataFrame,
    params: dict,
    progress: bool,
    context: RunContext,
) -> pd.DataFrame:
    """Train the companion; one row per instance of ``frame`` with its prediction."""
    companion = train_companion(checkpoint, params, context)
    sequences = checkpoint.pipeline.encode_split(frame)
    if companion.pipeline.encode_split(frame) != sequences:
        raise InvalidInputError(
            "the companion encodes the texts otherwise than the explained model (its "
            "vocabulary differs), so the measures could not hand it the same batches"
        )
    predicted = predict_proba(companion.model, sequences, checkpoint.pipeline.framing)
    return pd.DataFrame(
        {
            "instance": np.arange(len(frame)),
            "kind": params["kind"],
            "label": frame["label"].to_numpy(),
            "predicted": predicted.argmax(1),
        }
    ).assign(correct=lambda table: (table["label"] == table["predicted"]).astype(float))


def summarise_companion(df: pd.DataFrame) -> pd.DataFrame:
    """Per companion: its accuracy on the split with the 95% bootstrap interval."""
    return pd.DataFrame(
        [
            {"kind": kind, **interval_columns("accuracy", group["correct"])}
            for kind, group in df.groupby("kind", sort=True)
        ]
    )


def figure_companion(df: pd.DataFrame) -> plt.Figure:
    """The companions' accuracy with their intervals."""
    summary = summarise_companion(df)
    fig, ax = plt.subplots(figsize=(4, 2.5))
    errors = [
        summary["accuracy"] - summary["accuracy_low"],
        summary["accuracy_high"] - summary["accuracy"],
    ]
    ax.barh(summary["kind"], summary["accuracy"], xerr=errors)
    ax.set(xlabel="accuracy", xlim=(0, 1), title="Companion models")
    fig.tight_layout()
    return fig


REGISTRATIONS = [
    {
        "name": "companion.train",
        "function": run_companion,
        "summary": summarise_companion,
        "figure": figure_companion,
        "defaults": COMPANION_DEFAULTS,
        "parameters": COMPANION_PARAMETERS,
        "description": "A companion model of a faithfulness measure: the recipe on shuffled "
        "labels, or the model fine-tuned on randomly cut texts (F-Fidelity)",
        "needs": needs_nothing,
        "validate": validate_companion,
    },
]
