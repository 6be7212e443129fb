"""Reports under hostile text and interrupted writes: long tokens lay out in seconds,
right-to-left marks stay inside their token, CJK and emoji have a font, wide tables fit the
page, a killed report leaves neither temporary files nor a new HTML beside an old PDF, and
reports name their run directory without the writing machine's absolute path."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from attnexplain.report import build
from attnexplain.report.heatmaps import HeatmapRow, TokenHeatmap
from attnexplain.report.html import render_heatmaps
from attnexplain.report.pdf import write_pdf
from attnexplain.report.tables import to_table
from tests.test_report import needs_weasyprint
from tests.test_resume_integrity import reference  # noqa: F401 (a fixture)

RLO = "\u202e"
# the module (``attnexplain.report.build`` is also the package's function of that name)
report_build = importlib.import_module("attnexplain.report.build")


def _page(words: list[str]) -> str:
    row = HeatmapRow("attention", [0.1 * (i + 1) for i in range(len(words))], 1.0)
    return render_heatmaps([TokenHeatmap("t", words, [row], "", " ".join(words))], "T", "")


@needs_weasyprint
def test_a_5000_character_token_lays_out_in_seconds(tmp_path):
    long = "x" * 5000
    page = _page(["before", long, "after"])
    assert long not in page.split("Text:")[0]  # the heatmap shows it shortened
    assert "xxxxxxxxxx…xxxxxxxx" in page and "5000 characters" in page
    started = time.perf_counter()
    write_pdf(page, tmp_path / "long.pdf")
    assert time.perf_counter() - started < 20  # 2,000 characters took 45 s before


def test_every_token_is_isolated_from_the_bidirectional_text_around_it():
    page = _page(["first", f"{RLO}gnp.exe", "second", "third"])
    tokens = re.findall(r"<bdi [^>]*>([^<]*)</bdi>", page)
    assert tokens == ["first", f"{RLO}gnp.exe", "second", "third"]
    assert re.search(r"\.tokens bdi \{ unicode-bidi: isolate;", page)
    assert re.search(r"<bdi>first " + RLO + "gnp.exe second third</bdi>", page)


@pytest.mark.parametrize(("what", "character"), [("CJK", "中"), ("emoji", "😀")])
def test_a_font_covers_cjk_and_emoji(what, character):
    if shutil.which("fc-list") is None:
        pytest.fail("fontconfig (fc-list) is missing; .ci/run installs it with Pango")
    found = subprocess.run(
        ["fc-list", f":charset={ord(character):x}", "family"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert found.strip(), (
        f"no font covers {what}: apt-get install fonts-noto-cjk fonts-noto-color-emoji"
    )


@needs_weasyprint
def test_a_table_wider_than_the_page_wraps_inside_it():
    import pandas as pd
    import weasyprint

    frame = pd.DataFrame(
        [{f"column {i}": f"a-long-unbroken-value-{i}-" * 3 for i in range(12)}] * 3
    )
    page = render_heatmaps([], "T", "").replace("</main>", f"{_table_html(to_table(frame))}</main>")
    document = weasyprint.HTML(string=page).render()
    content_right = None
    for page_box in (page._page_box for page in document.pages):
        content_right = page_box.content_box_x() + page_box.width
        for box in page_box.descendants():
            if type(box).__name__ == "TableBox":
                assert box.position_x + box.margin_width() <= content_right + 1
    assert content_right is not None


def _table_html(table) -> str:
    from attnexplain.report.html import ENVIRONMENT

    macro = ENVIRONMENT.get_template("macros.html").module.table
    return str(macro(table))


def test_a_killed_report_leaves_the_old_pair_and_its_temporaries_are_swept(
    reference,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    directory = tmp_path / "run"
    shutil.copytree(reference.directory, directory)
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.html").write_text("old html")
    (out / "report.pdf").write_bytes(b"old pdf")
    stale = out / ".report.pdf.k1ll3d.tmp"
    stale.write_bytes(b"")

    def killed(html, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_build, "write_pdf", killed)
    with pytest.raises(KeyboardInterrupt):
        build(directory, out)
    assert (out / "report.html").read_text() == "old html"  # not a new one beside the old PDF
    assert sorted(path.name for path in out.iterdir()) == ["report.html", "report.pdf"]

    monkeypatch.setattr(
        report_build, "write_pdf", lambda html, path: Path(path).write_bytes(b"%PDF")
    )
    stale.write_bytes(b"")
    build(directory, out)
    assert sorted(path.name for path in out.iterdir()) == ["report.html", "report.pdf"]
    assert (out / "report.html").read_text() != "old html"


def test_the_report_names_its_run_directory_relative_to_the_repository(
    reference,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    repository = tmp_path / "repo"
    directory = repository / "runs" / "tiny"
    shutil.copytree(reference.directory, directory)
    monkeypatch.chdir(repository)
    html = build(directory.resolve(), formats="html")["html"].read_text(encoding="utf-8")
    assert f'<p class="meta">runs{os.sep}tiny · report generated' in html
    assert str(tmp_path) not in html
