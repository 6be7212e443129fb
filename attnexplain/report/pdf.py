"""PDF from the report's HTML through WeasyPrint: the print stylesheet gives A4 pages, page
numbers and a table of contents with the page of each section; headings become bookmarks."""

from __future__ import annotations

import os
from pathlib import Path

from attnexplain.errors import AttnExplainError

DEBIAN_LIBRARIES = "libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0"


def write_pdf(html: str, path: str | os.PathLike) -> Path:
    """Lay out ``html`` (a page of :mod:`attnexplain.report.html`) as a PDF at ``path``.

    Raises :class:`AttnExplainError` naming the system libraries to install when WeasyPrint
    cannot load Pango.
    """
    try:
        import weasyprint
    except OSError as exc:  # WeasyPrint is installed, the C libraries it loads are not
        raise AttnExplainError(
            f"PDF reports need Pango, which WeasyPrint could not load ({exc}): install it "
            f"(Debian / Ubuntu: apt-get install {DEBIAN_LIBRARIES}) or ask for --format html"
        ) from None
    path = Path(path)
    # base_url None: the page references nothing outside itself; presentational hints: the
    # images' width / height attributes give their size in print as on screen
    weasyprint.HTML(string=html, base_url=None).write_pdf(path, presentational_hints=True)
    return path
