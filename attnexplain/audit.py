"""``attnexplain audit``: does MY model's attention explain its predictions?

An audit is an orchestration like :mod:`attnexplain.reproduce`: it writes a plan (the user's
classifier folder or hub id as the model, read at the chosen layers; the user's data file as
the dataset, every row evaluated) and hands it to the runner, so resuming after a crash,
devices, executors, the report and the verdict come from the shared machinery. It runs the
Jain & Wallace battery (attention against gradient and leave-one-out, permutation,
adversarial attention), Serrano & Smith's erasure tests and the league of attribution
methods, plus accuracy and F1 where the file has labels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from attnexplain.errors import InvalidInputError
from attnexplain.experiments.league import default_methods
from attnexplain.experiments.verdict import verdict
from attnexplain.measures import get_measure, list_measures
from attnexplain.runner.plan import Plan, parse_plan
from attnexplain.runner.run import DEFAULT_RUNS, RunResult, run_plan

# The league's methods in an audit unless ``methods`` says otherwise: raw attention, the
# attention-derived methods that cost a pass or two (rollout, norms, ALTI, AttnLRP), input x
# gradient, and leave-one-out, the model's own importance. Each method costs its scores plus
# ten erasure passes per instance for AOPC (comprehensiveness and sufficiency at ERASER's five
# bins), so the league dominates an audit; ``methods="all"`` scores every registered method
# (attention flow, integrated gradients and the perturbation surrogates take 10-60x longer).
AUDIT_METHODS = (
    "attention",
    "attention-rollout",
    "attention-norm",
    "alti",
    "attnlrp",
    "input-x-gradient",
    "leave-one-out",
)
# below the last layer, the methods that read the site's own layer (the rest aggregate every
# layer or read no attention, and would repeat the last layer's numbers)
LAYER_METHODS = ("attention", "attention-norm", "grad-attention", "value-zeroing")
# the battery, in the report's order; league.methods last (it is the longest)
BATTERY = (
    "predictions",
    "jain_wallace.correlation",
    "jain_wallace.permutation",
    "jain_wallace.adversarial",
    "serrano_smith.zero_top",
    "serrano_smith.flip_fraction",
)
DEFAULT_AUDIT_INSTANCES = 200
# The analyses that score every instance with J&W's gradient or leave-one-out read the same
# batches, so each batch's scores are computed once (:mod:`attnexplain.experiments.
# shared_scores`); 32 rows per batch is the league's fastest (1.05x over 16 on MiniLM).
SHARED_BATCHES = ("jain_wallace.correlation", "serrano_smith.flip_fraction", "league.methods")
AUDIT_BATCH_SIZE = 32


@dataclass
class AuditResult:
    """What an audit found. ``verdict``: one row per layer and question (agreement,
    fragility, best method) with the answer, its evidence and a 95% interval; ``tables``:
    each experiment's summary by name; ``run``: the run directory seen through its plan;
    ``report``: the written files by format. In a notebook it shows the verdict and the
    tables as the report does (``_repr_html_``, or ``.show()``); ``.to_frame()`` is the
    verdict."""

    run: RunResult
    verdict: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    report: dict[str, Path] = field(default_factory=dict)

    def __repr__(self) -> str:
        shown = self.verdict[["layer", "question", "answer"]].to_string(index=False)
        return f"AuditResult({self.run.directory})\n{shown}"

    def to_frame(self) -> pd.DataFrame:
        """The verdict: one row per layer and question."""
        return self.verdict

    def _repr_html_(self) -> str:
        """The verdict and each experiment's table as the report's tables."""
        from attnexplain.report.notebook import render_fragment

        tables = [("verdict", self.verdict), *self.tables.items()]
        files = ", ".join(str(path) for path in self.report.values())
        return render_fragment(
            f"Audit of {self.run.directory}",
            tables=tables,
            note=f"report: {files}" if files else "",
        )

    def show(self) -> None:
        """Display the verdict and tables in a notebook; print the ``repr`` in a terminal."""
        from attnexplain.report.notebook import show

        show(self)


def audit_plan(
    model: str,
    data: str | os.PathLike,
    text_column: str = "text",
    pair_column: str | None = None,
    label_column: str = "label",
    layer: int | str | None = None,
    instances: int | None = DEFAULT_AUDIT_INSTANCES,
    methods: str | list[str] | None = None,
    revision: str | None = None,
    params: dict[str, dict] | None = None,
    measures: str | list[str] | None = None,
    label_words: str | list[str] | None = None,
) -> Plan:
    """The plan of an audit (see :func:`audit` for the arguments): nothing runs."""
    given = params or {}
    unknown = sorted(set(given) - {*BATTERY, "league.methods"})
    if unknown:
        raise InvalidInputError(
            f"params for {', '.join(unknown)}: an audit runs {', '.join(BATTERY)} and "
            f"league.methods"
        )
    params = {
        name: ({"batch_size": AUDIT_BATCH_SIZE} if name in SHARED_BATCHES else {})
        | given.get(name, {})
        for name in (*BATTERY, "league.methods")
    }
    label_words = None if label_words is None else listed(label_words)
    classes, layers = _model_outline(model, revision, label_words)
    chosen = _layers(layer, layers)
    entry = (
        {"hf": str(model)}
        | ({"revision": revision} if revision else {})
        | ({"label_words": list(label_words)} if label_words else {})
    )
    models = [entry | ({} if at is None else {"site_layer": at}) for at in chosen]
    dataset = {
        "file": str(data),
        "text_column": text_column,
        "label_column": label_column,
        "classes": classes,
        "fractions": [0, 0, 1],
        **({"pair_column": pair_column} if pair_column else {}),
    }
    labels = [_label(model, at) for at in chosen]
    last = [labels[chosen.index(at)] for at in chosen if at in (None, layers - 1)]
    lower = [label for label in labels if label not in last]
    league = params.get("league.methods", {}) | _league_methods(methods) | _measures(measures)
    experiments = [{"name": name, "params": params.get(name, {})} for name in BATTERY]
    if last:
        experiments.append({"name": "league.methods", "models": last, "params": league})
    if lower:
        layer_methods = [
            name for name in league["methods"] or default_methods() if name in LAYER_METHODS
        ]
        experiments.append(
            {
                "name": "league.methods",
                "models": lower,
                "params": league | {"methods": layer_methods},
            }
        )
    name = "audit-" + "".join(c if c.isalnum() or c in "._-" else "-" for c in labels[0])
    return parse_plan(
        {
            "name": name.split("-layer")[0][:60],  # a run directory's name, kept short
            "datasets": [dataset],
            "models": models,
            "seeds": [0],
            "split": "test",
            "experiments": experiments,
            **({"max_instances": instances} if instances else {}),
        },
        f"audit of {model}",
    )


def audit(
    model: str | os.PathLike,
    data: str | os.PathLike,
    text_column: str = "text",
    pair_column: str | None = None,
    label_column: str = "label",
    layer: int | str | None = None,
    instances: int | None = DEFAULT_AUDIT_INSTANCES,
    methods: str | list[str] | None = None,
    out: str | os.PathLike | None = None,
    device: str = "auto",
    precision: str = "fp32",
    formats: str | list[str] = ("html", "pdf"),
    revision: str | None = None,
    params: dict[str, dict] | None = None,
    progress: bool = True,
    measures: str | list[str] | None = None,
    label_words: str | list[str] | None = None,
) -> AuditResult:
    """Audit the transformers sequence classifier ``model`` (or causal LM, read over
    ``label_words``) on the user's ``data``.

    Parameters
    ----------
    model : a folder in ``save_pretrained`` format (weights, config, tokenizer), or a hub id
        where this machine reaches a hub (``revision`` pins it).
    data : a ``.csv`` / ``.tsv`` / ``.jsonl`` file; ``text_column`` holds the texts,
        ``pair_column`` the second text of a pair (NLI, QA), ``label_column`` the labels
        (the model's label names or their indices).
    layer : the attention layer read (default: the last); an index (negative counts from
        the end) or ``"all"``.
    instances : the first N rows of the file (None: all).
    methods : the league's attribution methods: a list, ``"all"`` (every registered one;
        slow: attention flow, integrated gradients, LIME...) or None (:data:`AUDIT_METHODS`).
    out : the run directory (default ``runs/audit-<model folder>``); an interrupted audit
        run again into it resumes where it stopped.
    device, precision : where and how models compute (:mod:`attnexplain.device`).
    formats : the report's formats (``html``, ``pdf``).
    measures : the league's faithfulness measures (:mod:`attnexplain.measures`): a list,
        ``"all"`` (every one that reads the audited model: ERASER's, the soft ones, the
        model-randomisation checks, Captum's; the checks re-explain under every randomised
        layer and cost many times the default) or None (ERASER's AOPC pair). The verdict
        then says whether they rank the methods alike.
    label_words : for a causal LM, the word of each class, in class order (a list, or one
        comma-separated string): the LM is read
        as a classifier of its next token over them (a cloze: the texts are its prompts,
        read at their last token; a pair is read as passage then question), and the data's
        labels are these words or their indices. Each must be one token of its vocabulary.
    params : experiment parameters over their defaults, by experiment name, e.g.
        ``{"jain_wallace.adversarial": {"steps": 100}}`` (``league.methods`` takes
        ``methods`` from the argument above).

    Returns
    -------
    AuditResult

    Raises
    ------
    InvalidInputError
        A missing column, an empty file, labels the model does not know, pairs for a model of
        single texts or the reverse, an unavailable device; before any long work.
    HookError
        An architecture the hooks cannot reach; before any long work.

    Example
    -------
    >>> result = audit("my-bert/", "reviews.csv", text_column="review")  # doctest: +SKIP
    >>> result.verdict[["layer", "question", "answer"]]  # doctest: +SKIP
    """
    plan = audit_plan(
        str(model),
        data,
        text_column,
        pair_column,
        label_column,
        layer,
        instances,
        methods,
        revision,
        params,
        measures,
        label_words,
    )
    preflight(plan, device)
    run = run_plan(
        plan,
        out if out is not None else DEFAULT_RUNS / plan.name,
        progress=progress,
        device=device,
        precision=precision,
    )
    # imported here: the report needs matplotlib and WeasyPrint, which the CLI loads on use
    from attnexplain.device import computing_on, resolve_device, resolve_precision
    from attnexplain.report.build import DEFAULT_INSTANCES, build

    with computing_on(resolve_device(device), resolve_precision(precision)):
        files = build(run.directory, None, formats, DEFAULT_INSTANCES, None, plan)
    tables = {entry.title: run.summary(index) for index, entry in enumerate(plan.experiments)}
    return AuditResult(run, verdict(run), tables, files)


def preflight(plan: Plan, device: str = "auto") -> None:
    """Check, before any long work, what would otherwise fail inside a unit: the device, the
    data file (columns, rows, labels the model knows) and the model (an architecture the hooks
    reach, single texts or pairs as it reads them). Raises the error the unit would raise."""
    from attnexplain.device import resolve_device
    from attnexplain.models.imported import check_inputs, load_classifier

    resolve_device(device)
    dataset = plan.datasets[0].load()
    sources = {(entry.hf, entry.revision, tuple(entry.label_words or ())) for entry in plan.models}
    for source, revision, words in sources:
        check_inputs(load_classifier(source, None, revision, list(words) or None), dataset)


def _model_outline(
    model: str, revision: str | None, label_words: list[str] | None = None
) -> tuple[list[str], int]:
    """The model's classes (``id2label`` in index order, or a causal LM's ``label_words``)
    and its number of layers, from its config alone (no weights are read)."""
    from attnexplain.models.imported import model_config, reads_next_token

    config = model_config(model, revision)
    if reads_next_token(config, model, label_words):
        classes = list(label_words)
    else:
        classes = [str(config.id2label[i]) for i in range(config.num_labels)]
    layers = next(
        getattr(config, key)
        for key in ("num_hidden_layers", "n_layers", "n_layer")
        if isinstance(getattr(config, key, None), int)
    )
    return classes, layers


def _layers(layer: int | str | None, layers: int) -> list[int | None]:
    """The site layers an audit reads: None (the last, the model's default site), one index,
    or every layer for ``"all"``."""
    if layer is None or layer == "last":
        return [None]
    if layer == "all":
        return [*range(layers - 1), None]
    try:
        index = int(layer)
    except (TypeError, ValueError):
        raise InvalidInputError(f"layer must be an index, 'last' or 'all', got {layer!r}") from None
    if not -layers <= index < layers:
        raise InvalidInputError(
            f"the model has {layers} layers (0-{layers - 1}); layer {index} does not exist"
        )
    return [None if index % layers == layers - 1 else index % layers]


def _label(model: str, layer: int | None) -> str:
    """The plan's label of the model read at ``layer`` (the plan's own naming)."""
    from attnexplain.runner.plan import ModelEntry

    entry = ModelEntry(hf=model, **({} if layer is None else {"site_layer": layer}))
    return entry.label


def _measures(measures: str | list[str] | None) -> dict[str, list[str]]:
    """The league's ``params`` for ``measures``: none for the default (ERASER's pair), every
    measure that reads the audited model itself for ``"all"``. The measures that read a
    companion model trained on the training split (data randomisation, F-Fidelity) are
    refused: an audit holds the user's model and test data only."""
    if measures is None:
        return {}
    if measures == "all":
        return {"measures": [name for name in list_measures() if not get_measure(name).companion]}
    if isinstance(measures, str):
        measures = listed(measures)
    trained = [name for name in measures if get_measure(name).companion]
    if trained:
        raise InvalidInputError(
            f"{', '.join(trained)} read a model trained for the check on the training split "
            f"(shuffled labels, or fine-tuning on cut texts), and an audit holds your model "
            f"and test data only: leave them out, or run the league in a plan on a dataset "
            f"it trains on (attnexplain run)"
        )
    return {"measures": list(measures)}


def listed(names: str | list[str]) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]`` (a list is returned as a list): how the audit reads
    methods, measures and label words given as one comma-separated string."""
    if isinstance(names, str):
        return [name.strip() for name in names.split(",") if name.strip()]
    return list(names)


def _league_methods(methods: str | list[str] | None) -> dict[str, list[str] | None]:
    """The league's ``params`` for ``methods``."""
    if methods is None:
        return {"methods": list(AUDIT_METHODS)}
    if methods == "all":
        return {"methods": None}
    if isinstance(methods, str):
        methods = listed(methods)
    return {"methods": list(methods)}
