"""Where a user's data file or model came from: content hashes that name it in unit keys,
checkpoints and manifests, so a changed file is new work and a moved one is not."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from attnexplain.data.sources import sha256_of
from attnexplain.errors import InvalidInputError

# the files of a transformers folder that decide what the model computes
MODEL_FILE_PATTERNS = ("*.json", "*.safetensors", "*.bin", "*.model", "*.txt", "*.tiktoken")


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of ``path``, remembered per process while its size and modification time
    stay the same."""
    path = Path(path).resolve()
    stat = path.stat()
    return _cached_sha256(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of(Path(path))


def folder_sha256(folder: str | os.PathLike) -> dict[str, str]:
    """``{file name: sha256}`` for the files of a transformers model folder (config, weights,
    tokenizer); :class:`InvalidInputError` when it has no ``config.json``."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise InvalidInputError(
            f"{folder} is not a transformers model folder: it has no config.json (save the "
            f"model with save_pretrained(folder), tokenizer included)"
        )
    names = sorted({p.name for pattern in MODEL_FILE_PATTERNS for p in folder.glob(pattern)})
    return {name: file_sha256(folder / name) for name in names}


def is_local_model(source: str) -> bool:
    """Whether ``source`` names a folder on this machine (else: a hub id)."""
    return Path(source).expanduser().is_dir()
