"""Results in a notebook (issue 26, items 3 and 5): an Attribution, an explain() table and a run
show the report's token heatmaps and tables as HTML, print a short repr, and the HTML opens in
Chromium cleanly."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import attnexplain as ax
from attnexplain.data import TextPipeline
from attnexplain.models import Checkpoint, ClassicConfig, ClassicModel
from attnexplain.runner.plan import parse_plan
from tests.test_report import needs_browser

TEXTS = ["a fine <b>film</b>", "a dull and long film", "dull"]


@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    torch.manual_seed(0)
    pipeline = TextPipeline.fit(TEXTS)
    config = ClassicConfig(vocab_size=len(pipeline.vocab), embed_dim=8, hidden_size=8)
    return Checkpoint(ClassicModel(config).eval(), pipeline, ["neg", "pos"])


@pytest.fixture(scope="module")
def attribution(checkpoint) -> ax.Attribution:
    return ax.attribute(checkpoint, TEXTS, "jw-gradient")


@pytest.fixture(scope="module")
def explanation(checkpoint) -> ax.Explanation:
    return ax.explain(checkpoint, TEXTS, ["attention", "leave-one-out"])


def test_repr_is_short_and_names_the_top_tokens(attribution):
    text = repr(attribution)
    width = attribution.scores.shape[1]
    assert text.splitlines()[0] == f"Attribution('jw-gradient', 3 instances x {width} positions)"
    assert "tensor" not in text and len(text.splitlines()) == 4
    first = attribution.to_frame().query("instance == 0")
    top = first.loc[first["score"].abs().idxmax(), "token"]
    assert text.splitlines()[1].startswith(f"  0: {top} ")


def test_html_draws_the_reports_heatmap_of_every_instance(attribution):
    html = attribution._repr_html_()
    assert html.count('<article class="heatmap">') == 3
    tokens = attribution.to_frame()
    assert html.count("<bdi style=") == len(tokens)
    assert "&lt;" in html and "<b>" not in html  # the text's "<b>" is escaped, never markup
    assert "<script" not in html


def test_show_prints_the_repr_outside_a_notebook(attribution, capsys):
    attribution.show()
    assert capsys.readouterr().out.strip() == repr(attribution)


def test_an_explanation_is_a_dataframe_drawn_as_the_reports_heatmaps(explanation):
    assert isinstance(explanation, pd.DataFrame)
    html = explanation._repr_html_()
    assert html.count('<article class="heatmap">') == 3
    assert html.count("<bdi style=") == len(explanation)  # a cell per token and method
    assert html.count("predicted ") == 3 and "leave-one-out" in html
    assert "&lt;" in html and "<b>" not in html and "<script" not in html
    first = explanation.heatmaps()[0]
    tokens = explanation.query("instance == 0 and method == 'attention'")["token"].tolist()
    assert first.words == tokens and [row.label for row in first.rows] == [
        "attention",
        "leave-one-out",
    ]


def test_what_is_derived_from_an_explanation_is_a_plain_dataframe(explanation):
    derived = [
        explanation[explanation["method"] == "attention"],
        explanation.pivot(index=["instance", "position"], columns="method", values="score"),
        explanation.to_frame(),
    ]
    assert [type(frame) for frame in derived] == [pd.DataFrame] * 3
    assert derived[2].equals(pd.DataFrame(explanation))


def test_a_run_shows_each_experiments_summary(tmp_path):
    plan = parse_plan(
        {
            "name": "shown",
            "datasets": [{"name": "synthetic", "options": {"n": 300}}],
            "models": [{"encoder": "average", "hidden_size": 8}],
            "seeds": [1],
            "train": {"epochs": 1, "embeddings": "random", "embed_dim": 8},
            "experiments": [{"name": "predictions"}],
        }
    )
    result = ax.run_plan(plan, tmp_path, progress=False)
    assert repr(result).startswith(f"RunResult({tmp_path}: 2 units, 2 run now; predictions")
    html = result._repr_html_()
    assert "<caption>predictions</caption>" in html and "accuracy" in html
    assert result.to_frame().equals(result.results())


@needs_browser
@pytest.mark.parametrize("name", ["attribution", "explanation"])
def test_the_html_opens_in_chromium_without_a_console_error(name, request, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from tests.test_report import CHROMEDRIVER, CHROMIUM

    result = request.getfixturevalue(name)
    page = tmp_path / "cell.html"
    page.write_text(result._repr_html_(), encoding="utf-8")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(page.as_uri())
        shown = driver.execute_script("return document.querySelectorAll('bdi').length")
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    finally:
        driver.quit()
    assert shown == len(result.to_frame())
    assert errors == []
