"""`attnexplain audit` on users' model folders: random-init classifiers of every architecture
family the hooks support, saved with save_pretrained beside their tokenizers, audited on a
data file of the planted task; errors of users as one `error:` line and exit 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from attnexplain.audit import audit, audit_plan
from attnexplain.data.registry import load_local
from attnexplain.errors import InvalidInputError
from attnexplain.experiments.registry import get_experiment
from attnexplain.experiments.verdict import verdict
from attnexplain.models.checkpoint import Checkpoint
from attnexplain.models.imported import load_classifier
from attnexplain.runner.run import RunResult
from attnexplain.runner.store import RunStore
from attnexplain.runner.units import ExperimentUnit
from tests.conftest import run_cli
from tests.user_models import causal_lm_folder, data_frame, model_folder, vocabulary

ARCHITECTURES = ["bert", "roberta", "electra", "distilbert", "modernbert", "gpt2", "llama"]
# a short adversarial search keeps these tests quick; the battery is otherwise the audit's own
QUICK_CLI = (("steps", 20), ("adversaries", 2))
QUICK = {"jain_wallace.adversarial": dict(QUICK_CLI)}
INSTANCES = 6
# every method runs in the test of equal numbers; per architecture a few keep the suite quick
FEW_METHODS = ["attention", "attention-norm", "jw-gradient", "leave-one-out"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "planted.csv"
    data_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_audit_runs_on_every_supported_architecture_from_the_cli(
    name, folders, data_file, tmp_path
):
    folder, out = model_folder(folders, name), tmp_path / "run"
    quick = [f"--param=jain_wallace.adversarial.{key}={value}" for key, value in QUICK_CLI]
    result = run_cli(
        "audit",
        str(folder),
        "--data",
        str(data_file),
        "--instances",
        str(INSTANCES),
        "--methods",
        ",".join(FEW_METHODS),
        "--format",
        "html",
        "--out",
        str(out),
        *quick,
    )
    assert result.returncode == 0, result.stderr
    assert f"verdict on {folder}" in result.stdout
    found = verdict(RunResult.load(out))
    assert list(found["question"]) == [
        "performance",
        "agreement",
        "permutation",
        "adversarial",
        "erasure",
        "most faithful method",
    ]
    for row in found.itertuples():
        assert f"{row.question}: {row.answer}" in " ".join(result.stdout.split())
    assert found[["value", "low", "high"]].notna().all().all()
    assert (found["low"] <= found["value"] + 1e-12).all()
    assert (found["value"] <= found["high"] + 1e-12).all()
    html = (out / "report" / "report.html").read_text()
    assert html.index('id="verdict"') < html.index('id="summary"')
    # the checkpoint says where the model and the data came from, by content
    manifest = json.loads((out / "manifest.json").read_text())
    training = next(u for u in manifest["units"] if u["kind"] == "train")
    assert set(training["details"]["model"]["hf"]["files"]) >= {"config.json"}
    assert training["details"]["data"]["sha256"]


def test_audit_numbers_equal_the_experiment_code(folders, data_file, tmp_path):
    """What the audit stores per instance is what each experiment gives when called on the
    same model and rows directly."""
    folder = model_folder(folders, "bert")
    found = audit(
        folder,
        data_file,
        instances=INSTANCES,
        out=tmp_path / "run",
        params=QUICK,
        formats="html",
        progress=False,
    )
    imported = load_classifier(folder)
    checkpoint = Checkpoint(imported.model, imported.pipeline, imported.classes)
    frame = load_local(data_file, classes=imported.classes, fractions=(0, 0, 1)).test
    frame = frame.iloc[:INSTANCES].reset_index(drop=True)
    store = RunStore(found.run.directory)
    checked = 0
    for unit in found.run.units:
        if not isinstance(unit, ExperimentUnit):
            continue
        expected = get_experiment(unit.experiment).run(checkpoint, frame, dict(unit.params), False)
        pd.testing.assert_frame_equal(
            store.read_result(unit.key).reset_index(drop=True),
            expected.reset_index(drop=True),
            check_dtype=False,
            atol=1e-5,
        )
        checked += 1
    assert checked == 7


def test_text_pairs_are_audited_as_the_tokenizer_joins_them(tmp_path):
    frame = data_frame()
    frame["hypothesis"] = frame["text"].str.split().str[:4].str.join(" ")
    path = tmp_path / "pairs.jsonl"
    frame.to_json(path, orient="records", lines=True)
    folder = model_folder(tmp_path, "bert", vocabulary(frame, ("text", "hypothesis")))
    found = audit(
        folder,
        path,
        pair_column="hypothesis",
        instances=4,
        out=tmp_path / "run",
        params=QUICK,
        methods=FEW_METHODS,
        formats="html",
        progress=False,
    )
    assert len(found.verdict) == 6
    imported = load_classifier(folder)
    dataset = load_local(
        path, pair_column="hypothesis", classes=imported.classes, fractions=(0, 0, 1)
    )
    ids = imported.pipeline.encode_split(dataset.test.iloc[:1])[0]
    tokens = imported.pipeline.decode(ids)
    # [CLS] text [SEP] hypothesis [SEP]: the middle [SEP] is no content, the hypothesis is
    separator = tokens.index("[SEP]")
    assert ids.content[separator] == 0 and ids.content[separator + 1] == 1
    assert ids.segments[separator + 1] == 1 and ids.segments[1] == 0


def test_a_killed_audit_resumes_to_identical_results(folders, data_file, tmp_path):
    folder = model_folder(folders, "distilbert")
    script = (
        "import sys; from attnexplain.audit import audit; "
        f"audit(sys.argv[1], sys.argv[2], instances={INSTANCES}, out=sys.argv[3], "
        f"params={QUICK!r}, formats='html', progress=False)"
    )

    def start(out: Path) -> subprocess.Popen:
        command = [sys.executable, "-c", script, str(folder), str(data_file), str(out)]
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    killed = tmp_path / "killed"
    process = start(killed)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if len(RunStore(killed).finished_keys()) >= 3:
            break
        time.sleep(0.2)
    assert process.poll() is None, "the audit ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = RunStore(killed).finished_keys()
    assert 3 <= len(finished) < 8
    for out in (killed, tmp_path / "whole"):  # resumed, and a run never killed
        audit(
            folder,
            data_file,
            instances=INSTANCES,
            out=out,
            params=QUICK,
            formats="html",
            progress=False,
        )
    resumed, whole = RunStore(killed), RunStore(tmp_path / "whole")
    assert set(resumed.finished_keys()) == set(whole.finished_keys())
    for key in whole.finished_keys():
        if (whole.unit_dir(key) / "result.parquet").is_file():
            pd.testing.assert_frame_equal(resumed.read_result(key), whole.read_result(key))


def _labelled(tmp_path: Path, frame: pd.DataFrame, name: str = "data.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _one_error_line(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_user_errors_are_one_line_and_exit_2(folders, data_file, tmp_path):
    bert = model_folder(folders, "bert")
    out = ["--out", str(tmp_path / "run")]
    cases = {
        "cannot be audited": [str(model_folder(folders, "deberta-v2")), "--data", str(data_file)],
        "no column(s) ['review']": [str(bert), "--data", str(data_file), "--text-column", "review"],
        "is empty": [str(bert), "--data", str(_labelled(tmp_path, pd.DataFrame(), "empty.csv"))],
        "the model does not know": [
            str(bert),
            "--data",
            str(_labelled(tmp_path, data_frame().assign(label="stars"), "stars.csv")),
        ],
        "device 'cuda:3' is not available": [
            str(bert),
            "--data",
            str(data_file),
            "--device",
            "cuda:3",
        ],
        "is not a transformers model folder": [str(tmp_path), "--data", str(data_file)],
    }
    for expected, arguments in cases.items():
        line = _one_error_line(run_cli("audit", *arguments, *out))
        assert expected in line, line
    assert not (tmp_path / "run" / "units").exists()  # nothing ran


def test_a_pair_model_given_single_texts_is_refused(tmp_path, data_file):
    words = vocabulary(data_frame())
    folder = model_folder(tmp_path, "bert", words, classes=3)
    config = json.loads((folder / "config.json").read_text())
    names = ["entailment", "neutral", "contradiction"]
    config["id2label"] = dict(enumerate(names))
    config["label2id"] = {name: i for i, name in enumerate(names)}
    (folder / "config.json").write_text(json.dumps(config))
    nli = data_frame().assign(
        label=lambda f: f["label"].map({"class0": "entailment"}).fillna("neutral")
    )
    line = _one_error_line(
        run_cli(
            "audit",
            str(folder),
            "--data",
            str(_labelled(tmp_path, nli)),
            "--out",
            str(tmp_path / "r"),
        )
    )
    assert "reads text pairs" in line and "--pair-column" in line


def test_audit_layers_all_reads_every_layer_and_the_league_keeps_layer_methods(folders, data_file):
    plan = audit_plan(str(model_folder(folders, "bert")), data_file, layer="all")
    assert [m.label for m in plan.models] == ["bert-layer0", "bert"]
    lower = next(e for e in plan.experiments if e.models == ["bert-layer0"])
    assert set(lower.params["methods"]) <= {
        "attention",
        "attention-norm",
        "grad-attention",
        "value-zeroing",
    }
    assert [m.label for m in audit_plan(str(folders / "bert"), data_file, layer=0).models] == [
        "bert-layer0"
    ]


@pytest.mark.large
@pytest.mark.slow  # about 4 minutes on 2 cores: fine-tuning, then the audit's full battery
def test_the_fine_tuned_minilm_saved_as_a_plain_folder_is_audited_from_the_cli(tmp_path):
    """MiniLM fine-tuned here, saved as transformers saves it (no file of ours), audited by
    the command a user types; the report's verdict comes first."""
    from attnexplain import TrainConfig, load_dataset, train

    dataset = load_dataset("synthetic", n=400, seed=3)
    trained = train(
        dataset,
        tmp_path / "checkpoint",
        config=TrainConfig.finetuning(epochs=1),
        pretrained="minilm",
        progress=False,
    )
    folder = tmp_path / "my-minilm"
    folder.mkdir()
    for file in trained.checkpoint.iterdir():
        if file.name != "attnexplain.json" and file.is_file():
            (folder / file.name).write_bytes(file.read_bytes())
    frame = dataset.test.iloc[:30][["text", "label"]]
    frame = frame.assign(label=frame["label"].map(dict(enumerate(dataset.classes))))
    path = _labelled(tmp_path, frame)
    result = run_cli(
        "audit",
        str(folder),
        "--data",
        str(path),
        "--instances",
        "4",
        "--out",
        str(tmp_path / "run"),
    )
    assert result.returncode == 0, result.stderr
    assert "verdict on" in result.stdout and "most faithful method:" in result.stdout
    html = (tmp_path / "run" / "report" / "report.html").read_text()
    assert html.index('id="verdict"') < html.index('id="summary"')
    assert (tmp_path / "run" / "report" / "report.pdf").stat().st_size > 10_000


def test_plans_fine_tune_a_users_folder_on_a_users_file(folders, data_file, tmp_path):
    """{hf: FOLDER, finetune: true} on {file: PATH}: the folder's model trains on the file's
    train split (its head afresh for the file's classes); the manifest names both by content."""
    from attnexplain.runner import run_plan
    from attnexplain.runner.plan import parse_plan

    folder = model_folder(folders, "bert")
    plan = parse_plan(
        {
            "name": "tuned",
            "datasets": [{"file": str(data_file)}],
            "models": [{"hf": str(folder), "finetune": True}, {"hf": str(folder)}],
            "seeds": [0],
            "finetune": {"epochs": 1},
            "experiments": [{"name": "predictions"}],
        }
    )
    assert [m.label for m in plan.models] == ["bert-finetuned", "bert"]
    result = run_plan(plan, tmp_path / "run", progress=False)
    summary = result.summary(0)
    assert list(summary["model"]) == ["bert-finetuned", "bert"]
    tuned, imported = (
        json.loads(
            (RunStore(result.directory).checkpoint_dir(unit.key) / "attnexplain.json").read_text()
        )
        for unit in result.units
        if unit.kind == "train"
    )
    assert tuned["metadata"]["pretrained"] == str(folder)
    assert imported["metadata"]["imported"]["source"] == str(folder.resolve())


def test_an_audit_takes_the_measures_that_read_its_model_and_refuses_the_trained_ones(
    folders, data_file
):
    folder = str(model_folder(folders, "bert"))
    league = next(
        e for e in audit_plan(folder, data_file).experiments if e.name == "league.methods"
    )
    assert "measures" not in league.params  # ERASER's pair, the default
    every = audit_plan(folder, data_file, measures="all")
    measures = next(e for e in every.experiments if e.name == "league.methods").params["measures"]
    assert {"soft-sufficiency", "randomisation-cascading", "infidelity"} <= set(measures)
    assert not {"data-randomisation", "f-fidelity-comprehensiveness"} & set(measures)
    chosen = audit_plan(folder, data_file, measures="comprehensiveness, soft-sufficiency")
    assert next(e for e in chosen.experiments if e.name == "league.methods").params["measures"] == [
        "comprehensiveness",
        "soft-sufficiency",
    ]
    with pytest.raises(InvalidInputError, match="data-randomisation read a model trained"):
        audit_plan(folder, data_file, measures=["comprehensiveness", "data-randomisation"])


# --- causal LMs read over label words (a cloze) --------------------------------------------

LABEL_WORDS = ["no", "yes"]


def _cloze_data(tmp_path: Path) -> Path:
    """The planted task with labels as indices of LABEL_WORDS."""
    frame = data_frame().assign(label=lambda f: f["label"].map({"class0": 0, "class1": 1}))
    return _labelled(tmp_path, frame, "cloze.csv")


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_a_causal_lm_is_audited_as_a_classifier_of_its_next_token(name, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = causal_lm_folder(tmp_path, name, [*vocabulary(data_frame()), *LABEL_WORDS])
    data, out = _cloze_data(tmp_path), tmp_path / "run"
    quick = [f"--param=jain_wallace.adversarial.{key}={value}" for key, value in QUICK_CLI]
    result = run_cli(
        "audit",
        str(folder),
        *("--data", str(data), "--label-words", ",".join(LABEL_WORDS)),
        *("--instances", str(INSTANCES), "--methods", ",".join(FEW_METHODS)),
        *("--format", "html", "--out", str(out), *quick),
    )
    assert result.returncode == 0, result.stderr
    found = verdict(RunResult.load(out))
    assert {"performance", "agreement", "permutation", "erasure"} <= set(found["question"])
    assert found[["value", "low", "high"]].notna().all().all()
    # the audited model's predictions are the LM's next-token logits over the two words,
    # at each prompt's last token, computed here without the toolkit
    lm = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    words = tokenizer.convert_tokens_to_ids(LABEL_WORDS)
    predictions = RunResult.load(out).results(0)
    assert set(predictions["text"]) <= set(pd.read_csv(data)["text"])
    with torch.no_grad():
        expected = [
            int(lm(**tokenizer(text, return_tensors="pt")).logits[0, -1, words].argmax())
            for text in predictions["text"]
        ]
    assert len(expected) == INSTANCES
    assert predictions["predicted"].tolist() == expected
    manifest = json.loads((out / "manifest.json").read_text())
    training = next(u for u in manifest["units"] if u["kind"] == "train")
    assert training["details"]["model"]["label_words"] == LABEL_WORDS


def test_causal_lm_errors_name_the_label_words(tmp_path, folders, data_file):
    folder = causal_lm_folder(tmp_path, "gpt2", [*vocabulary(data_frame()), *LABEL_WORDS])
    data, out = str(_cloze_data(tmp_path)), ["--out", str(tmp_path / "run")]
    cases = {
        "--label-words negative,positive": [str(folder), "--data", data],
        "is not one token": [str(folder), "--data", data, "--label-words", "no,maybe"],
        "leave out --label-words": [
            str(model_folder(folders, "bert")),
            *("--data", str(data_file), "--label-words", "no,yes"),
        ],
    }
    for expected, arguments in cases.items():
        line = _one_error_line(run_cli("audit", *arguments, *out))
        assert expected in line, line
    assert not (tmp_path / "run" / "units").exists()


def test_label_words_belong_to_a_users_model_as_it_is(tmp_path):
    from attnexplain.runner.plan import PlanError, parse_plan

    folder = causal_lm_folder(tmp_path, "llama", [*vocabulary(data_frame()), *LABEL_WORDS])
    plan = audit_plan(str(folder), _cloze_data(tmp_path), label_words=LABEL_WORDS)
    assert plan.datasets[0].classes == LABEL_WORDS
    assert plan.models[0].source()["label_words"] == LABEL_WORDS
    base = {"datasets": ["synthetic"], "experiments": [{"name": "predictions"}]}
    for model, message in [
        ({"encoder": "lstm", "label_words": ["a"]}, "remove label_words"),
        ({"hf": str(folder), "label_words": ["a"], "finetune": True}, "remove finetune"),
        ({"decoder": "llama", "label_words": ["a"]}, "remove label_words"),
    ]:
        with pytest.raises(PlanError, match=message):
            parse_plan({**base, "models": [model]})
