"""Explain raw texts: token scores of several methods as one tidy table, and that table shown
in a terminal with every score coloured by its sign and size."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import pandas as pd
from tqdm.auto import tqdm

from attnexplain.attribution import attribute, get_method
from attnexplain.attribution.adapter import check_model
from attnexplain.attribution.result import FRAME_COLUMNS
from attnexplain.data.batching import collate
from attnexplain.data.image_tokens import ImagePipeline
from attnexplain.data.text import UNK_ID, TextPipeline
from attnexplain.errors import InvalidInputError
from attnexplain.models.checkpoint import Checkpoint
from attnexplain.models.classic import ClassicModel
from attnexplain.models.hf import HFClassifier, WordpieceTokenizer
from attnexplain.models.inputs import as_texts, encode_texts, reader
from attnexplain.predict import PREDICTION_COLUMNS, prediction_frame

if TYPE_CHECKING:
    from rich.table import Table

    from attnexplain.report.heatmaps import TokenHeatmap

DEFAULT_METHODS = ("attention", "jw-gradient", "leave-one-out", "integrated-gradients")


class Explanation(pd.DataFrame):
    """What :func:`explain` returns: its tidy table, a :class:`pandas.DataFrame` in every
    respect, that in a notebook shows itself as the report's token heatmaps (one per text, a
    row per method; ``_repr_html_``, or ``.show()``). Anything derived from it (a filter, a
    pivot, a merge) is a plain DataFrame, as is ``.to_frame()``."""

    @property
    def _constructor(self) -> type[pd.DataFrame]:
        # Derived frames may lack the columns the heatmaps read: they are plain DataFrames.
        return pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """The table as a plain DataFrame [text x content token x method rows]."""
        return pd.DataFrame(self)

    def heatmaps(self) -> list[TokenHeatmap]:
        """A heatmap per text: its content tokens [tokens], a row per method scaled to its own
        largest |score|, the caption the prediction: what the report draws
        (:mod:`attnexplain.report.heatmaps`)."""
        from attnexplain.report.heatmaps import METHOD_LABELS, TokenHeatmap, own_row

        heatmaps = []
        for instance, rows in self.groupby("instance", sort=True):
            methods = list(dict.fromkeys(rows["method"]))
            wide = rows.pivot(index=["position", "token"], columns="method", values="score")
            first = rows.iloc[0]
            heatmaps.append(
                TokenHeatmap(
                    f"Text {instance + 1}",
                    list(wide.index.get_level_values("token")),
                    [own_row(METHOD_LABELS.get(m, m), wide[m].to_numpy()) for m in methods],
                    f"predicted {first['predicted_class']} (p = {first['probability']:.3f})",
                )
            )
        return heatmaps

    def _repr_html_(self) -> str:
        """The texts as the report's token heatmaps (Jupyter calls this to show the result)."""
        from attnexplain.report.notebook import render_fragment

        methods = ", ".join(dict.fromkeys(self["method"]))
        texts = self["instance"].nunique()
        return render_fragment(f"{methods}: {texts} texts", self.heatmaps())

    def show(self) -> None:
        """Display the heatmaps in a notebook; print the table in a terminal."""
        from attnexplain.report.notebook import show

        show(self)


def explain(
    model: Checkpoint | ClassicModel | HFClassifier,
    texts: str | Sequence[str],
    methods: Sequence[str] = DEFAULT_METHODS,
    pipeline: TextPipeline | WordpieceTokenizer | None = None,
    batch_size: int = 16,
    progress: bool = False,
    questions: str | Sequence[str] | None = None,
) -> Explanation:
    """Token scores of ``methods`` for ``texts``.

    Parameters
    ----------
    model : a loaded :class:`Checkpoint` (its pipeline and class names are used), or a
        ClassicModel / HFClassifier together with ``pipeline``. A path is refused with the
        fix: ``load_checkpoint(path)``.
    texts : one text or a sequence of texts.
    methods : names from :func:`attnexplain.attribution.list_methods` (or one name), run with
        their default options (gradient and Captum methods explain the predicted class).
    pipeline : the model's TextPipeline or WordpieceTokenizer (not needed for a Checkpoint).
    batch_size : texts per forward pass.
    progress : show a progress bar on stderr, a step per method and batch (for long texts,
        where leave-one-out's time grows with the square of the length).
    questions : for a model of text pairs, the second text of each (question, hypothesis),
        one per text; the scores are the passage's (``texts``') tokens'. Required by a
        pair model (J&W's QA / NLI model, a cross-encoder read over its passage).

    Returns
    -------
    :class:`Explanation` (a DataFrame that shows itself as heatmaps in a notebook) with one
    row per (text, content token, method): ``instance`` (index into
    ``texts``), ``position`` (0-based among the text's content tokens), ``token``, ``method``,
    ``score``, and the model's prediction for the text (:func:`attnexplain.predict`):
    ``predicted_class`` and its ``probability``.

    Example
    -------
    >>> import attnexplain as ax
    >>> trained = ax.train(ax.load_dataset("synthetic"), "runs/synthetic", progress=False)
    >>> frame = ax.explain(ax.load_checkpoint(trained.checkpoint), ["a fine film"])
    >>> frame.pivot(index=["instance", "position", "token"], columns="method", values="score")
    """
    read = reader(model, pipeline)
    model = read.model
    check_model(model)
    pipeline = read.needs_pipeline("explain")
    texts = as_texts(texts, images=isinstance(pipeline, ImagePipeline))
    methods = [methods] if isinstance(methods, str) else list(methods)
    if not methods:
        raise InvalidInputError("pass at least one method, e.g. methods=['attention']")
    methods = [get_method(name).name for name in methods]  # unknown names fail before any work
    sequences = encode_texts(model, pipeline, texts, questions)
    shown = [_shown_tokens(pipeline, text, ids) for text, ids in zip(texts, sequences, strict=True)]
    starts = range(0, len(sequences), batch_size)
    frames = []
    with tqdm(
        total=len(starts) * len(methods),
        desc="explain",
        file=sys.stderr,
        disable=not progress,
        leave=False,
    ) as bar:
        for start in starts:
            batch = collate(sequences[start : start + batch_size], framing=pipeline.framing)
            tokens = shown[start : start + batch_size]
            for name in methods:
                bar.set_description(name)
                scored = replace(attribute(model, batch, name), tokens=tokens)
                frames.append(scored.to_frame(first_instance=start))
                bar.update()
    # Per instance, methods in the order asked for, tokens in text order.
    frame = pd.concat(frames, ignore_index=True)
    predicted = prediction_frame(read, texts, sequences, batch_size)
    frame = frame.merge(predicted[["instance", *PREDICTION_COLUMNS]], on="instance", how="left")
    return Explanation(
        frame.sort_values("instance", kind="stable", ignore_index=True)[
            [*FRAME_COLUMNS, *PREDICTION_COLUMNS]
        ]
    )


def _shown_tokens(
    pipeline: TextPipeline | WordpieceTokenizer, text: str, ids: list[int]
) -> list[str]:
    """A string per id: the text's own words for the J&W pipeline (so a word outside the
    vocabulary shows as itself rather than <UNK>), the wordpieces for a transformer."""
    return pipeline.tokens(text) if isinstance(pipeline, TextPipeline) else pipeline.decode(ids)


def content_ids(pipeline: TextPipeline | WordpieceTokenizer, ids: Sequence[int]) -> list[int]:
    """The ids of ``ids`` between the special tokens the pipeline frames them with."""
    framing = pipeline.framing
    return list(ids[framing.lead : len(ids) - framing.trail])


def knows_no_token(pipeline: TextPipeline | WordpieceTokenizer, ids: Sequence[int]) -> bool:
    """Whether every content token of ``ids`` is outside the vocabulary (the unknown token's
    id), so that a model's output on them only reflects the unknown token's embedding."""
    unknown = UNK_ID if isinstance(pipeline, TextPipeline) else pipeline.tokenizer.unk_token_id
    return unknown is not None and all(i == unknown for i in content_ids(pipeline, ids))


def score_style(score: float, scale: float) -> str:
    """A rich background style: red for positive, blue for negative, stronger when larger
    (white for 0 and NaN)."""
    strength = min(abs(score) / scale, 1.0) if scale > 0 and math.isfinite(score) else 0.0
    fade = int(255 * (1 - 0.75 * strength))
    rgb = (255, fade, fade) if score >= 0 else (fade, fade, 255)
    return f"black on rgb({rgb[0]},{rgb[1]},{rgb[2]})"


def token_table(frame: pd.DataFrame, instance: int, title: str = "") -> Table:
    """A rich Table of one instance of an :func:`explain` frame: a row per token, a column per
    method; each cell coloured relative to the method's largest |score| on this instance."""
    # Imported here: only the terminal display needs rich.
    from rich.table import Table
    from rich.text import Text

    rows = frame[frame["instance"] == instance]
    wide = rows.pivot(index=["position", "token"], columns="method", values="score")
    methods = list(dict.fromkeys(rows["method"]))
    table = Table(title=Text(title) if title else None, title_justify="left")
    table.add_column("token")
    for method in methods:
        table.add_column(method, justify="right")
    scales = {m: float(wide[m].abs().max()) for m in methods}
    for (_, token), scores in wide.iterrows():
        cells = [
            Text(f"{scores[m]:+.3f}", style=score_style(scores[m], scales[m])) for m in methods
        ]
        table.add_row(Text(token), *cells)
    return table
