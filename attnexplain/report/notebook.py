"""What the result objects show in a notebook: the report's token heatmaps and tables
(:mod:`.heatmaps`, :mod:`.tables`, rendered by the report's own macros) as an HTML fragment
for ``_repr_html_``, and ``show`` for a notebook and a terminal alike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import pandas as pd

from attnexplain.report.heatmaps import TokenHeatmap
from attnexplain.report.html import ENVIRONMENT
from attnexplain.report.tables import to_table

# rows of a table, and heatmaps, shown in a notebook cell before "... more"
SHOWN_ROWS = 20


class Displayable(Protocol):
    """A result that draws itself as HTML for notebooks and as text for terminals."""

    def _repr_html_(self) -> str: ...


def render_fragment(
    title: str = "",
    heatmaps: Sequence[TokenHeatmap] = (),
    tables: Sequence[tuple[str, pd.DataFrame]] = (),
    note: str = "",
) -> str:
    """An HTML fragment of ``heatmaps`` and ``tables`` (caption, frame), each cut to
    :data:`SHOWN_ROWS` rows; ``note`` closes it (what was cut, how to see everything)."""
    shown = [
        replace(to_table(frame.head(SHOWN_ROWS), shared=()), caption=caption)
        for caption, frame in tables
    ]
    cut = len(heatmaps) > SHOWN_ROWS or any(len(frame) > SHOWN_ROWS for _, frame in tables)
    more = f"first {SHOWN_ROWS} shown; .to_frame() has every row" if cut else ""
    return ENVIRONMENT.get_template("notebook.html").render(
        title=title,
        heatmaps=list(heatmaps)[:SHOWN_ROWS],
        tables=shown,
        note="; ".join(part for part in (note, more) if part),
    )


def show(result: Displayable) -> None:
    """Display ``result``'s HTML in a notebook (IPython), print its ``repr`` elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(HTML(result._repr_html_()))
    else:
        print(repr(result))
