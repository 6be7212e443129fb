"""Resumable training: after every epoch the model, the optimizer and the progress so far are
saved next to the checkpoint, so a run that crashes or is interrupted continues from its last
finished epoch and ends with exactly the weights an uninterrupted run would have (batch order
is a function of seed and epoch, and the models have no dropout)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from attnexplain.atomic import atomic_write, write_json
from attnexplain.errors import CheckpointError

STATE_FILE = "resume.safetensors"
PROGRESS_FILE = "resume.json"


def save_train_state(
    directory: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: dict,
) -> None:
    """Write weights + optimizer tensors, then the JSON progress (last, so it marks the pair as
    complete). ``progress`` must hold ``fingerprint`` and ``epoch``."""
    directory = Path(directory)
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    for index, slots in optimizer.state_dict()["state"].items():
        tensors.update({f"optim.{index}.{key}": value.contiguous() for key, value in slots.items()})
    atomic_write(directory / STATE_FILE, lambda tmp: save_file(tensors, str(tmp)))
    write_json(directory / PROGRESS_FILE, progress)


def load_train_state(
    directory: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    fingerprint: dict,
) -> dict | None:
    """Restore an unfinished run in ``directory`` into ``model`` and ``optimizer``.

    Returns its progress dict, or None when there is nothing to resume. An unfinished run with
    other settings is an error rather than silently overwritten.
    """
    directory = Path(directory)
    if not (directory / PROGRESS_FILE).is_file() or not (directory / STATE_FILE).is_file():
        return None
    progress = _read_progress(directory / PROGRESS_FILE)
    if progress.get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"{directory} holds an unfinished training run with other settings; pass another "
            f"--out, or delete {directory / PROGRESS_FILE} to start over"
        )
    tensors = load_file(str(directory / STATE_FILE))
    model.load_state_dict(
        {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    )
    state = optimizer.state_dict()
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            slots.setdefault(int(index), {})[key] = value
    state["state"] = slots
    optimizer.load_state_dict(state)
    return progress


def _read_progress(path: Path) -> dict:
    """The progress of an unfinished run; :class:`CheckpointError` for a damaged file."""
    try:
        progress = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        progress = None
    if not isinstance(progress, dict):
        raise CheckpointError(
            f"{path} is damaged (not a JSON object), so the unfinished run cannot resume: "
            f"delete it to start over"
        )
    return progress


def clear_train_state(directory: str | os.PathLike) -> None:
    for name in (PROGRESS_FILE, STATE_FILE):
        (Path(directory) / name).unlink(missing_ok=True)
