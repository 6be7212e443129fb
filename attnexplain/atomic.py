"""Atomic file writes: a crash or Ctrl-C leaves the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then move the temporary file over ``path``."""
    return atomic_write_all({Path(path): write})[0]


def atomic_write_all(writers: dict[Path, Callable[[Path], None]]) -> list[Path]:
    """Write every file of ``writers`` (path -> ``write(tmp_path)``) to a temporary file,
    then, once all are written, move each over its path: a failure while writing leaves
    every old file as it was (files that belong together, like a report's HTML and PDF, are
    never a new one beside an old one). Returns the paths."""
    temporary: dict[Path, str] = {}
    try:
        for path, write in writers.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(handle)
            temporary[path] = tmp
            write(Path(tmp))
            # mkstemp (and some writers) make 0600; give the mode a plain open() would give
            os.chmod(tmp, 0o666 & ~_umask())
        for path, tmp in temporary.items():
            os.replace(tmp, path)
    finally:
        for tmp in temporary.values():
            if os.path.exists(tmp):
                os.unlink(tmp)
    return list(writers)


def stale_temporaries(path: Path) -> list[Path]:
    """Temporary files :func:`atomic_write` left beside ``path`` when it was killed."""
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def write_json(path: str | os.PathLike, payload: object) -> Path:
    text = json.dumps(payload, indent=2, sort_keys=True)
    return atomic_write(path, lambda tmp: tmp.write_text(text + "\n"))
