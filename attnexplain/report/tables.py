"""DataFrames made ready to show: every cell a short string, numbers right-aligned.

Experiments' tables may hold anything parquet can (list columns of adversaries, long-format
rows, NaN): a cell is shown, never interpreted, so a new experiment's summary needs nothing
here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

# columns that name where a row of a stacked summary comes from (RunResult.summary)
KEY_COLUMNS = ("dataset", "model", "seed")
# how many values of a list cell are shown before "…"
LIST_PREVIEW = 3


@dataclass(frozen=True)
class Table:
    """A table to render: ``columns`` [n], ``rows`` [m][n] of display strings, ``numeric``
    [n] (right-align the column), ``caption`` (what every row shares, or empty)."""

    columns: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    caption: str = ""


def format_cell(value: object, digits: int = 3) -> str:
    """One cell as text: floats to ``digits`` decimals (or 3 significant digits when smaller),
    NaN / None / NA as an en dash, booleans as yes / no, sequences shortened to their first
    :data:`LIST_PREVIEW` values and their length."""
    if value is None or value is pd.NA:
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "–"
        if value != 0 and abs(value) < 10**-digits:
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    if isinstance(value, np.ndarray | list | tuple):
        values = list(np.asarray(value, dtype=object).ravel())
        shown = ", ".join(format_cell(v, digits) for v in values[:LIST_PREVIEW])
        more = f", … ({len(values)} values)" if len(values) > LIST_PREVIEW else ""
        return f"[{shown}{more}]"
    return str(value)


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def to_table(frame: pd.DataFrame, shared: Sequence[str] = KEY_COLUMNS, digits: int = 3) -> Table:
    """``frame`` as a :class:`Table`. The ``shared`` columns that hold one value in every row
    (one dataset, model and seed) are moved into the caption instead of repeated per row; a
    column ``x`` with interval columns ``x_low`` and ``x_high`` beside it shows as one column,
    ``value [low, high]``."""
    constant = [
        name
        for name in shared
        if name in frame.columns and len(frame) and frame[name].nunique(dropna=False) == 1
    ]
    caption = " / ".join(
        f"seed {frame[name].iloc[0]}" if name == "seed" else str(frame[name].iloc[0])
        for name in constant
    )
    shown = frame.drop(columns=constant)
    bounded = interval_columns(shown)
    shown = shown.drop(columns=[f"{name}_{side}" for name in bounded for side in ("low", "high")])
    cells = {
        name: [
            format_interval(value, low, high, digits)
            for value, low, high in zip(
                shown[name], frame[f"{name}_low"], frame[f"{name}_high"], strict=True
            )
        ]
        if name in bounded
        else [format_cell(value, digits) for value in shown[name]]
        for name in shown.columns
    }
    rows = [list(row) for row in zip(*cells.values(), strict=True)] if len(shown) else []
    numeric = [_is_numeric(shown[name]) for name in shown.columns]
    return Table([str(name) for name in shown.columns], rows, numeric, caption)


def interval_columns(frame: pd.DataFrame) -> list[str]:
    """The columns ``x`` of ``frame`` that have ``x_low`` and ``x_high`` beside them."""
    return [
        name
        for name in frame.columns
        if f"{name}_low" in frame.columns and f"{name}_high" in frame.columns
    ]


def format_interval(value: object, low: object, high: object, digits: int = 3) -> str:
    """``value [low, high]`` (:func:`format_cell` each), or the value alone where the interval
    is missing."""
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return format_cell(value, digits)
    return f"{format_cell(value, digits)} [{format_cell(low, digits)}, {format_cell(high, digits)}]"
