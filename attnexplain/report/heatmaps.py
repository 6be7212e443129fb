"""Token heatmaps: per word of a text, the scores of several explanations side by side.

Transformers' wordpieces are summed per word (:mod:`attnexplain.alignment`), so attention and
the normalised J&W gradient stay distributions over words and integrated gradients stay
additive; the classic models' tokens are words already. A heatmap holds numbers only: the HTML
report and :func:`attnexplain.report.figures.token_heatmap` draw it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from attnexplain.alignment import WordAlignment, aggregate_to_words, text_alignment
from attnexplain.errors import InvalidInputError
from attnexplain.experiments.site_attention import site_outputs
from attnexplain.experiments.wiegreffe_pinter import chosen_adversaries
from attnexplain.explain import DEFAULT_METHODS, explain
from attnexplain.models.checkpoint import Checkpoint
from attnexplain.models.hf import HFClassifier
from attnexplain.models.train import predict_proba

METHOD_LABELS = {
    "attention": "attention",
    "jw-gradient": "J&W gradient",
    "leave-one-out": "leave-one-out",
    "integrated-gradients": "integrated gradients",
}


@dataclass(frozen=True)
class HeatmapRow:
    """One explanation of a text: ``scores`` [words] and ``scale``, the |score| drawn with the
    strongest colour (the row's largest, or the largest of rows meant to be compared)."""

    label: str
    scores: list[float]
    scale: float


@dataclass(frozen=True)
class TokenHeatmap:
    """Explanations of one text: ``words`` [words], ``rows`` (each [words]), a ``title``, a
    ``caption`` (the prediction, the label, what the rows mean) and the raw ``text``."""

    title: str
    words: list[str]
    rows: list[HeatmapRow]
    caption: str = ""
    text: str = ""


def largest(*scores: np.ndarray) -> float:
    """The largest finite |score| of the arrays, 0.0 for none."""
    values = np.abs(np.concatenate([np.asarray(s, dtype=float) for s in scores]))
    values = values[np.isfinite(values)]
    return float(values.max()) if values.size else 0.0


def _per_word(
    values: np.ndarray, alignment: WordAlignment, word_ids: list[int | None]
) -> np.ndarray:
    """Scores [positions] summed per word -> [words]; ``word_ids`` [positions]."""
    if len(values) != len(word_ids):
        raise InvalidInputError(
            f"{len(values)} scores for a text of {len(word_ids)} tokens: the text is not the "
            f"one the scores were computed on (has the dataset changed since the run?)"
        )
    scores = torch.tensor(np.array(values, dtype=np.float64))
    return aggregate_to_words(scores, WordAlignment(alignment.words, word_ids), "sum").numpy()


def content_to_words(scores: np.ndarray, alignment: WordAlignment) -> np.ndarray:
    """Scores of the content tokens [content] (what :func:`explain` gives) per word."""
    return _per_word(scores, alignment, [w for w in alignment.word_ids if w is not None])


def support_to_words(
    checkpoint: Checkpoint, weights: np.ndarray, alignment: WordAlignment
) -> np.ndarray:
    """Attention on the model's support ([*site, n]: a classic model's content tokens, a
    transformer's every unpadded key per head) per word, heads averaged; weight on [CLS] /
    [SEP] belongs to no word and is left out."""
    weights = np.asarray(weights, dtype=np.float64)
    flat = weights.reshape(-1, weights.shape[-1]).mean(0)
    if isinstance(checkpoint.model, HFClassifier):
        return _per_word(flat, alignment, alignment.word_ids)
    return content_to_words(flat, alignment)


def _prediction(checkpoint: Checkpoint, texts: Sequence[str]) -> np.ndarray:
    pipeline = checkpoint.pipeline
    sequences = [pipeline.encode(text) for text in texts]
    return predict_proba(checkpoint.model, sequences, pipeline.framing)


def _predicted(checkpoint: Checkpoint, probabilities: np.ndarray) -> str:
    best = int(probabilities.argmax())
    return f"predicted {checkpoint.classes[best]} (p = {probabilities[best]:.3f})"


def explain_heatmaps(
    checkpoint: Checkpoint,
    texts: Sequence[str],
    methods: Sequence[str] = DEFAULT_METHODS,
    titles: Sequence[str] | None = None,
    captions: Sequence[str] | None = None,
) -> list[TokenHeatmap]:
    """One heatmap per text: a row per method (:func:`attnexplain.explain.explain`), at the
    word level, each row scaled to its own largest |score|.

    ``titles`` / ``captions``: one per text (default: ``Text 1``... / none); the caption
    starts with the model's prediction.
    """
    texts = list(texts)
    frame = explain(checkpoint, texts, methods)
    probabilities = _prediction(checkpoint, texts)
    titles = titles or [f"Text {i + 1}" for i in range(len(texts))]
    captions = captions or [""] * len(texts)
    heatmaps = []
    for instance, text in enumerate(texts):
        alignment = text_alignment(checkpoint.pipeline, text)
        rows = []
        for method in methods:
            chosen = frame[(frame["instance"] == instance) & (frame["method"] == method)]
            scores = content_to_words(chosen.sort_values("position")["score"].to_numpy(), alignment)
            rows.append(
                HeatmapRow(METHOD_LABELS.get(method, method), scores.tolist(), largest(scores))
            )
        caption = "; ".join(
            part
            for part in (_predicted(checkpoint, probabilities[instance]), captions[instance])
            if part
        )
        heatmaps.append(TokenHeatmap(titles[instance], alignment.words, rows, caption, text))
    return heatmaps


def fragile_heatmaps(
    checkpoint: Checkpoint, frame: pd.DataFrame, adversarial: pd.DataFrame
) -> list[TokenHeatmap]:
    """The most and the least adversarially fragile instances of a J&W adversarial table
    (largest / smallest eps-max JSD), each with the model's attention beside the adversary
    :func:`~attnexplain.experiments.wiegreffe_pinter.chosen_adversaries` picks for it, on one
    colour scale.

    ``frame``: the split the table was computed on (its ``instance`` column indexes rows).
    """
    if adversarial.empty:
        return []
    chosen = chosen_adversaries(adversarial, checkpoint).merge(
        adversarial[["instance", "eps_max_jsd", "eps_report"]], on="instance"
    )
    order = chosen["eps_max_jsd"].to_numpy()
    picks = [("Most fragile", int(order.argmax())), ("Least fragile", int(order.argmin()))]
    if len(chosen) == 1:
        picks = picks[:1]
    rows = frame.iloc[[int(chosen["instance"].iloc[i]) for _, i in picks]].reset_index(drop=True)
    own = site_outputs(checkpoint, rows)
    probabilities = _prediction(checkpoint, list(rows["text"]))
    heatmaps = []
    for position, (name, i) in enumerate(picks):
        record = chosen.iloc[i]
        text = rows["text"].iloc[position]
        alignment = text_alignment(checkpoint.pipeline, text)
        model = support_to_words(checkpoint, own.attention[position], alignment)
        adversary = support_to_words(checkpoint, record["jw_weights"], alignment)
        scale = largest(model, adversary)
        within = "within" if record["jw_within_eps"] else "none within"
        caption = (
            f"{_predicted(checkpoint, probabilities[position])}; eps-max JSD "
            f"{record['eps_max_jsd']:.3f}; the adversary shown ({within} eps "
            f"{record['eps_report']:g}): JSD {record['jw_jsd']:.3f} from the model's attention, "
            f"output change {record['jw_output_change']:.3f} (TVD)"
        )
        heatmaps.append(
            TokenHeatmap(
                f"{name}: instance {int(record['instance'])}",
                alignment.words,
                [
                    HeatmapRow("model's attention", model.tolist(), scale),
                    HeatmapRow("adversarial attention", adversary.tolist(), scale),
                ],
                caption,
                text,
            )
        )
    return heatmaps
