"""Image maps: per image, explanations over its patches (a ViT) or feature-map cells (an
attention CNN) drawn on the image, the image models' counterpart of the token heatmaps.

The instances and the methods' scores come from the code the token heatmaps use
(:func:`~attnexplain.report.heatmaps.explain_instances`,
:func:`~attnexplain.report.heatmaps.fragile_cases`); this module turns scores over the grid
of content positions ([grid rows * grid columns], row-major) into maps on the image and draws
them: one row per image, the image first, then a panel per explanation with its map
upsampled onto the image (each cell's value on its block of pixels) over the image in grey.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from attnexplain.errors import InvalidInputError
from attnexplain.models.checkpoint import Checkpoint
from attnexplain.models.hf import HFClassifier
from attnexplain.report.figures import SCORE_COLOURMAP, report_style
from attnexplain.report.heatmaps import (
    HeatmapRow,
    explain_instances,
    fragile_cases,
    head_mean,
    own_row,
    shared_rows,
)

# the methods an image map shows, with their labels (leave-one-out blacks a block out)
IMAGE_METHODS = {
    "attention": "attention",
    "jw-gradient": "J&W gradient",
    "leave-one-out": "occlusion",
}
# how many of the most fragile images a model's fragile figure shows
FRAGILE_IMAGES = 3
# opacity of a map over its image: the digit stays visible beneath the colours
MAP_ALPHA = 0.6
PANEL_INCHES = 1.9
TITLE_WIDTH = 34  # characters per line of a row's title


@dataclass(frozen=True)
class ImageMap:
    """Explanations of one image: ``image`` [height, width] in grey (channels averaged),
    ``grid`` (rows, columns) of its content positions, ``rows`` a panel each (scores
    [rows * columns], row-major), a ``title`` and a ``caption`` (the prediction, the label or
    what the adversary did)."""

    title: str
    caption: str
    image: np.ndarray
    grid: tuple[int, int]
    rows: list[HeatmapRow]


def grey(image: np.ndarray) -> np.ndarray:
    """An image [channels, height, width] -> [height, width], channels averaged."""
    return np.asarray(image, dtype=np.float64).mean(0)


def upsample(cells: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A map over a grid [grid rows, grid columns] -> [height, width]: each cell's value on
    its block of (height / grid rows) x (width / grid columns) pixels."""
    cells = np.asarray(cells, dtype=np.float64)
    (rows, columns), (height, width) = cells.shape, shape
    if height % rows or width % columns:
        raise InvalidInputError(
            f"a {rows}x{columns} grid does not tile a {height}x{width} image in equal blocks: "
            f"pass a map over the model's own patches or cells"
        )
    return np.repeat(np.repeat(cells, height // rows, axis=0), width // columns, axis=1)


def support_to_cells(checkpoint: Checkpoint, weights: np.ndarray) -> np.ndarray:
    """Attention on a vision model's support ([*site, n]: the attention CNN's cells, a ViT's
    [CLS] and patches per head), heads averaged, on the content positions [cells]; a ViT's
    weight on [CLS] is on no patch and left out."""
    flat = head_mean(weights)
    if isinstance(checkpoint.model, HFClassifier):
        return flat[checkpoint.pipeline.lead :]
    return flat


def explain_image_maps(
    checkpoint: Checkpoint,
    images: Sequence[np.ndarray],
    methods: Sequence[str] = tuple(IMAGE_METHODS),
    titles: Sequence[str] | None = None,
    captions: Sequence[str] | None = None,
) -> list[ImageMap]:
    """One map per image [channels, height, width] of a vision checkpoint: a panel per method
    (:func:`attnexplain.explain.explain`; the model's attention is its [CLS] row, heads
    averaged, for a ViT), each scaled to its own largest |score|.

    ``titles`` / ``captions``: one per image (default: ``Image 1``... / none); the caption
    starts with the model's prediction.
    """
    images = list(images)
    titles = titles or [f"Image {i + 1}" for i in range(len(images))]
    return [
        ImageMap(
            title,
            explained.caption,
            grey(image),
            checkpoint.pipeline.grid,
            [own_row(IMAGE_METHODS.get(m, m), s) for m, s in explained.scores.items()],
        )
        for title, image, explained in zip(
            titles, images, explain_instances(checkpoint, images, methods, captions), strict=True
        )
    ]


def fragile_image_maps(
    checkpoint: Checkpoint,
    frame: pd.DataFrame,
    adversarial: pd.DataFrame,
    count: int = FRAGILE_IMAGES,
) -> list[ImageMap]:
    """The ``count`` images of a J&W adversarial table whose attention the adversary moved
    furthest (eps-max JSD) without changing the output, each with the model's attention and
    the adversarial attention on one colour scale.

    ``frame``: the split the table was computed on (its ``instance`` column indexes rows).
    """
    return [
        ImageMap(
            case.title,
            "; ".join(case.facts),
            grey(case.input),
            checkpoint.pipeline.grid,
            shared_rows(
                {
                    "model's attention": support_to_cells(checkpoint, case.attention),
                    "adversarial attention": support_to_cells(checkpoint, case.adversary),
                }
            ),
        )
        for case in fragile_cases(checkpoint, frame, adversarial, most=count, least=0)
    ]


def _overlay(ax: Axes, image: np.ndarray, cells: np.ndarray) -> None:
    """Draw ``image`` [height, width] in grey and ``cells`` [grid rows, grid columns] (scores
    over the row's scale, in [-1, 1]) upsampled over it in the report's score colours."""
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.imshow(
        upsample(cells, image.shape),
        cmap=SCORE_COLOURMAP,
        vmin=-1,
        vmax=1,
        alpha=MAP_ALPHA,
        interpolation="nearest",
    )


def _title(image_map: ImageMap) -> str:
    """The title and the caption's phrases, wrapped to the width of a panel."""
    phrases = [image_map.title, *image_map.caption.split("; ")]
    return "\n".join(textwrap.fill(phrase, TITLE_WIDTH) for phrase in phrases if phrase)


def image_maps_figure(maps: Sequence[ImageMap]) -> Figure:
    """A row per image: the image (titled with its caption), then a panel per explanation, its
    map over the image coloured relative to the row's ``scale`` (orange: attention weight or
    support for the predicted class; purple: against it)."""
    if not maps:
        raise InvalidInputError("pass at least one image map to draw")
    columns = 1 + max(len(image_map.rows) for image_map in maps)
    with report_style():
        fig, axes = plt.subplots(
            len(maps),
            columns,
            figsize=(PANEL_INCHES * columns + 0.8, (PANEL_INCHES + 1.0) * len(maps)),
            squeeze=False,
            layout="constrained",
        )
        for image_map, row_axes in zip(maps, axes, strict=True):
            first, *panels = row_axes
            first.imshow(image_map.image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            first.set_title(_title(image_map), loc="left", fontsize=7)
            for ax, row in zip(panels, image_map.rows, strict=False):
                _overlay(ax, image_map.image, row.relative().reshape(image_map.grid))
                ax.set_title(f"{row.label}\nlargest |score| {row.scale:.3g}", fontsize=8)
            for ax in row_axes:
                ax.set_axis_off()
        bar = fig.colorbar(
            plt.cm.ScalarMappable(plt.Normalize(-1, 1), SCORE_COLOURMAP),
            ax=axes.ravel().tolist(),
            fraction=0.03,
            pad=0.02,
        )
        bar.set_label("score / largest |score| of the panel (no unit)")
    return fig
