"""`attnexplain audit` end to end: wall time of the command (report included), then per
analysis the seconds, instances per second and peak memory. Usage:

    python benchmarks/audit.py minilm [--model FOLDER] [--instances 200]
    python benchmarks/audit.py bert-base [--instances 50]

``minilm``: MiniLM fine-tuned on 2000 rt-sentences (the league's recipe; or ``--model``, a
folder saved before), audited on the first ``--instances`` test sentences as a user does
(``attnexplain audit FOLDER --data FILE``). Target: at most 3 minutes on 2 cores.

``bert-base``: a BERT-base-size random-init classifier (768 wide, 12 layers, 12 heads) on
texts of 512 wordpieces: the memory a long input needs, measured. Leave-one-out costs one
forward pass per token, so the analyses built on it (J&W's leave-one-out correlation,
Serrano & Smith's flip fraction, the league) take about ten minutes per 512-token instance on
2 cores: this case runs the others (predictions, permutation, adversarial attention,
Serrano & Smith's zero-top, and attention against the J&W gradient) on every text.

``minilm``: pass 1 times the command; pass 2 runs the same plan with a fresh process per
unit, so each analysis's peak resident memory is its own (imports and data included).
``bert-base`` runs once, a fresh process per analysis. Run benchmarks by themselves: other
work on the machine slows the units.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from attnexplain.audit import audit_plan
from attnexplain.runner import RunResult, run_plan
from attnexplain.runner.executors import ProcessExecutor
from attnexplain.runner.store import RunStore

LONG_WORDS = 600  # words per long text: more than 512 wordpieces, so every text is truncated
LONG_PARAMS = {"jain_wallace.correlation": {"methods": ["jw-gradient"]}}
LONG_BATTERY = (
    "predictions",
    "jain_wallace.correlation",
    "jain_wallace.permutation",
    "jain_wallace.adversarial",
    "serrano_smith.zero_top",
)


def fine_tuned_minilm(scratch: Path) -> Path:
    """MiniLM fine-tuned on 2000 rt-sentences (dev 500), seed 10: the league's model; its
    checkpoint folder is a plain transformers classifier folder."""
    from attnexplain.runner.plan import parse_plan

    plan = parse_plan(
        {
            "name": "minilm-rt",
            "datasets": [{"name": "rt-sentences", "max_rows": {"train": 2000, "dev": 500}}],
            "models": [{"pretrained": "minilm"}],
            "seeds": [10],
            "experiments": [{"name": "predictions"}],
            "max_instances": 1,
        }
    )
    result = run_plan(plan, scratch / "minilm-rt", progress=False)
    training = next(unit for unit in result.units if unit.kind == "train")
    return RunStore(result.directory).checkpoint_dir(training.key)


def rt_sentences_file(path: Path, instances: int) -> Path:
    from attnexplain import load_dataset

    dataset = load_dataset("rt-sentences")
    test = dataset.test.iloc[:instances]
    labels = test["label"].map(dict(enumerate(dataset.classes)))
    pd.DataFrame({"text": test["text"], "label": labels}).to_csv(path, index=False)
    return path


def bert_base_folder(folder: Path, words: list[str]) -> Path:
    """A random-init BERT-base-size classifier and a word-level tokenizer of ``words``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {token: i for i, token in enumerate([*special, *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=512,
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), id2label={0: "negative", 1: "positive"}, pad_token_id=0
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def long_texts_file(path: Path, words: list[str], count: int) -> Path:
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, LONG_WORDS)) for _ in range(count)]
    labels = rng.choice(["negative", "positive"], count)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return path


def run_audit(model: Path, data: Path, out: Path, instances: int) -> float:
    """Wall seconds of ``attnexplain audit`` as a user types it."""
    command = [sys.executable, "-m", "attnexplain", "audit", str(model), "--data", str(data)]
    command += ["--instances", str(instances), "--out", str(out), "--device", "cpu"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the audit failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def unit_rows(result: RunResult) -> pd.DataFrame:
    store = RunStore(result.directory)
    rows = []
    for unit in result.units:
        finished = store.finished(unit.key)
        name = getattr(unit, "experiment", "import the model")
        rows.append(
            {
                "analysis": f"{name} ({unit.training.model.label})"
                if unit.kind != "train"
                else name,
                "seconds": finished.seconds,
                "instances": finished.details.get("instances"),
                "peak MiB": finished.details.get("peak_rss_mb"),
            }
        )
    return pd.DataFrame(rows)


def measure(
    model: Path, data: Path, scratch: Path, instances: int, long_inputs: bool
) -> tuple[float, pd.DataFrame]:
    """Wall seconds and the per-analysis table (seconds, instances / s, peak MiB). The MiniLM
    case times the command, then takes each analysis's peak from a fresh-process pass; the
    long-input case runs its battery once, a fresh process per analysis, which gives both."""
    plan = audit_plan(str(model), data, instances=instances)
    fresh_executor = ProcessExecutor(1, fresh=True)
    if long_inputs:  # the battery whose cost grows linearly with the tokens
        plan = plan.model_copy(
            update={
                "experiments": [
                    entry.model_copy(update={"params": LONG_PARAMS.get(entry.name, {})})
                    for entry in plan.experiments
                    if entry.name in LONG_BATTERY
                ]
            }
        )
        started = time.perf_counter()
        fresh = run_plan(plan, scratch / "fresh", progress=False, executor=fresh_executor)
        table = unit_rows(fresh)
        wall = time.perf_counter() - started
    else:
        wall = run_audit(model, data, scratch / "timed", instances)
        table = unit_rows(RunResult.load(scratch / "timed"))
        fresh = run_plan(plan, scratch / "fresh", progress=False, executor=fresh_executor)
        table["peak MiB"] = unit_rows(fresh)["peak MiB"].to_numpy()
    table["instances/s"] = table["instances"] / table["seconds"]
    return wall, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", choices=["minilm", "bert-base"])
    parser.add_argument("--model", type=Path, default=None, help="minilm: a saved folder")
    parser.add_argument("--instances", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        if args.case == "minilm":
            instances = args.instances or 200
            model = args.model or fine_tuned_minilm(scratch)
            data = rt_sentences_file(scratch / "rt-sentences.csv", instances)
            wall, table = measure(model, data, scratch / "audit", instances, False)
            what = f"MiniLM fine-tuned on rt-sentences, {instances} test sentences"
        else:
            instances = args.instances or 50
            words = [f"w{i}" for i in range(5000)]
            model = bert_base_folder(scratch / "bert-base", words)
            data = long_texts_file(scratch / "long.csv", words, instances)
            wall, table = measure(model, data, scratch / "audit", instances, True)
            what = f"BERT-base-size random init, {instances} texts of 512 wordpieces"
    print(what)
    label = "the audit command, report included" if args.case == "minilm" else "the analyses"
    print(f"wall time ({label}): {wall:.1f} s")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
