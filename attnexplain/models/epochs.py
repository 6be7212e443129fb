"""The epoch loop shared by every trainer: train, evaluate on dev, keep the best epoch's
checkpoint, save resumable state after each epoch (see :mod:`train_state`), and the pass over
one epoch's batches that every trainer's loss plugs into."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from attnexplain.data.batching import Batch
from attnexplain.models.train_state import load_train_state, save_train_state


def fit_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[Batch],
    batch_loss: Callable[[Batch], torch.Tensor],
    progress: bool = True,
    desc: str = "epoch",
    max_grad_norm: float | None = None,
) -> float:
    """One optimisation pass: for each batch, ``batch_loss(batch)`` (the mean over the
    batch's instances) is minimised, the gradient's norm clipped to ``max_grad_norm`` where
    given; returns the mean loss per instance."""
    model.train()
    batches = list(batches)
    total, count = 0.0, 0
    for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
        optimizer.zero_grad()
        loss = batch_loss(batch)
        loss.backward()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        total += loss.item() * len(batch)
        count += len(batch)
    return total / max(count, 1)


def run_epochs(
    out_dir: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    fingerprint: dict,
    epochs: int,
    train_epoch: Callable[[int], float],
    evaluate_dev: Callable[[], dict[str, float]],
    select_by: str | None,
    save_best: Callable[[int, dict[str, float]], None],
    progress: bool = True,
    after_epoch: Callable[[int, dict[str, float]], None] | None = None,
    minimise: bool = False,
    patience: int | None = None,
) -> tuple[int, list[dict[str, float]]]:
    """Run the epochs not yet finished in ``out_dir``; returns (best epoch, history).

    ``train_epoch(epoch)`` trains one epoch and returns its mean loss; ``save_best(epoch,
    dev_metrics)`` writes the checkpoint whenever ``select_by`` improves: a key of the dev
    metrics or ``train_loss``, larger is better unless ``minimise``; None keeps the last
    epoch. ``patience``: stop after that many epochs without improvement.
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
    sign = -1.0 if minimise else 1.0
    for epoch in range(state["epoch"] + 1, epochs + 1):
        if patience is not None and epoch - 1 - state["best_epoch"] >= patience:
            if progress:
                tqdm.write(f"no improvement for {patience} epochs: stopping", file=sys.stderr)
            break
        loss = train_epoch(epoch)
        dev = evaluate_dev()
        entry = {"epoch": epoch, "train_loss": loss, **dev}
        state["history"].append(entry)
        if progress:
            scores = "  ".join(f"{k} {v:.4f}" for k, v in dev.items())
            tqdm.write(
                f"epoch {epoch}: loss {loss:.4f}  {'dev ' if dev else ''}{scores}", file=sys.stderr
            )
        if after_epoch is not None:
            after_epoch(epoch, dev)
        score = np.inf if select_by is None else sign * entry[select_by]
        if score > state["best"] or select_by is None:
            state["best"], state["best_epoch"] = score, epoch
            save_best(epoch, dev)
        state["epoch"] = epoch
        save_train_state(out_dir, model, optimizer, state)
    return state["best_epoch"], state["history"]
