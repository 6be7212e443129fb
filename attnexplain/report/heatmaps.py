"""Token heatmaps: per word of a text, the scores of several explanations side by side.

Transformers' wordpieces are summed per word (:mod:`attnexplain.alignment`), so attention and
the normalised J&W gradient stay distributions over words and integrated gradients stay
additive; the classic models' tokens are words already. A heatmap holds numbers only: the HTML
report and :func:`attnexplain.report.figures.token_heatmap` draw it.

What does not depend on the instances being texts is shared with the image maps
(:mod:`attnexplain.report.image_maps`): :func:`explain_instances` computes the methods,
:func:`fragile_cases` picks the adversarially fragile instances and their attentions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from attnexplain.alignment import WordAlignment, text_alignment, word_scores
from attnexplain.data.image_tokens import IMAGE_COLUMN, ImagePipeline
from attnexplain.device import to_numpy
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
# what a model reads of one instance: a text, or an image [channels, height, width]
Instance = str | np.ndarray


@dataclass(frozen=True)
class HeatmapRow:
    """One explanation of an instance: ``scores`` [words of a text, or cells of an image
    row-major] and ``scale``, the |score| drawn with the strongest colour (the row's largest,
    or the largest of rows meant to be compared)."""

    label: str
    scores: list[float]
    scale: float

    def relative(self) -> np.ndarray:
        """The scores over the scale [tokens], in [-1, 1]; all 0 for a zero scale, NaN as 0."""
        if self.scale <= 0:
            return np.zeros(len(self.scores))
        return np.nan_to_num(np.asarray(self.scores, dtype=float) / self.scale)


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


def own_row(label: str, scores: np.ndarray) -> HeatmapRow:
    """A row scaled to its own largest |score|; ``scores`` [tokens]."""
    return HeatmapRow(label, np.asarray(scores, dtype=float).tolist(), largest(scores))


def shared_rows(scores: dict[str, np.ndarray]) -> list[HeatmapRow]:
    """A row per label, all on one scale (the largest |score| of them all); ``scores``:
    label -> [tokens]."""
    scale = largest(*scores.values())
    return [HeatmapRow(label, values.tolist(), scale) for label, values in scores.items()]


def head_mean(weights: np.ndarray) -> np.ndarray:
    """Attention on a model's support [*site, n] averaged over heads (if any) -> [n]."""
    weights = np.asarray(weights, dtype=np.float64)
    return weights.reshape(-1, weights.shape[-1]).mean(0)


def content_to_words(scores: np.ndarray, alignment: WordAlignment) -> np.ndarray:
    """Scores of the content tokens [content] (what :func:`explain` gives) per word."""
    values = torch.tensor(np.array(scores, dtype=np.float64))
    return to_numpy(word_scores(values, alignment, "sum"))


def support_to_words(
    checkpoint: Checkpoint, weights: np.ndarray, alignment: WordAlignment
) -> np.ndarray:
    """Attention on the model's support ([*site, n]: a classic model's content tokens, a
    transformer's every unpadded key per head) per word, heads averaged; weight on [CLS] /
    [SEP] belongs to no word and is left out."""
    flat = torch.tensor(head_mean(weights))
    content = not isinstance(checkpoint.model, HFClassifier)
    return to_numpy(word_scores(flat, alignment, "sum", content))


def model_inputs(checkpoint: Checkpoint, frame: pd.DataFrame) -> list[Instance]:
    """What the model reads of each row of ``frame``: its image [channels, height, width] for a
    vision model, its text otherwise."""
    column = IMAGE_COLUMN if isinstance(checkpoint.pipeline, ImagePipeline) else "text"
    return list(frame[column])


def _prediction(checkpoint: Checkpoint, inputs: Sequence[Instance]) -> np.ndarray:
    """The model's class probabilities [inputs, classes]."""
    pipeline = checkpoint.pipeline
    sequences = [pipeline.encode(one) for one in inputs]
    return predict_proba(checkpoint.model, sequences, pipeline.framing)


def _predicted(checkpoint: Checkpoint, probabilities: np.ndarray) -> str:
    best = int(probabilities.argmax())
    return f"predicted {checkpoint.classes[best]} (p = {probabilities[best]:.3f})"


@dataclass(frozen=True)
class Explained:
    """One instance explained: per method, the scores of its content tokens [content] (a
    text's tokens, an image's patches / cells row-major), and a ``caption`` that starts with
    the model's prediction."""

    scores: dict[str, np.ndarray]
    caption: str


def explain_instances(
    checkpoint: Checkpoint,
    inputs: Sequence[Instance],
    methods: Sequence[str],
    captions: Sequence[str] | None = None,
) -> list[Explained]:
    """Each of ``inputs`` (texts or images) explained by ``methods``
    (:func:`attnexplain.explain.explain`); ``captions``: one per input, after the prediction."""
    inputs = list(inputs)
    frame = explain(checkpoint, inputs, methods)
    probabilities = _prediction(checkpoint, inputs)
    captions = captions or [""] * len(inputs)
    explained = []
    for instance, caption in zip(range(len(inputs)), captions, strict=True):
        rows = frame[frame["instance"] == instance]
        scores = {
            method: rows[rows["method"] == method].sort_values("position")["score"].to_numpy()
            for method in methods
        }
        parts = (_predicted(checkpoint, probabilities[instance]), caption)
        explained.append(Explained(scores, "; ".join(part for part in parts if part)))
    return explained


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
    titles = titles or [f"Text {i + 1}" for i in range(len(texts))]
    heatmaps = []
    for title, text, explained in zip(
        titles, texts, explain_instances(checkpoint, texts, methods, captions), strict=True
    ):
        alignment = text_alignment(checkpoint.pipeline, text)
        rows = [
            own_row(METHOD_LABELS.get(method, method), content_to_words(scores, alignment))
            for method, scores in explained.scores.items()
        ]
        heatmaps.append(TokenHeatmap(title, alignment.words, rows, explained.caption, text))
    return heatmaps


@dataclass(frozen=True)
class FragileCase:
    """An instance of a J&W adversarial table beside the adversary
    :func:`~attnexplain.experiments.wiegreffe_pinter.chosen_adversaries` picks for it.

    ``attention`` / ``adversary``: the model's own and the adversarial attention on the
    model's support, [*site, support] each; ``facts``: the prediction, the eps-max JSD and how
    far the adversary moved attention and output, a phrase each."""

    title: str
    input: Instance
    attention: np.ndarray
    adversary: np.ndarray
    facts: list[str]


def fragile_cases(
    checkpoint: Checkpoint,
    frame: pd.DataFrame,
    adversarial: pd.DataFrame,
    most: int = 1,
    least: int = 1,
) -> list[FragileCase]:
    """The ``most`` most and the ``least`` least adversarially fragile instances of a J&W
    adversarial table (largest / smallest eps-max JSD; an instance is shown once).

    ``frame``: the split the table was computed on (its ``instance`` column indexes rows).
    """
    if adversarial.empty:
        return []
    chosen = chosen_adversaries(adversarial, checkpoint).merge(
        adversarial[["instance", "eps_max_jsd", "eps_report"]], on="instance"
    )
    jsd = chosen["eps_max_jsd"].to_numpy()
    top = [int(i) for i in np.argsort(-jsd, kind="stable")[:most]]
    bottom = [int(i) for i in np.argsort(jsd, kind="stable") if i not in top][:least]
    picks = [("Most fragile", chosen.iloc[i]) for i in top]
    picks += [("Least fragile", chosen.iloc[i]) for i in bottom]
    rows = frame.iloc[[int(record["instance"]) for _, record in picks]]
    inputs = model_inputs(checkpoint, rows)
    own = site_outputs(checkpoint, rows.reset_index(drop=True))
    probabilities = _prediction(checkpoint, inputs)
    return [
        FragileCase(
            f"{name}: instance {int(record['instance'])}",
            inputs[position],
            own.attention[position],
            record["jw_weights"],
            _fragile_facts(checkpoint, record, probabilities[position]),
        )
        for position, (name, record) in enumerate(picks)
    ]


def _fragile_facts(
    checkpoint: Checkpoint, record: pd.Series, probabilities: np.ndarray
) -> list[str]:
    """What a :class:`FragileCase` says of its instance; ``record``: a row of
    :func:`chosen_adversaries`' table with the eps-max JSD; ``probabilities`` [classes]."""
    within = "within" if record["jw_within_eps"] else "none within"
    return [
        _predicted(checkpoint, probabilities),
        f"eps-max JSD {record['eps_max_jsd']:.3f}",
        f"the adversary shown ({within} eps {record['eps_report']:g}): JSD "
        f"{record['jw_jsd']:.3f} from the model's attention, output change "
        f"{record['jw_output_change']:.3f} (TVD)",
    ]


def fragile_heatmaps(
    checkpoint: Checkpoint, frame: pd.DataFrame, adversarial: pd.DataFrame
) -> list[TokenHeatmap]:
    """The most and the least adversarially fragile instances of a J&W adversarial table
    (:func:`fragile_cases`), each with the model's attention beside the adversary's, on one
    colour scale.

    ``frame``: the split the table was computed on (its ``instance`` column indexes rows).
    """
    heatmaps = []
    for case in fragile_cases(checkpoint, frame, adversarial):
        alignment = text_alignment(checkpoint.pipeline, case.input)
        model = support_to_words(checkpoint, case.attention, alignment)
        adversary = support_to_words(checkpoint, case.adversary, alignment)
        rows = shared_rows({"model's attention": model, "adversarial attention": adversary})
        heatmaps.append(
            TokenHeatmap(case.title, alignment.words, rows, "; ".join(case.facts), case.input)
        )
    return heatmaps
