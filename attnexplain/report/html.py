"""HTML pages from Jinja2 templates with autoescaping: every string that comes from a dataset, a
plan or a user is escaped by the template engine, never concatenated into markup.

The pages are one file each: figures are PNG data URIs, the stylesheet is inline, and a
Content-Security-Policy forbids scripts and every request to a network address.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from attnexplain.report.context import ReportContext
from attnexplain.report.figures import score_colours, score_gradient
from attnexplain.report.heatmaps import TokenHeatmap

# A token longer than this is shown shortened (its first and last characters): one unbroken
# 1,000-character word made the PDF's line layout take seconds, 5,000 minutes.
SHOWN_TOKEN = 40


def shown_token(token: str) -> str:
    """``token`` as a heatmap shows it: whole up to :data:`SHOWN_TOKEN` characters, else its
    start and end around an ellipsis (the data keep it whole)."""
    if len(token) <= SHOWN_TOKEN:
        return token
    return f"{token[: SHOWN_TOKEN - 12]}…{token[-8:]}"


ENVIRONMENT = Environment(
    loader=PackageLoader("attnexplain.report", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENVIRONMENT.filters["shown_token"] = shown_token
ENVIRONMENT.globals |= {
    "score_colours": score_colours,
    "shown_limit": SHOWN_TOKEN,
    "gradient": score_gradient(),
    "generator": f"attnexplain {metadata.version('attnexplain')}",
    # the package's own stylesheet, inlined as it is (it holds no user text)
    "css": Markup(ENVIRONMENT.loader.get_source(ENVIRONMENT, "report.css")[0]),
}


def render_report(context: ReportContext) -> str:
    """The report of a run as one self-contained HTML page."""
    return ENVIRONMENT.get_template("report.html").render(c=context, title=context.title)


def render_heatmaps(heatmaps: Sequence[TokenHeatmap], title: str, source: str) -> str:
    """Token heatmaps alone as one self-contained HTML page (``attnexplain explain --html``);
    ``source`` says where the model came from."""
    return ENVIRONMENT.get_template("explain.html").render(
        heatmaps=heatmaps, title=title, source=source
    )
