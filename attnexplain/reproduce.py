"""``attnexplain reproduce``: the papers' experiments on real data, then their report.

The main job (:data:`MAIN_PLAN`) runs both papers on rt-sentences and an IMDB subset in a few
minutes; ``full=True`` runs the papers' full plans (:data:`FULL_PLANS`), each into its own run
directory, copying units another of them has finished (equal keys are equal work) and resuming
where an earlier call stopped. Plans are read from the ``experiments/`` folder of the source
checkout.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from attnexplain.errors import AttnExplainError
from attnexplain.experiments.claims import PER_INSTANCE, claims_markdown, judge
from attnexplain.report.build import DEFAULT_INSTANCES, FORMATS, REPORT_FOLDER, build
from attnexplain.runner.executors import Executor
from attnexplain.runner.manifest import read_manifest
from attnexplain.runner.plan import Plan, load_plan, parse_plan
from attnexplain.runner.run import DEFAULT_RUNS, RunResult, run_plan
from attnexplain.runner.store import MANIFEST_FILE
from attnexplain.runner.units import expand

MAIN_PLAN = "reproduce.yaml"
# the cheapest first: the transformer plan is shortest, the J&W plan longest; the league (and
# Serrano & Smith) reuses the transformer plan's MiniLM
FULL_PLANS = (
    "wiegreffe_pinter_transformers.yaml",
    "league.yaml",
    "wiegreffe_pinter.yaml",
    "jain_wallace.yaml",
    "jain_wallace_qa.yaml",
    "jain_wallace_qa_transformers.yaml",
)
# the committed reference reproduction, relative to the checkout
REFERENCE = Path("reports") / "reference"


def plans_folder() -> Path:
    """The ``experiments/`` folder beside the package (a source checkout)."""
    folder = Path(__file__).resolve().parents[1] / "experiments"
    if not (folder / MAIN_PLAN).is_file():
        raise AttnExplainError(
            f"reproduce reads its plans from the source checkout's experiments/ folder, which "
            f"is not at {folder}; clone the repository and install it with pip install -e ."
        )
    return folder


@dataclass(frozen=True)
class Job:
    """One plan of a reproduction and the run directory it goes into."""

    plan: Path
    out: Path

    @property
    def reference(self) -> Path | None:
        """The ``manifest.json`` of this plan's committed reference run (its unit timings
        estimate a dry run), None where none is committed."""
        manifest = self.plan.parent.parent / REFERENCE / self.out.name / "manifest.json"
        return manifest if manifest.is_file() else None


def jobs(full: bool = False, out: str | os.PathLike | None = None) -> list[Job]:
    """The plans :func:`reproduce` runs and their run directories (``out``/<plan name>;
    default ``runs/<plan name>``, where ``attnexplain run PLAN`` puts them too)."""
    folder, root = plans_folder(), Path(out) if out is not None else DEFAULT_RUNS
    names = FULL_PLANS if full else (MAIN_PLAN,)
    return [Job(folder / name, root / Path(name).stem) for name in names]


def reproduce(
    full: bool = False,
    out: str | os.PathLike | None = None,
    executor: Executor | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    device: str = "auto",
    precision: str = "fp32",
) -> list[RunResult]:
    """Run the main job (or, ``full``, the papers' full plans) and return their results.

    Finished units are kept: after an interruption the same call resumes. With ``full``, each
    plan also takes the finished units of the other plans' run directories. ``device`` and
    ``precision`` as for :func:`~attnexplain.runner.run_plan`."""
    planned = jobs(full, out)
    results = []
    for job in planned:
        others: Sequence[Path] = [other.out for other in planned if other is not job]
        results.append(
            run_plan(
                job.plan,
                job.out,
                cache_dir=cache_dir,
                progress=progress,
                executor=executor,
                reuse=[other for other in others if other.is_dir()],
                device=device,
                precision=precision,
            )
        )
    return results


def finished_results(full: bool = False, out: str | os.PathLike | None = None) -> list[RunResult]:
    """What :func:`reproduce` has produced so far, running nothing: each plan over its run
    directory (the plans whose directory does not exist yet are left out)."""
    results = []
    for job in jobs(full, out):
        if (job.out / MANIFEST_FILE).is_file():
            plan = load_plan(job.plan)
            results.append(RunResult(job.out, plan, expand(plan)))
    if not results:
        raise AttnExplainError(
            f"nothing reproduced yet under {jobs(full, out)[0].out.parent}: run "
            "`attnexplain reproduce` first"
        )
    return results


def write_reports(
    results: Sequence[RunResult], cache_dir: str | os.PathLike | None = None
) -> list[Path]:
    """The HTML and PDF report of every run, each as its whole plan sees the directory."""
    written = []
    for result in results:
        files = build(result.directory, None, FORMATS, DEFAULT_INSTANCES, cache_dir, result.plan)
        written += files.values()
    return written


def export_run(result: RunResult, folder: str | os.PathLike) -> Path:
    """Copy one run's ``report.html``, ``report.pdf``, ``manifest.json`` and
    ``summaries/<n>-<experiment>.csv`` into ``folder/<plan name>``, and the per-instance
    tables the claims test orderings on as ``instances/<n>-<experiment>.parquet`` (they cannot
    be rebuilt from the summaries); returns that folder."""
    target = Path(folder) / result.plan.name
    (target / "summaries").mkdir(parents=True, exist_ok=True)
    for file in ("report.html", "report.pdf"):
        shutil.copyfile(result.directory / REPORT_FOLDER / file, target / file)
    shutil.copyfile(result.directory / MANIFEST_FILE, target / MANIFEST_FILE)
    for index, entry in enumerate(result.plan.experiments):
        summary = result.summary(index)
        summary.to_csv(target / "summaries" / f"{index}-{entry.name}.csv", index=False)
        if entry.name in PER_INSTANCE:  # what the claims' paired tests read
            (target / "instances").mkdir(exist_ok=True)
            path = target / "instances" / f"{index}-{entry.name}.parquet"
            result.results(index).to_parquet(path, compression="zstd")
    return target


def export(results: Sequence[RunResult], folder: str | os.PathLike, name: str) -> Path:
    """Copy what a reader of a reproduction needs, and no checkpoint, into ``folder``: per run
    what :func:`export_run` copies; and ``<name>-claims.csv`` /
    ``<name>-claims.md``, the papers' claims judged on all the runs. Returns the Markdown's
    path. This is how ``reports/reference`` is made."""
    for result in results:
        export_run(result, folder)
    return write_claims(judge(results), folder, name)


def write_claims(claims: pd.DataFrame, folder: str | os.PathLike, name: str) -> Path:
    """Judged ``claims`` (:func:`~attnexplain.experiments.claims.judge`) as
    ``folder/<name>-claims.csv`` and ``.md``; returns the Markdown's path."""
    folder = Path(folder)
    claims.to_csv(folder / f"{name}-claims.csv", index=False)
    (folder / f"{name}-claims.md").write_text(claims_markdown(claims))
    return folder / f"{name}-claims.md"


@dataclass(frozen=True)
class ExportedRun:
    """A run as :func:`export_run` left it (its plan, summaries and per-instance tables),
    read like a :class:`RunResult` by the claims, so that they can be judged again on a
    committed reference without running it: ``plan``, ``summary(entry)`` and
    ``results(entry)`` (empty where the export kept no per-instance table)."""

    directory: Path
    plan: Plan

    @classmethod
    def load(cls, directory: str | os.PathLike) -> ExportedRun:
        """Read ``directory``; :class:`AttnExplainError` where it holds no exported run."""
        directory = Path(directory)
        manifest = directory / MANIFEST_FILE
        if not manifest.is_file():
            raise AttnExplainError(
                f"{directory} holds no exported run ({MANIFEST_FILE} is missing): pass a "
                "folder that export wrote, e.g. reports/reference/reproduce"
            )
        return cls(directory, parse_plan(read_manifest(manifest)["plan"], str(manifest)))

    def summary(self, entry: int = 0) -> pd.DataFrame:
        return self._read("summaries", entry, "csv", pd.read_csv)

    def results(self, entry: int = 0) -> pd.DataFrame:
        return self._read("instances", entry, "parquet", pd.read_parquet)

    def _read(self, kind: str, entry: int, suffix: str, reader) -> pd.DataFrame:
        path = self.directory / kind / f"{entry}-{self.plan.experiments[entry].name}.{suffix}"
        return reader(path) if path.is_file() else pd.DataFrame()
