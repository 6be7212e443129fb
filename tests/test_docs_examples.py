"""Every Python and bash block of README.md and docs/ runs as written (issue 26, item 1).

Each block is a test of its own and runs in a fresh interpreter (``python -c`` / ``bash -c``
with ``-euo pipefail``), the way a reader pastes it. The blocks of one page run in order in one
folder of their own, laid out like a clone (``experiments/``, ``reports/``, ``benchmarks/``,
``tests/`` and ``.venv`` linked in), so a block may use the files an earlier block of its page
wrote, and nothing a run writes lands in the checkout. A block is left out only with a comment
on the line before its fence that says why, which the page shows beside the block:

- ``_Not run by CI: REASON._``: it cannot run here (set-up that CI does itself, a GPU, hours);
- ``_Runs under pytest -m slow: REASON._``: it runs with the long measurements, under
  ``pytest -m slow``.

The pytest plugins for Markdown blocks (pytest-markdown-docs, phmdoctest, pytest-codeblocks)
run Python blocks inside the pytest process, sharing its imports, and none runs bash; hence
this collector of ours, built on markdown-it-py (already installed through rich).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

pytestmark = pytest.mark.docs  # run with -m docs (.ci/run does)

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# how a block of each language runs, in a fresh process
COMMANDS = {"python": [sys.executable, "-c"], "bash": ["bash", "-euo", "pipefail", "-c"]}
# what a page's folder links to in the checkout, as a clone has them
LINKED = ("experiments", "reports", "benchmarks", "tests", "pyproject.toml")
MARKER = re.compile(r"^_(Not run by CI|Runs under pytest -m slow): (.+)\._$")
BLOCK_TIMEOUT_S = 600


@dataclass(frozen=True)
class Block:
    """A fenced block of a page: its ``language``, ``code``, first ``line`` (1-based) and
    the marker before it (its kind and reason), if any."""

    page: Path
    line: int
    language: str
    code: str
    marker: tuple[str, str] | None

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def page_blocks(page: Path) -> list[Block]:
    """The Python and bash blocks of ``page`` in order, each with the marker on the line
    before its fence."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    for token in MarkdownIt("commonmark").parse("\n".join(lines)):
        language = token.info.split()[0] if token.info else ""
        if token.type != "fence" or language not in COMMANDS:
            continue
        start = token.map[0]
        before = lines[start - 1] if start > 0 else ""
        marker = MARKER.search(before)
        blocks.append(
            Block(page, start + 1, language, token.content, marker.groups() if marker else None)
        )
    return blocks


BLOCKS = [block for page in PAGES for block in page_blocks(page)]


@pytest.fixture(scope="session")
def page_folders() -> dict[Path, Path]:
    """A folder per page, made when its first block runs."""
    return {}


def folder_of(page: Path, folders: dict[Path, Path], factory) -> Path:
    """The folder ``page``'s blocks run in: new, with the clone's plans, reference reports,
    benchmarks and this interpreter's environment as ``.venv`` linked in."""
    if page not in folders:
        folder = factory.mktemp(page.stem)
        for name in LINKED:
            (folder / name).symlink_to(ROOT / name)
        (folder / ".venv").symlink_to(Path(sys.prefix))
        folders[page] = folder
    return folders[page]


def block_param(block: Block):
    if block.marker is None:
        return pytest.param(block, id=block.name)
    kind, reason = block.marker
    mark = pytest.mark.skip(reason=reason) if kind == "Not run by CI" else pytest.mark.slow
    return pytest.param(block, id=block.name, marks=mark)


@pytest.mark.parametrize("block", [block_param(block) for block in BLOCKS])
def test_block_runs_as_written(block, page_folders, tmp_path_factory):
    folder = folder_of(block.page, page_folders, tmp_path_factory)
    # the checkout's package, wherever the interpreter was installed from
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [*COMMANDS[block.language], block.code],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
    )
    assert done.returncode == 0, (
        f"{block.name} ({block.language}) exited {done.returncode}\n"
        f"--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}"
    )


def test_every_page_is_read_and_markers_give_a_reason():
    assert ROOT / "README.md" in PAGES and any(block.page.name == "README.md" for block in BLOCKS)
    for block in BLOCKS:
        assert block.marker is None or block.marker[1], block.name
