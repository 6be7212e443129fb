"""MkDocs hook: the Results page, generated at build time from the committed reference reports
(``reports/reference/``), never retyped: each ``*-claims.md`` table of judged claims, the rule
claims are judged by (from ``reports/README.md``), and per reference run its state (from its
``manifest.json``), its summary tables (``summaries/*.csv``) and its HTML report, copied into
the site beside the page."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "reports" / "reference"
PAGE = "results.md"
# what each claims table judges, by its file's stem
CLAIMS = {
    "main-claims": "The main job (`attnexplain reproduce`)",
    "qa-claims": "J&W's question answering: bAbI 1-3 (pair tasks)",
    "full-claims": "The full plans (`attnexplain reproduce --full`; earlier tolerances)",
}
RULE_HEADING = "## When a claim holds"


def section(markdown: str, heading: str) -> str:
    """The section of ``markdown`` under ``heading``, up to the next heading of its level."""
    lines = markdown.splitlines()
    start = lines.index(heading)
    level = heading.split(" ")[0] + " "
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(level)), len(lines))
    return "\n".join(lines[start + 1 : end]).strip()


def run_state(manifest: dict) -> str:
    """'N of M units finished (H h of unit time)' from a run's manifest."""
    units = manifest["units"]
    done = [unit for unit in units if unit.get("status") == "done"]
    hours = sum(unit.get("seconds") or 0 for unit in done) / 3600
    return f"{len(done)} of {len(units)} units finished ({hours:.1f} h of unit time)"


def summary_table(path: Path) -> str:
    """A summary CSV as a collapsed HTML table, numbers to 3 digits."""
    frame = pd.read_csv(path)
    table = frame.to_html(index=False, float_format=lambda x: f"{x:.3f}", border=0, na_rep="")
    return f"<details><summary><code>{path.name}</code></summary>\n\n{table}\n\n</details>"


def results_markdown() -> str:
    """The Results page."""
    parts = [
        "# Results of the reference reproduction",
        "This page is generated when the site is built (`docs/hooks/results.py`) from the "
        "committed reference reports in `reports/reference/`, as `attnexplain reproduce "
        "--export-to reports/reference` wrote them: edit those, not this page. How they were "
        "made: [Reproducing the papers](reproduce.md).",
    ]
    for stem, title in CLAIMS.items():
        parts += [f"## {title}", (REFERENCE / f"{stem}.md").read_text(encoding="utf-8").strip()]
    readme = (ROOT / "reports" / "README.md").read_text(encoding="utf-8")
    parts += [RULE_HEADING, section(readme, RULE_HEADING), "## The reference runs"]
    for run in sorted(path for path in REFERENCE.iterdir() if path.is_dir()):
        manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
        plan = Path(manifest["plan_file"]).name
        parts += [
            f"### {run.name}",
            f"Plan `experiments/{plan}`: {run_state(manifest)}, git revision "
            f"`{manifest['git']['revision'][:12]}`. "
            f"[The report](reference/{run.name}/report.html).",
            *(summary_table(path) for path in sorted((run / "summaries").glob("*.csv"))),
        ]
    return "\n\n".join(parts) + "\n"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated page and the reference runs' HTML reports to the site."""
    files.append(File.generated(config, PAGE, content=results_markdown()))
    for report in sorted(REFERENCE.glob("*/report.html")):
        uri = f"reference/{report.parent.name}/report.html"
        files.append(File.generated(config, uri, abs_src_path=str(report)))
    return files
