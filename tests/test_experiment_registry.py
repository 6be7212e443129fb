"""The experiment registry and its first experiment, ``predictions``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from attnexplain import TrainConfig, load_checkpoint, train
from attnexplain.errors import InvalidInputError, UnknownNameError
from attnexplain.experiments import get_experiment, list_experiments
from attnexplain.experiments.predictions import (
    figure_predictions,
    run_predictions,
    summarise_predictions,
)


def test_registry_looks_experiments_up_by_name():
    assert "predictions" in list_experiments()
    assert get_experiment("predictions").function is run_predictions
    with pytest.raises(UnknownNameError, match="unknown experiment 'nope'; choose one of"):
        get_experiment("nope")


def test_resolve_merges_defaults_and_checks_names_and_types():
    experiment = get_experiment("predictions")
    assert experiment.resolve() == {"batch_size": 64}
    assert experiment.resolve({"batch_size": 8}) == {"batch_size": 8}
    with pytest.raises(
        UnknownNameError, match=r"unknown parameter 'size'.*valid: batch_size \(default 64\)"
    ):
        experiment.resolve({"size": 8})
    for wrong in ("8", 8.0, True):
        with pytest.raises(InvalidInputError, match="must be of type int"):
            experiment.resolve({"batch_size": wrong})


def test_summary_gives_accuracy_and_f1_per_class_including_unseen_classes():
    # gold 0 0 1 1, predicted 0 1 1 1; class "c" is neither gold nor predicted
    df = pd.DataFrame(
        {
            "label": [0, 0, 1, 1],
            "predicted": [0, 1, 1, 1],
            "prob_a": [0.6, 0.3, 0.2, 0.1],
            "prob_b": [0.3, 0.6, 0.7, 0.8],
            "prob_c": [0.1, 0.1, 0.1, 0.1],
            "correct": [True, False, True, True],
        }
    )
    summary = summarise_predictions(df)
    assert summary.columns.tolist() == ["n", "accuracy", "macro_f1", "f1_a", "f1_b", "f1_c"]
    row = summary.iloc[0]
    assert row["n"] == 4 and row["accuracy"] == 0.75
    # a: P 1, R .5 -> 2/3; b: P 2/3, R 1 -> .8; c: 0
    assert row[["f1_a", "f1_b", "f1_c"]].tolist() == pytest.approx([2 / 3, 0.8, 0.0])
    assert row["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 3)
    figure = figure_predictions(df)
    assert isinstance(figure, Figure)
    assert figure.axes[0].get_xlabel() == "predicted"


def test_predictions_of_a_trained_model(synthetic, tmp_path):
    config = TrainConfig(epochs=1, embeddings="random", embed_dim=16, seed=1)
    train(synthetic, tmp_path, {"encoder": "average", "hidden_size": 16}, config, progress=False)
    frame = synthetic.test.iloc[:50]
    df = run_predictions(load_checkpoint(tmp_path), frame, progress=False)
    assert len(df) == 50 and df["instance"].tolist() == list(range(50))
    assert df["text"].tolist() == frame["text"].tolist()
    probabilities = df[["prob_class0", "prob_class1"]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-6)
    assert (df["predicted"] == probabilities.argmax(1)).all()
    assert (df["correct"] == (df["predicted"] == df["label"])).all()
    assert set(df["label_class"]) <= {"class0", "class1"}
    assert df["predicted_class"].tolist() == [f"class{i}" for i in df["predicted"]]


def test_importing_the_package_and_its_registries_does_not_load_transformers():
    """`import attnexplain` stays quick: transformers loads with the first transformer model,
    not with the registries (an experiment module that imports it at the top breaks this)."""
    import subprocess
    import sys

    code = "import attnexplain, sys; print('transformers' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
