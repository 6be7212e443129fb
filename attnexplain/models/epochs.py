"""The epoch loop shared by every trainer: train, evaluate on dev, keep the best epoch's
checkpoint, save resumable state after each epoch (see :mod:`train_state`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from attnexplain.models.train_state import load_train_state, save_train_state


def run_epochs(
    out_dir: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    fingerprint: dict,
    epochs: int,
    train_epoch: Callable[[int], float],
    evaluate_dev: Callable[[], dict[str, float]],
    select_by: str,
    save_best: Callable[[int, dict[str, float]], None],
    progress: bool = True,
    after_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[int, list[dict[str, float]]]:
    """Run the epochs not yet finished in ``out_dir``; returns (best epoch, history).

    ``train_epoch(epoch)`` trains one epoch and returns its mean loss; ``save_best(epoch,
    dev_metrics)`` writes the checkpoint whenever dev ``select_by`` improves;
    ``after_epoch(epoch, dev_metrics)``, when given, runs after each epoch's evaluation.
    """
    state = load_train_state(out_dir, model, optimizer, fingerprint) or {
        "fingerprint": fingerprint,
        "epoch": 0,
        "best": -np.inf,
        "best_epoch": 0,
        "history": [],
    }
    if state["epoch"] and progress:
        tqdm.write(f"resuming after epoch {state['epoch']}", file=sys.stderr)
    for epoch in range(state["epoch"] + 1, epochs + 1):
        loss = train_epoch(epoch)
        dev = evaluate_dev()
        state["history"].append({"epoch": epoch, "train_loss": loss, **dev})
        if progress:
            scores = "  ".join(f"{k} {v:.4f}" for k, v in dev.items())
            tqdm.write(f"epoch {epoch}: loss {loss:.4f}  dev {scores}", file=sys.stderr)
        if after_epoch is not None:
            after_epoch(epoch, dev)
        if dev[select_by] > state["best"]:
            state["best"], state["best_epoch"] = dev[select_by], epoch
            save_best(epoch, dev)
        state["epoch"] = epoch
        save_train_state(out_dir, model, optimizer, state)
    return state["best_epoch"], state["history"]
