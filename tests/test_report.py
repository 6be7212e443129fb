"""Reports: a tiny real run (the synthetic task, with hostile texts planted in the data and the
plan) rendered to HTML and PDF, opened in headless Chromium and read back with pypdf; runs
with units missing; directories that are not runs; ``explain --html``."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from markupsafe import escape as html_escape
from transformers import BertTokenizerFast

import attnexplain.data.registry as data_registry
import attnexplain.report.context as report_context
from attnexplain import load_checkpoint, save_checkpoint
from attnexplain.cli import main
from attnexplain.data.text import tokenize
from attnexplain.errors import InvalidInputError
from attnexplain.experiments import jain_wallace
from attnexplain.experiments.paper_numbers import beside_paper, judge_claims
from attnexplain.experiments.registry import EXPERIMENTS
from attnexplain.explain import explain
from attnexplain.models.hf import HFClassifier, WordpieceTokenizer
from attnexplain.report import (
    OKABE_ITO,
    build,
    explain_heatmaps,
    fragile_heatmaps,
    report_style,
    token_heatmap,
)
from attnexplain.report.figures import score_colours
from attnexplain.report.tables import to_table
from attnexplain.runner import RunResult, parse_plan, run_plan
from tests.conftest import run_cli
from tests.test_runner import write_plan
from tests.tiny_transformers import tiny_model

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
PLAN = {
    "name": "report",
    "datasets": [{"name": "synthetic", "options": {"n": 300, "seed": 2}}],
    "models": [{"encoder": "lstm", "hidden_size": 16}],
    "seeds": [1],
    "max_instances": 20,
    "train": {"epochs": 2, "embeddings": "random", "embed_dim": 16},
    "notes": [f"{IMG} in a plan note"],
    "experiments": [
        {"name": "jain_wallace.correlation"},
        {"name": "jain_wallace.adversarial", "params": {"steps": 20, "adversaries": 2}},
        {"name": "wiegreffe_pinter.uniform"},
        # list columns (per-seed JSD) and a long-format table (one row per instance x source)
        {"name": "wiegreffe_pinter.seeds", "params": {"extra_seeds": 1}},
        {"name": "wiegreffe_pinter.adversary", "params": {"epochs": 2, "patience": 1}},
        {
            "name": "wiegreffe_pinter.consistent",
            "params": {"lambdas": [0.001]},
            "note": f"{SCRIPT} one lambda only",
        },
    ],
}

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), Path("/usr/bin/chromedriver")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None or not CHROMEDRIVER.exists() or not importlib.util.find_spec("selenium"),
    reason="Debian's chromium / chromium-driver (or selenium) are not installed: "
    "apt-get install -y chromium chromium-driver; pip install -e '.[dev]' (.ci/run does both)",
)


def _weasyprint_problem() -> str:
    try:
        import weasyprint  # noqa: F401
    except OSError as exc:
        return str(exc)
    return ""


needs_weasyprint = pytest.mark.skipif(
    bool(_weasyprint_problem()),
    reason=f"WeasyPrint cannot load Pango ({_weasyprint_problem()}): apt-get install "
    "libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 (.ci/run does)",
)


@pytest.fixture(scope="module", autouse=True)
def hostile_texts():
    """Every synthetic text ends in markup a browser would run if the report did not escape
    it (while this module's run trains and while its report reloads the texts)."""
    make = data_registry.make_synthetic

    def hostile(**options) -> pd.DataFrame:
        frame = make(**options)
        frame["text"] = [f"{text} {(SCRIPT, IMG)[i % 2]}" for i, text in enumerate(frame["text"])]
        return frame

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data_registry, "make_synthetic", hostile)
        yield


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return run_plan(parse_plan(PLAN), tmp_path_factory.mktemp("run"), progress=False).directory


@pytest.fixture(scope="module")
def titles(run_dir) -> list[str]:
    """The experiments' headings, as the plan the run directory holds names them."""
    return [entry.title for entry in RunResult.load(run_dir).plan.experiments]


VERDICT = "Verdict: does the attention explain the predictions?"


@pytest.fixture(scope="module")
def sections(titles) -> list[str]:
    """The report's sections: the verdict first (the plan runs J&W's experiments, which it
    reads), then the summary, the claims, one per experiment, explanations and units."""
    return [
        VERDICT,
        "Summary",
        "The papers' claims",
        *titles,
        "Explanations of instances",
        "All units",
    ]


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory) -> dict[str, Path]:
    formats = "html" if _weasyprint_problem() else "html,pdf"
    return build(run_dir, tmp_path_factory.mktemp("report"), formats)


@pytest.fixture(scope="module")
def html(report) -> str:
    return report["html"].read_text()


def _h2(page: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<h2>(.*?)</h2>", page)]


def test_the_verdict_then_the_summary_come_first_and_say_what_ran(html):
    assert _h2(html)[:2] == [VERDICT, "Summary"]
    verdict = html.split('<section id="verdict" class="verdict">')[1].split("</section>")[0]
    assert "agreement: <strong>" in verdict and "adversarial: <strong>" in verdict
    summary = html.split('<section id="summary">')[1].split("</section>")[0]
    for fact in (
        "synthetic-n300-seed2",  # dataset
        "lstm-additive-h16",  # model
        "test F1",  # its test metrics
        "torch ",  # package versions
        "seeds",
        "the test split, its first 20 rows",
        "9 of 9 finished: 9 computed by the latest invocation, 0 reused",
        "train.classic.lstm",  # wall time by kind of work
    ):
        assert fact in summary, fact
    assert re.search(r"code</dt><dd>([0-9a-f]{12}|not from a git checkout)", summary)


def test_every_experiment_of_the_plan_has_a_section_from_the_registry(html, titles, sections):
    assert _h2(html) == sections
    for description in (
        "J&amp;W: Kendall tau of attention",
        "W&amp;P: model-consistent adversaries along a lambda grid",
    ):
        assert description in html
    # each section's summary table and figure, including the list-column and long-format ones
    assert html.count('<img src="data:image/png;base64,') == len(titles) + 1  # and the verdict's
    assert "could not be drawn" not in html and "Missing" not in html
    consistent = html.split(titles[-1])[-1]
    for source in ("lambda=0.001", "seeds", "uniform", "J&amp;W adversary"):
        assert f"<td>{source}</td>" in consistent


def test_the_claims_section_judges_every_claim_this_run_can_test(html):
    from attnexplain.experiments.claims import CLAIMS

    claims = html.split('<section id="claims">')[1].split("</section>")[0]
    assert claims.count("<tr>") == len(CLAIMS) + 1  # the header row
    # synthetic data stands in for no paper dataset: the number claims are not run, while the
    # W&P consistent sweep of this run is shown, with no Table 4 number to judge it by
    assert "<td>not run</td>" in claims
    consistent = next(c for c in CLAIMS if c.claim.startswith("A model trained to be consistent"))
    row = claims.split(html_escape(consistent.claim))[1].split("</tr>")[0]
    assert "<td>no paper number</td>" in row and "(not in Table 4)" in row


def test_explanations_show_four_methods_and_the_fragile_instances(html):
    explanations = html.split('id="explanations"')[1].split('id="units"')[0]
    assert explanations.count("<article") == 4  # 2 chosen instances, most and least fragile
    for label in ("attention", "J&amp;W gradient", "leave-one-out", "integrated gradients"):
        assert explanations.count(f"<h5>{label}</h5>") == 2
    assert "Most fragile: instance" in explanations and "Least fragile: instance" in explanations
    assert explanations.count("<h5>adversarial attention</h5>") == 2


def test_hostile_strings_are_escaped_in_the_page(html):
    assert SCRIPT not in html and IMG not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script" not in html


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def _open(browser, path: Path, width: int) -> None:
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600},
    )
    browser.get(path.as_uri())


@needs_browser
def test_the_page_loads_in_chromium_offline_and_runs_no_injected_markup(browser, report, titles):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    _open(browser, report["html"], 1280)
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth])"
    )
    assert len(images) == len(titles) + 1  # the verdict's figure and one per experiment
    assert all(complete and width > 0 for complete, width in images)
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    requested = [
        json.loads(entry["message"])["message"]["params"]["request"]["url"]
        for entry in browser.get_log("performance")
        if '"Network.requestWillBeSent"' in entry["message"]
    ]
    assert requested and all(url.startswith(("file://", "data:")) for url in requested)
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - reading it is what raises
    injected = browser.execute_script(
        "return [document.scripts.length, document.querySelectorAll('[onerror]').length,"
        " document.querySelectorAll('img[src=\"x\"]').length]"
    )
    assert injected == [0, 0, 0]
    text = browser.find_element(By.TAG_NAME, "body").text
    assert SCRIPT in text and IMG in text


@needs_browser
def test_on_a_phone_only_tables_and_figures_scroll_sideways(browser, report):
    _open(browser, report["html"], 390)
    page_width = browser.execute_script("return document.documentElement.scrollWidth")
    assert page_width <= 390


@needs_weasyprint
def test_the_pdf_has_the_sections_a_contents_page_and_page_numbers(report, sections):
    from pypdf import PdfReader

    reader = PdfReader(report["pdf"])
    title, outline = reader.outline[:2]
    assert title.title == "Run report"
    top = [item for item in outline if not isinstance(item, list)]
    assert [item.title for item in top] == sections
    pages = len(reader.pages)
    # a new page per experiment, the explanations and the units: more than the sections
    assert pages >= len(sections)
    assert f"page {pages} of {pages}" in reader.pages[-1].extract_text()
    contents = reader.pages[0].extract_text()
    for item in top:
        page = reader.get_destination_page_number(item) + 1
        assert re.search(rf"{re.escape(item.title)}\s*\.+\s*{page}\b", contents), item.title


def _break(run_dir: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """A copy of the run with one unit never started (its folder gone) and one killed mid-way
    (its folder there, its ``done`` marker not)."""
    copy = tmp_path / "broken"
    shutil.copytree(run_dir, copy)
    units = {
        u["label"]: u["key"] for u in json.loads((copy / "manifest.json").read_text())["units"]
    }
    never, killed = (
        next(label for label in units if label.endswith(name))
        for name in ("jain_wallace.correlation", "wiegreffe_pinter.consistent")
    )
    shutil.rmtree(copy / "units" / units[never])
    (copy / "units" / units[killed] / "done").unlink()
    return copy, [f"{never} (not started)", f"{killed} (started, not finished)"]


def test_a_run_with_units_missing_gets_a_report_that_names_them(run_dir, tmp_path, sections):
    broken, missing = _break(run_dir, tmp_path)
    page = build(broken, tmp_path / "out", "html")["html"].read_text()
    assert "Incomplete run:</strong> 2 of the plan's units" in page
    for label in missing:
        assert f"<li>{label}</li>" in page
    assert _h2(page) == sections  # the sections of missing units are there, saying so
    assert page.count("<strong>Missing:</strong>") == 2


def test_an_experiment_face_that_fails_costs_its_figure_not_the_report(
    run_dir, tmp_path, monkeypatch
):
    name = "jain_wallace.correlation"

    def broken(table: pd.DataFrame):
        raise ValueError("cannot draw <this>")

    monkeypatch.setitem(EXPERIMENTS, name, replace(EXPERIMENTS[name], figure=broken))
    page = build(run_dir, tmp_path, "html")["html"].read_text()
    assert page.count("The figure could not be drawn: ValueError: cannot draw &lt;this&gt;") == 1
    # every experiment's figure but the broken one, and the verdict's
    assert page.count('<img src="data:image/png') == len(PLAN["experiments"])


def test_a_directory_that_is_not_a_run_is_one_clear_error(tmp_path):
    result = run_cli("report", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "manifest.json" in lines[0]
    with pytest.raises(InvalidInputError, match="does not exist: pass the folder"):
        build(tmp_path / "nowhere")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(InvalidInputError, match="cannot be read"):
        build(tmp_path)


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """``attnexplain ARGS`` in this process, so that the planted texts stay planted."""
    monkeypatch.setattr(sys, "argv", ["attnexplain", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    captured = capsys.readouterr()
    return exit_.value.code, captured.out + captured.err


def test_cli_report_writes_the_formats_asked_for(run_dir, tmp_path, monkeypatch, capsys):
    arguments = ["--format", "html", "--out", str(tmp_path), "--instance", "3", "--instance", "7"]
    code, output = _cli(monkeypatch, capsys, "report", str(run_dir), *arguments)
    assert code == 0, output
    assert output.strip() == f"report: {tmp_path / 'report.html'}"
    page = (tmp_path / "report.html").read_text()
    assert re.findall(r"<h4>Instance (\d+)</h4>", page) == ["3", "7"]
    code, output = _cli(monkeypatch, capsys, "report", str(run_dir), "--format", "docx")
    assert code == 2 and "unknown report format 'docx'" in output


@needs_weasyprint
def test_run_with_report_writes_the_report_into_the_run(run_dir, tmp_path, monkeypatch, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    plan = write_plan(tmp_path / "plan.yaml", PLAN)
    code, output = _cli(monkeypatch, capsys, "run", str(plan), "--out", str(copy), "--report")
    assert code == 0, output
    assert "9 units: 0 run, 9 reused" in output
    assert (copy / "report" / "report.html").is_file() and (
        copy / "report" / "report.pdf"
    ).is_file()


def test_the_beside_paper_table_tags_sources_and_judges_claims(run_dir, monkeypatch):
    quantities = pd.DataFrame(
        {
            "dataset": "rt-sentences",
            "model": "lstm-additive",
            "seed": 10,
            "quantity": ["tau jw-gradient", "tau jw-gradient", "adversarial median JSD"],
            "predicted_class": ["negative", "positive", "negative"],
            "ours": [0.45, 0.28, 0.60],
            # SST .40 lies .01 below the first interval (inside the .05 stand-in allowance),
            # .38 lies .07 above the second (outside it); the third has no interval
            "ours_low": [0.41, 0.25, float("nan")],
            "ours_high": [0.49, 0.31, float("nan")],
            "count": 100,
        }
    )
    judged = judge_claims(beside_paper(quantities))
    assert judged["paper"].tolist() == [0.40, 0.38, 0.54]
    assert judged["holds"].tolist() == ["yes", "no", "no interval"]
    assert judged["allowance"].tolist() == [0.05, 0.05, 0.05]
    assert judged["spread"].isna().all()  # one seed
    assert judged["source"].tolist() == ["table", "table", "derived"]
    monkeypatch.setattr(report_context, "run_beside_paper", lambda result: beside_paper(quantities))
    section = report_context.paper_table(report_context.load_run(run_dir))
    assert "allowance" in section.columns and "ours_low" not in section.columns
    assert section.caption == "rt-sentences / lstm-additive / seed 10"
    assert section.rows[0][section.columns.index("ours")] == "0.450 [0.410, 0.490]"
    assert section.rows[2][section.columns.index("ours")] == "0.600"
    assert [row[-1] for row in section.rows] == ["[table]", "[table]", "[derived]"]


def test_the_spread_across_seeds_widens_the_interval():
    rows = {
        "dataset": "imdb",
        "model": "lstm-additive",
        "quantity": "tau jw-gradient",
        "predicted_class": "negative",
        "count": 100,
    }
    # IMDB (no allowance), paper .37: outside both seeds' own intervals, inside once widened
    quantities = pd.DataFrame(
        [
            rows | {"seed": 10, "ours": 0.40, "ours_low": 0.38, "ours_high": 0.42},
            rows | {"seed": 50, "ours": 0.44, "ours_low": 0.42, "ours_high": 0.46},
        ]
    )
    judged = judge_claims(beside_paper(quantities))
    assert judged["spread"].tolist() == pytest.approx([0.02828, 0.02828], abs=1e-4)
    assert judged["holds"].tolist() == ["yes", "no"]


def test_tables_show_lists_nan_and_long_rows_without_choking():
    frame = pd.DataFrame(
        {
            "dataset": ["d", "d"],
            "instance": [0, 1],
            "adversaries": [np.zeros((2, 5)), [0.5, 0.25]],
            "jsd": [float("nan"), 1.23456e-5],
            "within": [True, False],
        }
    )
    table = to_table(frame)
    assert table.caption == "d" and table.columns == ["instance", "adversaries", "jsd", "within"]
    assert table.rows[0] == ["0", "[0.000, 0.000, 0.000, … (10 values)]", "–", "yes"]
    assert table.rows[1][1:] == ["[0.500, 0.250]", "1.23e-05", "no"]
    assert table.numeric == [True, False, True, False]


# ---------------------------------------------------------------- heatmaps and figures


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """The tiny random BERT with a small offline wordpiece vocabulary, as a checkpoint."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "fine", "film", "dull", "##s"]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)})
    out = tmp_path_factory.mktemp("bert") / "checkpoint"
    save_checkpoint(
        out, HFClassifier(tiny_model("bert")), WordpieceTokenizer(tokenizer, 32), ["neg", "pos"]
    )
    return out


def test_transformer_heatmaps_are_at_the_word_level(bert):
    checkpoint = load_checkpoint(bert)
    (heatmap,) = explain_heatmaps(checkpoint, ["a fine films"])
    assert heatmap.words == ["a", "fine", "films"]
    assert [row.label for row in heatmap.rows] == [
        "attention",
        "J&W gradient",
        "leave-one-out",
        "integrated gradients",
    ]
    pieces = explain(checkpoint, "a fine films", ["integrated-gradients"])["score"].to_numpy()
    assert heatmap.rows[3].scores == pytest.approx([pieces[0], pieces[1], pieces[2] + pieces[3]])
    assert heatmap.caption.startswith("predicted ")


def test_cli_explain_html_writes_the_heatmaps_of_a_users_texts(bert, tmp_path):
    out = tmp_path / "explained.html"
    hostile = f"{SCRIPT} a dull film {IMG}"
    result = run_cli(
        "explain", "--checkpoint", str(bert), "a fine films", hostile, "--html", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {out}"
    page = out.read_text()
    assert page.count("<article") == 2 and page.count("<h5>integrated gradients</h5>") == 2
    assert ">films</bdi>" in page and "##s" not in page  # words, not wordpieces
    assert "<script" not in page and IMG not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; a dull film" in page


def test_fragile_instances_of_a_transformer_put_both_attentions_on_words(bert):
    checkpoint = load_checkpoint(bert)
    texts = ["a fine films", "a dull film", "dull dull films a", "fine"]
    frame = pd.DataFrame(
        {"text": texts, "label": [1, 0, 0, 1], "tokens": list(map(tokenize, texts))}
    )
    params = {"steps": 5, "adversaries": 2, "batch_size": 4}
    adversarial = jain_wallace.run_adversarial(checkpoint, frame, params, progress=False)
    most, least = fragile_heatmaps(checkpoint, frame, adversarial)
    order = adversarial["eps_max_jsd"].to_numpy()
    assert most.title == f"Most fragile: instance {order.argmax()}"
    assert least.title == f"Least fragile: instance {order.argmin()}"
    for heatmap in (most, least):
        assert heatmap.words == texts[int(heatmap.title.rsplit(" ", 1)[1])].split()
        model, adversary = heatmap.rows
        assert len(model.scores) == len(adversary.scores) == len(heatmap.words)
        # weight on [CLS] / [SEP] belongs to no word; a shared scale makes the rows comparable
        assert 0 < sum(model.scores) <= 1 + 1e-6 and model.scale == adversary.scale


def test_figure_functions_return_labelled_figures_in_a_colour_blind_safe_palette(run_dir):
    checkpoint = load_checkpoint(next(run_dir.glob("units/*/checkpoint")))
    (heatmap,) = explain_heatmaps(checkpoint, ["sevo suva pebi"])
    figure = token_heatmap(heatmap)
    ax, bar = figure.axes
    assert ax.get_xlabel() == "word of the text" and "no unit" in bar.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == heatmap.words
    with report_style():
        assert plt.rcParams["axes.prop_cycle"].by_key()["color"] == list(OKABE_ITO)
    orange, _ = score_colours(1.0, 1.0)
    purple, text = score_colours(-1.0, 1.0)
    assert orange.startswith("#7f") and purple.startswith("#2d") and text == "#ffffff"
    assert score_colours(float("nan"), 1.0) == score_colours(0.0, 0.0)


def test_a_model_at_another_hidden_size_is_compared_as_the_papers_name_it():
    from attnexplain.runner.plan import ModelEntry

    entry = ModelEntry(encoder="lstm", attention="additive", hidden_size=32)
    assert (entry.label, entry.paper_model) == ("lstm-additive-h32", "lstm-additive")
    quantities = pd.DataFrame(
        {
            "dataset": "babi-1",
            "model": ["lstm-additive-h32"],
            "seed": 10,
            "quantity": "tau jw-gradient",
            "predicted_class": "all",
            "ours": 0.20,
            "ours_low": 0.19,
            "ours_high": 0.21,
            "count": 500,
        }
    )
    assert beside_paper(quantities).empty  # J&W name no "lstm-additive-h32"
    table = beside_paper(quantities, model_names={entry.label: entry.paper_model})
    assert table[["paper_model", "paper"]].values.tolist() == [["lstm-additive", 0.23]]
    # bAbI is a stand-in (.05): .23 lies .02 above the interval, inside the allowance
    assert judge_claims(table)["holds"].tolist() == ["yes"]
