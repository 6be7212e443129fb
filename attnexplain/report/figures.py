"""Figures of a report: public functions that return matplotlib figures (a notebook can call
them), the colour-blind-safe palette they share, and figures embedded as PNG data URIs.

The palette is Okabe & Ito's (distinct under the common colour-vision deficiencies); token
scores use ColorBrewer's PuOr, a diverging map that is colour-blind safe: orange for scores
that support the predicted class (and for attention weight), purple for scores against it.
"""

from __future__ import annotations

import base64
import io
import math
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
from cycler import cycler
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from attnexplain.report.heatmaps import TokenHeatmap

OKABE_ITO = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#56B4E9",  # sky blue
    "#CC79A7",  # reddish purple
    "#F0E442",  # yellow
    "#000000",
)
# reversed so that positive scores are orange and negative ones purple
SCORE_COLOURMAP = "PuOr_r"
# PNG resolution: sharp on high-density screens and in print, a few hundred kB per figure
DPI = 150
CSS_DPI = 96


@contextmanager
def report_style() -> Iterator[None]:
    """Draw inside this to get the report's look: the Okabe-Ito colour cycle (which seaborn's
    ``hue`` follows too), no top / right spines, a readable font size."""
    with plt.rc_context(
        {
            "axes.prop_cycle": cycler(color=OKABE_ITO),
            "axes.spines.top": False,
            "axes.spines.right": False,
            "font.size": 10,
        }
    ):
        yield


def score_colours(score: float, scale: float) -> tuple[str, str]:
    """Background and text colour (hex) of a token with ``score``, where ``scale`` is the
    |score| that gets the strongest colour; NaN or a zero scale give the neutral middle. The
    text is white where the background is dark."""
    strength = score / scale if scale > 0 and math.isfinite(score) else 0.0
    red, green, blue, _ = mpl.colormaps[SCORE_COLOURMAP](
        0.5 + 0.5 * float(np.clip(strength, -1, 1))
    )
    luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    return mpl.colors.to_hex((red, green, blue)), "#000000" if luminance > 0.45 else "#ffffff"


def score_gradient(stops: int = 9) -> str:
    """The score colours from -1 to 1 as a CSS ``linear-gradient`` (the heatmaps' legend)."""
    colours = [score_colours(x, 1.0)[0] for x in np.linspace(-1, 1, stops)]
    return f"linear-gradient(to right, {', '.join(colours)})"


def token_heatmap(heatmap: TokenHeatmap) -> Figure:
    """A heatmap of one text: a row per method (or attention), a column per word, each row
    coloured relative to its own largest |score| (the row's ``scale``).

    Returns a figure about 0.3 inch wide per word; for long texts the HTML report's flowing
    heatmap reads better.
    """
    words = heatmap.words
    values = np.array([row.relative() for row in heatmap.rows])
    with report_style():
        fig, ax = plt.subplots(
            figsize=(max(4.0, 0.3 * len(words) + 2.5), 0.45 * len(heatmap.rows) + 2.2)
        )
        image = ax.imshow(values, cmap=SCORE_COLOURMAP, vmin=-1, vmax=1, aspect="auto")
        ax.set_xticks(range(len(words)), words, rotation=90)
        ax.set_yticks(range(len(heatmap.rows)), [row.label for row in heatmap.rows])
        ax.set_xlabel("word of the text")
        ax.tick_params(length=0)
        ax.spines[:].set_visible(False)
        if heatmap.title:
            ax.set_title(heatmap.title, loc="left")
        bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
        bar.set_label("score / largest |score| of the row\n(no unit)")
        fig.tight_layout()
    return fig


@dataclass(frozen=True)
class EmbeddedFigure:
    """A figure as a PNG data URI, with the size it is meant to show at (CSS pixels)."""

    uri: str
    width: int
    height: int
    alt: str


def embed(fig: Figure, alt: str) -> EmbeddedFigure:
    """Render ``fig`` to PNG at :data:`DPI` and close it; ``alt`` describes it for readers who
    cannot see it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    png = buffer.getvalue()
    # the IHDR chunk, right after the 8-byte signature, starts with width and height
    width, height = struct.unpack(">II", png[16:24])
    return EmbeddedFigure(
        "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
        round(width * CSS_DPI / DPI),
        round(height * CSS_DPI / DPI),
        alt,
    )
