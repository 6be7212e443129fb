"""ROAR (Hooker et al. 2019, "A benchmark for interpretability methods in deep neural
networks"): remove each instance's top-k% words by a method's scores, retrain the model on
what is left, and measure its accuracy on test texts cut the same way. Deleting words makes
inputs the model never saw; retraining on them removes that shift, so an accuracy that
falls says the removed words carried the label, not that the model was surprised. Random
removal is the baseline a method must beat.

What is removed is words. A classic model's tokens are words already; a transformer's
wordpieces are summed per word (:func:`attnexplain.alignment.word_scores`, as the heatmaps
do: removing a word removes what all its pieces carry) and its text is cut by whole words,
so a method and random removal compete over the same units and a word is never left half
there. The scores are the trained model's, for every split; k% of a text's n words is
ceil(k n / 100), capped at n - 1 so that every text keeps a word (a model has no output for
an empty text). Single-text classifiers that attnexplain trained: the classic models
(retrained in seconds to minutes) and fine-tuned transformers (fine-tuned again from the
pretrained encoder with the same recipe, :func:`attnexplain.experiments.needs.retrain_like`).

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

from attnexplain.alignment import WordAlignment, classic_alignment, word_scores
from attnexplain.attribution import attribute, list_methods
from attnexplain.data.batching import Batch, bucketed_batches
from attnexplain.data.image_tokens import ImagePipeline
from attnexplain.data.registry import Dataset
from attnexplain.data.text import EOS, PAIR_COLUMN, SOS, clean_text, tokenize
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
from attnexplain.models.decoder import is_decoder
from attnexplain.models.hf import HFClassifier, WordpieceTokenizer
from attnexplain.models.train import predict_proba
from attnexplain.uncertainty import interval_columns

ROAR_PERCENTS = (10, 30, 50, 70, 90)
RANDOM = "random"
RETRAIN_DEFAULTS = {"method": "jw-gradient", "percent": 30, "seed": 0, "batch_size": 64}
CURVE_DEFAULTS = {"methods": ["attention", "jw-gradient"], "percents": list(ROAR_PERCENTS)}
RETRAIN_PARAMETERS = {
    "method": f"whose top words are removed (a registered method, or {RANDOM!r})",
    "percent": "the share of each text's words removed, in percent",
    "seed": "the seed of random removal",
}
CURVE_PARAMETERS = {
    "methods": "the methods compared (random removal is always added)",
    "percents": "the shares of words removed, in percent (one retrained model each)",
}

Scorer = Callable[[Batch, pd.DataFrame], torch.Tensor]
"""``scorer(batch, frame) -> scores [batch, tokens]`` for a batch of ``frame``'s rows
``batch.index``."""


def method_scorer(checkpoint: Checkpoint, method: str) -> Scorer:
    """The registered attribution ``method`` on ``checkpoint``'s model."""
    return lambda batch, frame: attribute(checkpoint.model, batch, method).scores


def random_scorer(checkpoint: Checkpoint, seed: int) -> Scorer:
    """Uniform random removal: one draw per word of a row (as ``checkpoint``'s pipeline
    encodes it), the same for the same row of the same frame and ``seed``, put on the word's
    first token (its others 0), so that every word is as likely to go however many wordpieces
    it has."""
    pipeline = checkpoint.pipeline

    def scores(batch: Batch, frame: pd.DataFrame) -> torch.Tensor:
        device = batch.content_mask.device
        out = torch.zeros(batch.content_mask.shape, device=device)
        for row, index in enumerate(batch.index.tolist()):
            alignment = encoded_words(pipeline, frame.iloc[index])
            generator = seeded_generator(seed * 1_000_003 + int(index))
            draws = draw(torch.rand, (len(alignment.words),), generator, device)
            positions = batch.content_mask[row].nonzero().flatten().tolist()
            words = [word for word in alignment.word_ids if word is not None]
            seen: set[int] = set()
            # remove_top checks that the row has as many content positions as word tokens
            for position, word in zip(positions, words, strict=False):
                if word not in seen:
                    seen.add(word)
                    out[row, position] = draws[word]
        return out

    return scores


def removal_counts(lengths: torch.Tensor, percent: int) -> torch.Tensor:
    """Words to remove of texts of ``lengths`` [N] words: ceil(``percent``% of each), at
    most all but one."""
    return torch.minimum(-(-percent * lengths // 100), (lengths - 1).clamp_min(0))


def encoded_words(pipeline, row: pd.Series) -> WordAlignment:
    """The words of a frame's ``row`` as ``pipeline`` encodes it, and the word of each
    position of the encoding: a classic pipeline encodes the row's ``tokens``, which are its
    words; a wordpiece one its ``text``, whose words its tokenizer splits (those past its
    truncation, which the model never reads, are left out)."""
    if isinstance(pipeline, WordpieceTokenizer):
        return pipeline.align(row["text"])
    return classic_alignment([SOS, *row["tokens"], EOS])


def kept_text(text: str, alignment: WordAlignment, keep: list[bool]) -> str:
    """``text`` with only the words flagged in ``keep`` [words] (``alignment``'s, with their
    spans): between two kept neighbours what stood between them (``don`` ``'t`` stay
    ``don't``), and a space where words were cut out, so that the words either side stay
    apart."""
    source = clean_text(text)
    parts: list[str] = []
    previous = None
    for word, ((start, end), flag) in enumerate(zip(alignment.spans, keep, strict=True)):
        if not flag:
            continue
        if previous is not None:
            parts.append(
                source[alignment.spans[previous][1] : start] if previous == word - 1 else " "
            )
        parts.append(source[start:end])
        previous = word
    return "".join(parts)


def remove_top(
    checkpoint: Checkpoint, frame: pd.DataFrame, scorer: Scorer, percent: int, batch_size: int
) -> pd.DataFrame:
    """``frame`` with each row's top ``percent``% words by ``scorer`` (summed per word:
    module docstring) removed, the rest in order.

    Both text columns say what is left, so that the cut frame is what the pipeline encodes: a
    classic pipeline reads ``tokens`` (and ``text`` becomes them joined by spaces), a
    wordpiece one ``text`` (cut by :func:`kept_text`; ``tokens`` become its classic tokens).
    A ``rationale`` with one flag per word is cut with its words, any other dropped.
    """
    pipeline = checkpoint.pipeline
    wordpiece = isinstance(pipeline, WordpieceTokenizer)
    texts, tokens = list(frame["text"]), list(frame["tokens"])
    rationale = list(frame["rationale"]) if "rationale" in frame else None
    sequences = pipeline.encode_split(frame)
    for batch in bucketed_batches(sequences, batch_size=batch_size, framing=pipeline.framing):
        content = batch.content_mask
        scores = scorer(batch, frame)
        rows = batch.index.tolist()
        alignments = [encoded_words(pipeline, frame.iloc[index]) for index in rows]
        per_word = [
            word_scores(scores[row][content[row]], alignment, "sum")
            for row, alignment in enumerate(alignments)
        ]
        lengths = torch.tensor([len(words) for words in per_word], device=content.device)
        padded = torch.nn.utils.rnn.pad_sequence(per_word, batch_first=True)
        present = torch.arange(padded.shape[1], device=content.device) < lengths.unsqueeze(1)
        removed = top_k_mask(padded, present, removal_counts(lengths, percent))
        for row, (index, alignment) in enumerate(zip(rows, alignments, strict=True)):
            keep = (~removed[row, : len(alignment.words)]).tolist()
            if wordpiece:
                texts[index] = kept_text(texts[index], alignment, keep)
                tokens[index] = tokenize(texts[index])
            else:
                tokens[index] = [
                    word for word, flag in zip(tokens[index], keep, strict=True) if flag
                ]
                texts[index] = " ".join(tokens[index])
            if rationale is not None:
                flags = rationale[index]
                rationale[index] = (
                    [flag for flag, kept in zip(flags, keep, strict=True) if kept]
                    if len(flags) == len(keep)
                    else None
                )
    cut = frame.assign(text=texts, tokens=tokens)
    if rationale is None:
        return cut
    if any(flags is None for flags in rationale):
        return cut.drop(columns="rationale")
    return cut.assign(rationale=rationale)


def check_retrainable(checkpoint: Checkpoint, frame: pd.DataFrame) -> None:
    """Raise :class:`InvalidInputError` unless ROAR can cut the texts of ``checkpoint``'s
    ``frame`` and retrain it: a single-text classifier (a classic model, or a transformer with
    a wordpiece tokenizer) that records how attnexplain trained it."""
    model, pipeline = checkpoint.model, checkpoint.pipeline
    if isinstance(pipeline, ImagePipeline):
        what = "an image model (ROAR on pixels is not here)"
    elif is_decoder(model):
        what = "a decoder LM"
    elif "text_pair" in frame or PAIR_COLUMN in frame:
        what = "a text-pair model (its question or hypothesis would need cutting rules of its own)"
    elif not (
        isinstance(model, ClassicModel)
        or (isinstance(model, HFClassifier) and isinstance(pipeline, WordpieceTokenizer))
    ):
        what = f"a {type(model).__name__}"
    else:
        what = None
    if what is not None:
        raise InvalidInputError(
            f"ROAR cuts single texts word by word and retrains the model on them, not "
            f"{what}: run it on a single-text classifier, a classic model (lstm, cnn or "
            f"average) or a fine-tuned transformer ({{pretrained: minilm}}, or a user's "
            f"{{hf: FOLDER, finetune: true}})"
        )
    if not checkpoint.metadata.get("request"):
        raise InvalidInputError(
            "ROAR retrains the model the way it was trained, and this checkpoint does not "
            "record how (a model imported as it is): train or fine-tune it with attnexplain "
            "first (in a plan, {hf: FOLDER, finetune: true})"
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
    """The model of ``checkpoint`` retrained (same architecture, pretrained encoder and
    recipe) on ``dataset`` with every split cut by :func:`remove_top`, saved in ``folder`` (a
    retraining resumes there); returns its checkpoint and the cut dataset."""
    check_retrainable(checkpoint, dataset.train)
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
    """Retrain without the top ``percent``% words by ``method`` and predict ``frame`` cut
    the same way: one row per instance."""
    method, percent = params["method"], params["percent"]
    scorer = (
        random_scorer(checkpoint, params["seed"])
        if method == RANDOM
        else method_scorer(checkpoint, method)
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
    """Accuracy of the retrained model against the share of words removed, per method."""
    summary = summarise_roar(df)
    fig, ax = plt.subplots(figsize=(5, 4))
    for method, group in summary.groupby("method"):
        ax.plot(group["percent"], group["accuracy"], marker="o", label=method)
        ax.fill_between(group["percent"], group["accuracy_low"], group["accuracy_high"], alpha=0.2)
    ax.set(xlabel="top words removed (%)", ylabel="accuracy after retraining", title="ROAR")
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
    check_retrainable(checkpoint, frame)
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
        "description": "ROAR: accuracy of the model retrained without one method's top-k% words",
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
        "description": "ROAR: accuracy after retraining without each method's top-k% words, "
        "against random removal",
        "needs": curve_needs,
        "validate": validate_curve,
    },
]
