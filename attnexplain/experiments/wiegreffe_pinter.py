"""Wiegreffe & Pinter 2019, "Attention is not not Explanation" (papers-spec B1-B4), on both
model families.

Each experiment compares the model with other work, which it declares as needs (see
:mod:`.needs`): the runner trains or runs that work as units of its own first.

- ``uniform`` (B1): the same model trained with its attention frozen to 1/n over the
  content tokens (transformers: the site's [CLS] row over its keys, through the hooks);
  F1 of both, JSD of the uniform attention from the model's and the output change.
- ``seeds`` (B2): the model retrained with the authors' extra seeds; per instance the median
  JSD of their attention from the base seed's and the mean output change, beside the J&W
  adversaries of the same instances.
- ``adversary`` (B4, one lambda): a NEW model trained against the model's outputs and
  attentions with TVD(y_adv, y_base) - lambda KL(a_adv || a_base); per instance JSD and TVD.
- ``consistent`` (B4): the lambda grid of adversaries beside the seed, uniform and J&W points.
- ``diagnostic`` (B3): the Average-encoder MLP with attention uniform, trained, or frozen to
  the model's, a J&W adversary's or the W&P adversary's weights; F1 of each.

Output differences are TVD of the output distributions (|dy| for binary tasks, as in the
paper); F1 is of the positive class for binary tasks and macro-averaged otherwise, so the
experiments run on multi-class datasets too (the paper's are binary). JSD and TVD are means
per instance (the authors' code sums them; the paper plots means). For transformers the
site is the classifier's row at the site layer, JSD averaged over heads; the diagnostic reads
its attention moved onto the classic tokens (see :func:`word_weights`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from matplotlib import pyplot as plt
from sklearn.metrics import accuracy_score

from attnexplain.alignment import pieces_to_tokens
from attnexplain.data.image_tokens import ImagePipeline
from attnexplain.data.text import TextPipeline, clean_text, token_spans
from attnexplain.errors import InvalidInputError
from attnexplain.experiments.jain_wallace import violins_by_bin
from attnexplain.experiments.needs import (
    ExperimentResult,
    Needs,
    RunContext,
    Setting,
    SiblingModel,
    trained_checkpoint_dir,
    training_recipe,
)
from attnexplain.experiments.site_attention import site_outputs
from attnexplain.metrics import jsd
from attnexplain.models.checkpoint import Checkpoint
from attnexplain.models.guided import (
    AdversaryConfig,
    predict_with_attention,
    train_consistent_adversary,
    train_diagnostic,
)
from attnexplain.models.hf import HFClassifier
from attnexplain.models.train import TrainConfig, predict_proba
from attnexplain.uncertainty import columns_of, f1_bootstrap, interval_row

# papers-spec B2: the seeds W&P retrain with, besides the base seed 10
AUTHORS_SEEDS = (50, 257, 500231, 100078, 12504, 90754789, 8988812, 2)
DIAGNOSTIC_VARIANTS = ("uniform", "trained", "base", "jw-adversary", "wp-adversary")
COLORS = {"trained": "#0072B2", "uniform": "#E69F00", "seed": "#009E73", "jw": "#D55E00"}

UNIFORM_DEFAULTS = {"whole_split": True}
SEEDS_DEFAULTS = {"extra_seeds": 8, "jw_overlay": True}
# the adversaries' summaries: mean distance from the model's attention and output
DISTANCE_MEANS = {"mean jsd": ("jsd", np.mean), "mean output change": ("output_change", np.mean)}
ADVERSARY_DEFAULTS = {"lambda": 0.001, "epochs": 80, "patience": 10}
CONSISTENT_DEFAULTS = {"lambdas": [0.001, 0.01, 0.1, 1.0, 10.0]}
DIAGNOSTIC_DEFAULTS = {
    "variants": list(DIAGNOSTIC_VARIANTS),
    "epochs": 8,
    "adversary_lambda": 0.001,
    "train_rows": None,
}
UNIFORM_PARAMETERS = {
    "whole_split": "score both models on the whole split, not only the plan's instances",
}
SEEDS_PARAMETERS = {
    "extra_seeds": f"models trained from other seeds (1 to {len(AUTHORS_SEEDS)}: the authors')",
    "jw_overlay": "add each instance's J&W adversary (runs jain_wallace.adversarial)",
}
ADVERSARY_PARAMETERS = {
    "lambda": "weight of the adversary's distance from the model's attention in its loss",
    "epochs": "most training epochs of the adversary",
    "patience": "stop after this many epochs without a lower training loss",
}
CONSISTENT_PARAMETERS = {"lambdas": "the lambda grid: one adversary trained at each"}
DIAGNOSTIC_PARAMETERS = {
    "variants": f"attention given to the MLP, of {', '.join(DIAGNOSTIC_VARIANTS)}",
    "epochs": "training epochs of each MLP",
    "adversary_lambda": "lambda of the W&P adversary (the wp-adversary variant)",
    "train_rows": "train the MLPs on the first this many training rows (None: all)",
}


# ---------------------------------------------------------------- shared measurements


def row_jsd(first: list[np.ndarray], second: list[np.ndarray]) -> np.ndarray:
    """JSD [rows] between two lists of attentions over the same supports (each [*site, n]),
    averaged over heads."""
    out = np.empty(len(first))
    for row, (a, b) in enumerate(zip(first, second, strict=True)):
        out[row] = float(jsd(torch.as_tensor(a), torch.as_tensor(b)).mean())
    return out


def output_change(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """TVD [rows] between output distributions [rows, classes] (|dy| for binary tasks)."""
    return 0.5 * np.abs(first - second).sum(1)


def uniform_like(attention: list[np.ndarray]) -> list[np.ndarray]:
    """1/n over each row's support, in the shape of ``attention``."""
    return [np.full_like(a, 1.0 / a.shape[-1]) for a in attention]


def _frame_columns(frame: pd.DataFrame, checkpoint: Checkpoint, outputs) -> dict:
    predicted = outputs.probabilities.argmax(1)
    head_mean = [a.reshape(-1, a.shape[-1]).mean(0) for a in outputs.attention]
    return {
        "instance": np.arange(len(frame)),
        "label": frame["label"].to_numpy(),
        "predicted": predicted,
        "predicted_class": [checkpoint.classes[i] for i in predicted],
        "max_attention": [float(a.max()) for a in head_mean],
    }


def _positive(values: list[float], what: str) -> None:
    if not values or any(not isinstance(v, int | float) or v <= 0 for v in values):
        raise InvalidInputError(
            f"{what} must be a non-empty list of numbers > 0 (a log-scale grid), got {values!r}"
        )


# ---------------------------------------------------------------- B1: uniform baseline


def uniform_needs(params: dict, setting: Setting) -> Needs:
    return {"uniform": SiblingModel({"attention_mode": "uniform"})}


def run_uniform(
    checkpoint: Checkpoint,
    frame: pd.DataFrame,
    params: dict,
    progress: bool,
    context: RunContext,
) -> pd.DataFrame:
    """Per instance: the trained-attention and uniform models' predictions, the JSD of the
    uniform attention from the model's and the output change between the two models. On the
    whole split when ``whole_split`` (the paper's F1 is on the whole test set)."""
    frame = context.whole_split if params["whole_split"] else frame
    return uniform_comparison(checkpoint, context.checkpoint("uniform"), frame)


def uniform_comparison(
    trained: Checkpoint, uniform: Checkpoint, frame: pd.DataFrame
) -> pd.DataFrame:
    """The uniform baseline's per-instance table for two checkpoints of one architecture."""
    outputs = site_outputs(trained, frame)
    pipeline = uniform.pipeline
    uniform_probabilities = predict_proba(
        uniform.model, pipeline.encode_split(frame), pipeline.framing
    )
    return pd.DataFrame(
        {
            **_frame_columns(frame, trained, outputs),
            "uniform_predicted": uniform_probabilities.argmax(1),
            "jsd": row_jsd(uniform_like(outputs.attention), outputs.attention),
            "output_change": output_change(uniform_probabilities, outputs.probabilities),
            "classes": len(trained.classes),
        }
    )


def summarise_uniform(df: pd.DataFrame) -> pd.DataFrame:
    """F1 and accuracy of the trained-attention and the uniform model."""
    return f1_table(df, {"trained": "predicted", "uniform": "uniform_predicted"})


def f1_table(df: pd.DataFrame, predictions: dict[str, str]) -> pd.DataFrame:
    """F1 (with its 95% bootstrap interval over instances) and accuracy of each ``attention``
    name's prediction column against ``label`` (``classes`` in ``df`` decides binary or macro
    F1)."""
    if df.empty:
        return pd.DataFrame()
    classes, labels = int(df["classes"].iloc[0]), df["label"].to_numpy()
    rows = []
    for attention, column in predictions.items():
        predicted = df[column].to_numpy()
        rows.append(
            {
                "attention": attention,
                **columns_of("f1", f1_bootstrap(labels, predicted, classes)),
                "f1 of": "positive class" if classes == 2 else f"macro, {classes} classes",
                "accuracy": float(accuracy_score(labels, predicted)),
                "count": len(df),
            }
        )
    return pd.DataFrame(rows)


def bar_figure(summary: pd.DataFrame, colors: list[str], xlabel: str, title: str) -> plt.Figure:
    """F1 per attention variant as labelled bars, with its 95% bootstrap interval as error
    bars."""
    fig, ax = plt.subplots(figsize=(1.3 * len(summary) + 2, 3.8))
    errors = [summary["f1"] - summary["f1_low"], summary["f1_high"] - summary["f1"]]
    ax.bar(summary["attention"], summary["f1"], color=colors[: len(summary)])
    ax.errorbar(summary["attention"], summary["f1"], yerr=errors, fmt="none", ecolor="black")
    for x, (value, top) in enumerate(zip(summary["f1"], summary["f1_high"], strict=True)):
        ax.text(x, top, f"{value:.3f}", ha="center", va="bottom")
    ax.set(xlabel=xlabel, ylabel="F1 (positive class; macro if multi-class)", ylim=(0, 1.05))
    ax.set_title(title)
    fig.tight_layout()
    return fig


def figure_uniform(df: pd.DataFrame) -> plt.Figure:
    """F1 of trained vs uniform attention."""
    return bar_figure(
        summarise_uniform(df),
        [COLORS["trained"], COLORS["uniform"]],
        "attention of the model",
        "Trained vs uniform attention",
    )


# ---------------------------------------------------------------- B2: seeds


def seed_roles(params: dict) -> list[str]:
    return [f"seed {seed}" for seed in AUTHORS_SEEDS[: params["extra_seeds"]]]


def validate_seeds(params: dict) -> None:
    if not 1 <= params["extra_seeds"] <= len(AUTHORS_SEEDS):
        raise InvalidInputError(
            f"extra_seeds must be between 1 and {len(AUTHORS_SEEDS)} (the authors' seeds "
            f"{', '.join(map(str, AUTHORS_SEEDS))}), got {params['extra_seeds']}"
        )


def seeds_needs(params: dict, setting: Setting) -> Needs:
    needs: Needs = {
        role: SiblingModel(seed=seed)
        for role, seed in zip(seed_roles(params), AUTHORS_SEEDS, strict=False)
    }
    if params["jw_overlay"]:
        needs["jw-adversary"] = ExperimentResult("jain_wallace.adversarial")
    return needs


def run_seeds(
    checkpoint: Checkpoint,
    frame: pd.DataFrame,
    params: dict,
    progress: bool,
    context: RunContext,
) -> pd.DataFrame:
    """Per instance: median over seeds of JSD(base attention, seed attention), mean output
    change, and (``jw_overlay``) the J&W adversary of the instance (eps-max JSD, its output
    change)."""
    seeds = [context.checkpoint(role) for role in seed_roles(params)]
    table = seed_variance(checkpoint, seeds, frame)
    if params["jw_overlay"]:
        chosen = chosen_adversaries(context.result("jw-adversary"), checkpoint)
        table = table.merge(chosen[["instance", "jw_jsd", "jw_output_change"]], on="instance")
    return table


def seed_variance(base: Checkpoint, seeds: list[Checkpoint], frame: pd.DataFrame) -> pd.DataFrame:
    """The seed comparison's per-instance table (``seed_jsd`` / ``seed_output_change``: the
    per-seed values, median / mean in ``jsd`` / ``output_change``)."""
    outputs = site_outputs(base, frame)
    per_seed = [site_outputs(seed, frame) for seed in seeds]
    distances = np.stack([row_jsd(other.attention, outputs.attention) for other in per_seed], 1)
    changes = np.stack(
        [output_change(other.probabilities, outputs.probabilities) for other in per_seed], 1
    )
    return pd.DataFrame(
        {
            **_frame_columns(frame, base, outputs),
            "jsd": np.median(distances, 1),
            "output_change": changes.mean(1),
            "seed_jsd": list(distances),
            "seed_output_change": list(changes),
        }
    )


def chosen_adversaries(adversarial: pd.DataFrame, checkpoint: Checkpoint) -> pd.DataFrame:
    """One J&W adversary per instance: the most distant (JSD) of those whose output moved by
    at most eps_report, else the one that moved least (never the model's own attention).

    Adds ``jw_jsd``, ``jw_output_change``, ``jw_within_eps`` and ``jw_weights`` (its weights
    on the support, [*site, n])."""
    lead, trail = _classic_framing(checkpoint)
    rows = []
    for record in adversarial.itertuples():
        distance = np.asarray(record.adversary_jsd)
        moved = np.asarray(record.adversary_output_change)
        within = moved <= record.eps_report
        k = (
            int(np.where(within, distance, -np.inf).argmax())
            if within.any()
            else int(moved.argmin())
        )
        weights = dense(record.adversaries[k])
        rows.append(
            {
                "instance": record.instance,
                "jw_jsd": float(distance[k]),
                "jw_output_change": float(moved[k]),
                "jw_within_eps": bool(within.any()),
                "jw_weights": weights[..., lead : weights.shape[-1] - trail],
            }
        )
    return pd.DataFrame(rows)


def dense(values: object) -> np.ndarray:
    """A float32 array from nested lists or the nested object arrays parquet gives back for
    list columns (a transformer's adversary: [heads, tokens])."""
    array = np.asarray(values)
    if array.dtype == object:
        return np.stack([dense(value) for value in array])
    return array.astype(np.float32)


def _classic_framing(checkpoint: Checkpoint) -> tuple[int, int]:
    """Positions before / after the content that a classic model's attention rows carry (its
    support is the content); a transformer's support is every unpadded key: none."""
    if isinstance(checkpoint.model, HFClassifier):
        return 0, 0
    framing = checkpoint.pipeline.framing
    return framing.lead, framing.trail


def summarise_seeds(df: pd.DataFrame) -> pd.DataFrame:
    """Per predicted class: median JSD across seeds and mean output change, beside the J&W
    adversaries' median JSD and output change, each with its 95% bootstrap interval."""
    statistics = {
        "seed median jsd": ("jsd", np.median),
        "seed mean output change": ("output_change", np.mean),
    }
    if "jw_jsd" in df:
        statistics |= {
            "jw median jsd": ("jw_jsd", np.median),
            "jw mean output change": ("jw_output_change", np.mean),
        }
    return pd.DataFrame(
        [
            {"predicted_class": label, **interval_row(group, statistics), "count": len(group)}
            for label, group in df.groupby("predicted_class")
        ]
    )


def figure_seeds(df: pd.DataFrame) -> plt.Figure:
    """Left: JSD from the base seed by the base model's max-attention bin (violins per class).
    Right: JSD vs output change per instance for the seeds, the J&W adversaries overlaid."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    violins_by_bin(df, "jsd", left)
    left.set(ylabel="median JSD from the base seed", title="Attention across seeds")
    right.scatter(
        df["jsd"], df["output_change"], s=8, alpha=0.5, color=COLORS["seed"], label="seeds"
    )
    if "jw_jsd" in df:
        right.scatter(
            df["jw_jsd"],
            df["jw_output_change"],
            s=8,
            alpha=0.5,
            color=COLORS["jw"],
            marker="x",
            label="J&W adversary",
        )
    _distance_axes(right, "", "Seeds vs J&W adversaries")
    right.legend()
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- B4: one adversary


def validate_adversary(params: dict) -> None:
    AdversaryConfig(params["lambda"], params["epochs"], params["patience"])


def adversary_needs(params: dict, setting: Setting) -> Needs:
    return {}  # the model itself and its training data: it needs the run's context only


def run_adversary(
    checkpoint: Checkpoint,
    frame: pd.DataFrame,
    params: dict,
    progress: bool,
    context: RunContext,
) -> pd.DataFrame:
    """Train the model-consistent adversary at ``lambda`` (kept in the work folder, where the
    diagnostic finds it) and compare it with the model on ``frame``."""
    dataset = context.dataset
    base_train = site_outputs(checkpoint, dataset.train)
    adversary = train_consistent_adversary(
        checkpoint,
        dataset,
        base_train.attention,
        base_train.probabilities,
        trained_checkpoint_dir(context.workdir),
        AdversaryConfig(params["lambda"], params["epochs"], params["patience"]),
        training_recipe(checkpoint),
        context.cache,
        progress,
    )
    return adversary_comparison(checkpoint, adversary, frame).assign(**{"lambda": params["lambda"]})


def adversary_comparison(
    base: Checkpoint, adversary: Checkpoint, frame: pd.DataFrame
) -> pd.DataFrame:
    """Per instance: JSD of the adversary's attention from the model's, the output change, and
    the adversary's prediction."""
    outputs, other = site_outputs(base, frame), site_outputs(adversary, frame)
    return pd.DataFrame(
        {
            **_frame_columns(frame, base, outputs),
            "adversary_predicted": other.probabilities.argmax(1),
            "jsd": row_jsd(other.attention, outputs.attention),
            "output_change": output_change(other.probabilities, outputs.probabilities),
        }
    )


def summarise_adversary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean JSD and mean output change of the adversary (with 95% bootstrap intervals), and
    how often it predicts as the model does."""
    return pd.DataFrame(
        [
            {
                "lambda": df["lambda"].iloc[0] if len(df) else float("nan"),
                **interval_row(df, DISTANCE_MEANS),
                "same prediction": (df["adversary_predicted"] == df["predicted"]).mean(),
                "count": len(df),
            }
        ]
    )


def figure_adversary(df: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(df["jsd"], df["output_change"], s=8, alpha=0.5, color=COLORS["jw"])
    _distance_axes(ax, "", "Model-consistent adversary")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- B4: the lambda grid


def _lambda_role(value: float) -> str:
    return f"lambda={value:g}"


def validate_consistent(params: dict) -> None:
    _positive(params["lambdas"], "lambdas")


def consistent_needs(params: dict, setting: Setting) -> Needs:
    needs: Needs = {
        _lambda_role(value): ExperimentResult("wiegreffe_pinter.adversary", {"lambda": value})
        for value in params["lambdas"]
    }
    needs["seeds"] = ExperimentResult("wiegreffe_pinter.seeds")
    needs["uniform"] = ExperimentResult("wiegreffe_pinter.uniform")
    needs["jw-adversary"] = ExperimentResult("jain_wallace.adversarial")
    return needs


def run_consistent(
    checkpoint: Checkpoint,
    frame: pd.DataFrame,
    params: dict,
    progress: bool,
    context: RunContext,
) -> pd.DataFrame:
    """One row per instance and source (each lambda's adversary, the seeds, the uniform
    model, the J&W adversary): ``jsd`` of attention from the model's and ``output_change``."""
    parts = []
    for value in params["lambdas"]:
        table = context.result(_lambda_role(value))
        parts.append(table.assign(source=_lambda_role(value), **{"lambda": value}))
    parts.append(context.result("seeds").assign(source="seeds"))
    uniform = context.result("uniform")  # perhaps on the whole split: the frame's rows
    parts.append(uniform[uniform["instance"] < len(frame)].assign(source="uniform"))
    chosen = chosen_adversaries(context.result("jw-adversary"), checkpoint)
    parts.append(
        chosen.rename(columns={"jw_jsd": "jsd", "jw_output_change": "output_change"}).assign(
            source="J&W adversary"
        )
    )
    columns = ["instance", "source", "lambda", "jsd", "output_change"]
    return pd.concat([part.reindex(columns=columns) for part in parts], ignore_index=True)


def summarise_consistent(df: pd.DataFrame) -> pd.DataFrame:
    """Per source: mean JSD and mean output change over the instances, with 95% bootstrap
    intervals."""
    return pd.DataFrame(
        [
            {
                "source": source,
                "lambda": group["lambda"].iloc[0],
                **interval_row(group, DISTANCE_MEANS),
                "count": len(group),
            }
            for source, group in df.groupby("source", sort=False)
        ]
    )


def figure_consistent(df: pd.DataFrame) -> plt.Figure:
    """Mean JSD vs mean output change: the adversaries along the lambda grid, with the seed,
    uniform and J&W points."""
    summary = summarise_consistent(df)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    grid = summary[summary["lambda"].notna()].sort_values("lambda")
    ax.plot(
        grid["mean jsd"],
        grid["mean output change"],
        "-o",
        color=COLORS["trained"],
        label="W&P adversary",
    )
    for row in grid.itertuples():
        # near the JSD maximum (ln 2) the points stack up: label them to the left
        right = row[3] > 0.5
        ax.annotate(
            f"λ={row[2]:g}",
            (row[3], row[4]),
            textcoords="offset points",
            xytext=(-6 if right else 6, 0),
            ha="right" if right else "left",
            va="center",
        )
    for source, color, marker in (
        ("seeds", COLORS["seed"], "s"),
        ("uniform", COLORS["uniform"], "D"),
        ("J&W adversary", COLORS["jw"], "x"),
    ):
        point = summary[summary["source"] == source]
        if len(point):
            ax.scatter(
                point["mean jsd"],
                point["mean output change"],
                color=color,
                marker=marker,
                s=60,
                label=source,
            )
    _distance_axes(ax, "mean ", "Model-consistent adversaries")
    ax.legend()
    fig.tight_layout()
    return fig


def _distance_axes(ax: plt.Axes, statistic: str, title: str) -> None:
    """Labels of a JSD-of-attention vs output-change plot (JSD in nats, at most ln 2)."""
    ax.set(
        xlabel=f"{statistic}JSD of attention from the model's (nats)",
        ylabel=f"{statistic}output change (TVD)",
        xlim=(0, 0.75),  # JSD is at most ln 2 = 0.693
        title=title,
    )


# ---------------------------------------------------------------- B3: diagnostic


def validate_diagnostic(params: dict) -> None:
    unknown = [v for v in params["variants"] if v not in DIAGNOSTIC_VARIANTS]
    if unknown or not params["variants"]:
        raise InvalidInputError(
            f"variants must be a non-empty list of {', '.join(DIAGNOSTIC_VARIANTS)}, "
            f"got {params['variants']!r}"
        )
    _positive([params["adversary_lambda"]], "adversary_lambda")
    rows = params["train_rows"]
    if rows is not None and (not isinstance(rows, int) or isinstance(rows, bool) or rows < 1):
        raise InvalidInputError(f"train_rows must be a number >= 1 or null (all), got {rows!r}")


def diagnostic_needs(params: dict, setting: Setting) -> Needs:
    needs: Needs = {}
    if "jw-adversary" in params["variants"]:
        needs["jw-adversary"] = ExperimentResult("jain_wallace.adversarial")
        needs["jw-adversary-train"] = ExperimentResult(
            "jain_wallace.adversarial", split="train", max_instances=params["train_rows"]
        )
    if "wp-adversary" in params["variants"]:
        needs["wp-adversary"] = ExperimentResult(
            "wiegreffe_pinter.adversary", {"lambda": params["adversary_lambda"]}
        )
    return needs


def run_diagnostic(
    checkpoint: Checkpoint,
    frame: pd.DataFrame,
    params: dict,
    progress: bool,
    context: RunContext,
) -> pd.DataFrame:
    """Train each diagnostic variant on the training split (its first ``train_rows`` rows
    when set) and predict ``frame`` with it."""
    dataset = context.dataset
    if params["train_rows"] is not None:
        dataset = dataset.head({"train": params["train_rows"]})
    # attention source -> weights over the classic tokens of the training rows (on_train)
    # or of the frame's rows
    sources = {
        "base": lambda rows, on_train: word_weights(
            checkpoint, rows, site_outputs(checkpoint, rows).attention
        ),
        "jw-adversary": lambda rows, on_train: word_weights(
            checkpoint,
            rows,
            _jw_weights(
                checkpoint, context.result("jw-adversary-train" if on_train else "jw-adversary")
            ),
        ),
        "wp-adversary": lambda rows, on_train: word_weights(
            checkpoint, rows, site_outputs(context.checkpoint("wp-adversary"), rows).attention
        ),
    }
    recipe = _diagnostic_recipe(checkpoint, params["epochs"])
    columns = {"instance": np.arange(len(frame)), "label": frame["label"].to_numpy()}
    for variant in params["variants"]:
        source = sources.get(variant)
        mode = "fixed" if source else {"uniform": "uniform", "trained": "learned"}[variant]
        model = train_diagnostic(
            dataset,
            context.workdir / variant,
            mode,
            source(dataset.train, True) if source else None,
            recipe,
            context.cache,
            progress,
            _grid(checkpoint),
        )
        test_weights = source(frame, False) if source else None
        pipeline = model.pipeline
        probabilities = predict_with_attention(
            model.model, pipeline.encode_split(frame), test_weights, pipeline.framing
        )
        columns[f"predicted_{variant}"] = probabilities.argmax(1)
    columns["classes"] = len(checkpoint.classes)
    return pd.DataFrame(columns)


def _diagnostic_recipe(checkpoint: Checkpoint, epochs: int) -> TrainConfig:
    """The J&W recipe the model was trained with (a transformer's fine-tuning recipe or an
    image model's recipe does not fit the MLP: it gets the classic defaults, with its
    seed)."""
    config = training_recipe(checkpoint)
    if not isinstance(checkpoint.pipeline, TextPipeline):
        config = TrainConfig(seed=config.seed)
    return replace(config, epochs=epochs)


def _grid(checkpoint: Checkpoint) -> int | None:
    """Cells per side of an image model's patches or cells (None for text)."""
    pipeline = checkpoint.pipeline
    return pipeline.grid[0] if isinstance(pipeline, ImagePipeline) else None


def _jw_weights(checkpoint: Checkpoint, adversarial: pd.DataFrame) -> list[np.ndarray]:
    """The chosen J&W adversary of each row an adversarial unit ran on, in row order."""
    chosen = chosen_adversaries(adversarial, checkpoint).sort_values("instance")
    return list(chosen["jw_weights"])


def word_weights(
    checkpoint: Checkpoint, split: pd.DataFrame, attention: list[np.ndarray]
) -> list[np.ndarray]:
    """Attention of ``checkpoint`` (one [*site, support] array per row of ``split``) as
    weights over the classic tokens of each row, which the diagnostic MLP reads.

    Classic models: the content tokens are the classic tokens already. Transformers: heads
    averaged, each wordpiece's weight moved to the classic token that holds its first
    character (:func:`~attnexplain.alignment.pieces_to_tokens`), [CLS] / [SEP] dropped, and
    renormalised; tokens past the transformer's truncation get 0 (uniform if none is left).
    Image models: weights over their patches or cells (:func:`_on_content`).
    """
    pipeline = checkpoint.pipeline
    if isinstance(pipeline, ImagePipeline):
        return [_on_content(np.asarray(a), pipeline.lead) for a in attention]
    if not isinstance(checkpoint.model, HFClassifier):
        return [np.asarray(a, dtype=np.float32) for a in attention]
    texts = [clean_text(text) for text in split["text"]]
    encoded = pipeline.tokenizer(
        texts, truncation=True, max_length=pipeline.max_length, return_offsets_mapping=True
    )
    out = []
    for text, tokens, weights, offsets in zip(
        split["text"], split["tokens"], attention, encoded["offset_mapping"], strict=True
    ):
        spans = token_spans(text)
        if len(spans) != len(tokens):
            raise InvalidInputError(
                f"the tokens of {text[:40]!r} do not match their text: rebuild the dataset"
            )
        moved = np.asarray(
            pieces_to_tokens(
                np.asarray(weights).reshape(-1, weights.shape[-1]).mean(0), offsets, spans
            ),
            dtype=np.float32,
        )
        total = moved.sum()
        out.append(
            moved / total if total > 0 else np.full(len(tokens), 1 / len(tokens), np.float32)
        )
    return out


def _on_content(weights: np.ndarray, lead: int) -> np.ndarray:
    """An image model's attention [*site, tokens] as weights over its patches or cells:
    heads averaged, the ``lead`` ([CLS]) weights dropped, renormalised."""
    content = weights.reshape(-1, weights.shape[-1]).mean(0)[lead:].astype(np.float32)
    total = content.sum()
    return content / total if total > 0 else np.full(len(content), 1 / len(content), np.float32)


def summarise_diagnostic(df: pd.DataFrame) -> pd.DataFrame:
    """F1 and accuracy of each diagnostic variant."""
    columns = [c for c in df.columns if c.startswith("predicted_")]
    return f1_table(df, {c.removeprefix("predicted_"): c for c in columns})


def figure_diagnostic(df: pd.DataFrame) -> plt.Figure:
    """F1 of the diagnostic MLP per attention variant."""
    summary = summarise_diagnostic(df)
    return bar_figure(
        summary, ["#56B4E9"] * len(summary), "attention the MLP is given", "Diagnostic MLP"
    )


REGISTRATIONS = [
    {
        "name": "wiegreffe_pinter.uniform",
        "function": run_uniform,
        "summary": summarise_uniform,
        "figure": figure_uniform,
        "defaults": UNIFORM_DEFAULTS,
        "parameters": UNIFORM_PARAMETERS,
        "description": "W&P: F1 with attention frozen uniform vs trained",
        "needs": uniform_needs,
    },
    {
        "name": "wiegreffe_pinter.seeds",
        "function": run_seeds,
        "summary": summarise_seeds,
        "figure": figure_seeds,
        "defaults": SEEDS_DEFAULTS,
        "parameters": SEEDS_PARAMETERS,
        "description": "W&P: attention and output differences across training seeds",
        "needs": seeds_needs,
        "validate": validate_seeds,
    },
    {
        "name": "wiegreffe_pinter.adversary",
        "function": run_adversary,
        "summary": summarise_adversary,
        "figure": figure_adversary,
        "defaults": ADVERSARY_DEFAULTS,
        "parameters": ADVERSARY_PARAMETERS,
        "description": "W&P: a model-consistent adversary trained at one lambda",
        "needs": adversary_needs,
        "validate": validate_adversary,
    },
    {
        "name": "wiegreffe_pinter.consistent",
        "function": run_consistent,
        "summary": summarise_consistent,
        "figure": figure_consistent,
        "defaults": CONSISTENT_DEFAULTS,
        "parameters": CONSISTENT_PARAMETERS,
        "description": "W&P: model-consistent adversaries along a lambda grid vs seeds, "
        "uniform and J&W",
        "needs": consistent_needs,
        "validate": validate_consistent,
    },
    {
        "name": "wiegreffe_pinter.diagnostic",
        "function": run_diagnostic,
        "summary": summarise_diagnostic,
        "figure": figure_diagnostic,
        "defaults": DIAGNOSTIC_DEFAULTS,
        "parameters": DIAGNOSTIC_PARAMETERS,
        "description": "W&P: F1 of an MLP given uniform, its own, the model's or adversarial "
        "attention",
        "needs": diagnostic_needs,
        "validate": validate_diagnostic,
    },
]
