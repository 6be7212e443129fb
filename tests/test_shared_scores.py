"""Scores shared between the experiments of a run: computed once per checkpoint folder and
batch, recomputed when the folder is written again, never shared between different batches,
sites or models built in memory."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import torch

import attnexplain.experiments.shared_scores as shared
from attnexplain import load_checkpoint
from attnexplain.attribution import attribute
from attnexplain.data import collate
from attnexplain.experiments.jain_wallace import run_correlation
from attnexplain.experiments.league import run_league
from attnexplain.models.checkpoint import CONFIG_FILE
from tests.test_hardening_data import tiny_checkpoint

WORDS = ["good", "bad", "film", "plot", "dull", "fine"]


@pytest.fixture
def counted(monkeypatch):
    """The methods ``method_scores`` computed, in order; nothing remembered before."""
    monkeypatch.setattr(shared, "_remembered", type(shared._remembered)())
    calls: list[str] = []

    def counting(model, batch, method, **options):
        calls.append(method)
        return attribute(model, batch, method, **options)

    monkeypatch.setattr(shared, "attribute", counting)
    return calls


def test_a_batch_is_scored_once_per_checkpoint_folder(tmp_path, counted):
    folder = tiny_checkpoint(tmp_path / "model", WORDS)
    checkpoint = load_checkpoint(folder)
    batch = collate([checkpoint.pipeline.encode(t) for t in ["good film", "dull plot fine"]])
    first = shared.method_scores(checkpoint, batch, "leave-one-out")
    again = shared.method_scores(load_checkpoint(folder), batch, "leave-one-out")
    assert counted == ["leave-one-out"]
    assert torch.equal(first, again)
    assert torch.equal(first, attribute(checkpoint.model, batch, "leave-one-out").scores)
    first.zero_()  # callers get copies
    assert torch.equal(again, shared.method_scores(checkpoint, batch, "leave-one-out"))

    other = collate([checkpoint.pipeline.encode(t) for t in ["good film", "bad plot"]])
    shared.method_scores(checkpoint, other, "leave-one-out")
    shared.method_scores(checkpoint, batch, "attention")  # not a shared method
    shared.method_scores(checkpoint, batch, "attention")
    assert counted == ["leave-one-out", "leave-one-out", "attention", "attention"]


def test_a_folder_written_again_and_a_model_in_memory_are_scored_afresh(tmp_path, counted):
    folder = tiny_checkpoint(tmp_path / "model", WORDS)
    checkpoint = load_checkpoint(folder)
    batch = collate([checkpoint.pipeline.encode("good film")])
    shared.method_scores(checkpoint, batch, "jw-gradient")
    config = folder / CONFIG_FILE
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # written again
    shared.method_scores(load_checkpoint(folder), batch, "jw-gradient")
    in_memory = load_checkpoint(folder)
    in_memory.origin = None
    shared.method_scores(in_memory, batch, "jw-gradient")
    shared.method_scores(in_memory, batch, "jw-gradient")
    assert counted == ["jw-gradient"] * 4


def test_the_league_reuses_the_correlations_references_with_the_same_numbers(tmp_path, counted):
    checkpoint = load_checkpoint(tiny_checkpoint(tmp_path / "model", WORDS))
    texts = ["good film", "dull plot fine film", "bad bad plot", "fine"]
    frame = pd.DataFrame(
        {"text": texts, "tokens": [t.split() for t in texts], "label": [1, 0, 0, 1]}
    )
    params = {"batch_size": 2, "methods": ["jw-gradient", "leave-one-out"]}
    run_correlation(checkpoint, frame, params, progress=False)
    assert counted == ["jw-gradient", "leave-one-out"] * 2
    shared_run = run_league(checkpoint, frame, {"batch_size": 2, "methods": ["attention"]}, False)
    assert counted.count("leave-one-out") == 2  # both batches came from the correlation
    assert len(shared._remembered) == 4  # 2 batches x 2 methods
    shared._remembered.clear()
    fresh_run = run_league(checkpoint, frame, {"batch_size": 2, "methods": ["attention"]}, False)
    assert counted.count("leave-one-out") == 4
    pd.testing.assert_frame_equal(shared_run, fresh_run)
