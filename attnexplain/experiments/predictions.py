"""The ``predictions`` experiment: what the model predicts for every instance, with its class
probabilities. The baseline every other experiment is read against (an explanation of a
model that is mostly wrong explains little), and a check that a run's models trained."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score

from attnexplain.models.checkpoint import Checkpoint
from attnexplain.models.train import predict_proba

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PREDICTIONS_DEFAULTS = {"batch_size": 64}
PROBABILITY_PREFIX = "prob_"


def run_predictions(
    checkpoint: Checkpoint, frame: pd.DataFrame, params: dict | None = None, progress: bool = True
) -> pd.DataFrame:
    """One row per instance of ``frame``: ``instance`` (position in ``frame``), ``text`` (text
    data only), ``label`` / ``label_class`` (the gold class as index and name), ``predicted``
    / ``predicted_class``, ``prob_<class>`` for every class of the checkpoint, ``correct``.

    ``params``: ``batch_size`` (default 64). ``progress`` is part of the experiment contract;
    one forward pass needs no bar.
    """
    params = {**PREDICTIONS_DEFAULTS, **(params or {})}
    classes, pipeline = checkpoint.classes, checkpoint.pipeline
    probabilities = predict_proba(
        checkpoint.model, pipeline.encode_split(frame), pipeline.framing, params["batch_size"]
    )
    labels = frame["label"].to_numpy()
    predicted = probabilities.argmax(1)
    source = {"text": frame["text"].to_numpy()} if "text" in frame.columns else {}
    return pd.DataFrame(
        {
            "instance": np.arange(len(frame)),
            **source,
            "label": labels,
            "label_class": [classes[i] for i in labels],
            "predicted": predicted,
            "predicted_class": [classes[i] for i in predicted],
            **{
                f"{PROBABILITY_PREFIX}{name}": probabilities[:, i] for i, name in enumerate(classes)
            },
            "correct": predicted == labels,
        }
    )


def _classes(df: pd.DataFrame) -> list[str]:
    """The checkpoint's classes in index order, read back from the probability columns (so
    that a class no instance has or gets still counts)."""
    return [c[len(PROBABILITY_PREFIX) :] for c in df.columns if c.startswith(PROBABILITY_PREFIX)]


def summarise_predictions(df: pd.DataFrame) -> pd.DataFrame:
    """One row: ``n``, ``accuracy``, ``macro_f1`` and ``f1_<class>`` for every class."""
    classes = _classes(df)
    indices = list(range(len(classes)))
    per_class = f1_score(
        df["label"], df["predicted"], labels=indices, average=None, zero_division=0
    )
    return pd.DataFrame(
        [
            {
                "n": len(df),
                "accuracy": float(df["correct"].mean()) if len(df) else float("nan"),
                "macro_f1": float(per_class.mean()),
                **{
                    f"f1_{name}": float(score)
                    for name, score in zip(classes, per_class, strict=True)
                },
            }
        ]
    )


def figure_predictions(df: pd.DataFrame) -> Figure:
    """Confusion matrix heatmap: gold classes down, predicted classes across, counts."""
    # Plotting libraries load in about a second; only figure drawing should pay for that.
    import seaborn as sns
    from matplotlib.figure import Figure

    classes = _classes(df)
    counts = confusion_matrix(df["label"], df["predicted"], labels=list(range(len(classes))))
    size = 1.2 + 0.8 * len(classes)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.subplots()
    sns.heatmap(
        pd.DataFrame(counts, index=classes, columns=classes),
        annot=True,
        fmt="d",
        cmap="Blues",
        cbar=False,
        square=True,
        ax=ax,
    )
    accuracy = df["correct"].mean() if len(df) else float("nan")
    ax.set(xlabel="predicted", ylabel="gold", title=f"accuracy {accuracy:.3f} (n = {len(df)})")
    fig.tight_layout()
    return fig
