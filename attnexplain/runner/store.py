"""The run directory: where units keep what they produced.

    RUN/
      manifest.json             the plan, provenance, status, per-unit timings (manifest.py)
      units/<key>/
        unit.json               the unit's kind, label and config (what its key hashes)
        checkpoint/             training units: the checkpoint folder (resumable mid-training)
        result.parquet          experiment units: the per-instance table
        work/                   experiment units that train models (W&P): resumable work
        .lock                   held by the process computing the unit (who: inside)
        done                    written last, atomically: the unit is finished (timing, metrics,
                                size and SHA-256 of every output file)

Every file is written atomically (temporary file + ``os.replace``), and ``done`` only after
the unit's output, so a crash, Ctrl-C or ``kill -9`` at any moment leaves each unit either
finished or not started over: never a finished-looking unit with half its output. A unit
whose files were changed afterwards (truncated, deleted, overwritten) no longer matches its
``done`` record: :meth:`RunStore.damage` says how, and the runner computes it again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field

from attnexplain.atomic import atomic_write, write_json
from attnexplain.errors import AttnExplainError
from attnexplain.runner.units import Unit
from attnexplain.schema import Strict, read_json

DONE_FILE = "done"
UNIT_FILE = "unit.json"
RESULT_FILE = "result.parquet"
CHECKPOINT_FOLDER = "checkpoint"
WORK_FOLDER = "work"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".lock"


class DamagedUnitError(AttnExplainError):
    """A finished unit whose ``done`` record cannot be read or whose files do not match it."""


class Finished(Strict):
    """What the ``done`` marker of a unit records: its key, how long it took to compute (in
    the invocation that computed it), what it reports (training: dev / test metrics), the
    ``outputs`` it wrote (path in the unit's folder -> ``SIZE:SHA256``; None in records of
    attnexplain before they were kept) and the ``run`` (invocation) that computed it."""

    model_config = Strict.model_config | {"strict": False}  # JSON has no tuples

    key: str
    seconds: float
    finished_at: str
    details: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, str] | None = None
    run: str = ""


def _fingerprint(path: Path) -> str:
    """``SIZE:SHA256`` of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{path.stat().st_size}:{digest.hexdigest()}"


@dataclass(frozen=True)
class RunStore:
    """Paths and reads / writes of one run directory."""

    root: Path

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_FILE

    def unit_dir(self, key: str) -> Path:
        return self.root / "units" / key

    def checkpoint_dir(self, key: str) -> Path:
        return self.unit_dir(key) / CHECKPOINT_FOLDER

    def work_dir(self, key: str) -> Path:
        """Where an experiment unit keeps work that must survive an interruption (models it
        trains resume from here)."""
        return self.unit_dir(key) / WORK_FOLDER

    def result_path(self, key: str) -> Path:
        return self.unit_dir(key) / RESULT_FILE

    def is_done(self, key: str) -> bool:
        """Whether ``key`` has a ``done`` marker (see :meth:`damage` for whether it holds)."""
        return (self.unit_dir(key) / DONE_FILE).is_file()

    def outputs(self, key: str) -> list[Path]:
        """The files ``key`` produced: every file of its folder but ``done``, ``unit.json``
        (which says who worked on it) and hidden ones (the lock, temporary files)."""
        folder = self.unit_dir(key)
        return sorted(
            path
            for path in folder.rglob("*")
            if path.is_file()
            and path.relative_to(folder).parts[0] not in (DONE_FILE, UNIT_FILE)
            and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        )

    def damage(self, key: str) -> str | None:
        """Why the finished unit ``key`` cannot be trusted (its ``done`` record unreadable, an
        output missing or different from what the record says), or None when it holds (or
        is not finished). Records without output fingerprints (older attnexplain) are
        trusted as they are."""
        if not self.is_done(key):
            return None
        try:
            finished = self.finished(key)
        except DamagedUnitError as exc:
            return str(exc)
        folder = self.unit_dir(key)
        for name, expected in (finished.outputs or {}).items():
            path = folder / name
            if not path.is_file():
                return f"{name} is missing"
            size = int(expected.split(":")[0])
            if path.stat().st_size != size:
                return f"{name} has {path.stat().st_size:,} bytes, {size:,} when it was written"
            if _fingerprint(path) != expected:
                return f"{name} changed after it was written (its SHA-256 differs)"
        return None

    def intact(self, key: str) -> bool:
        """Whether ``key`` is finished and its files are as it wrote them."""
        return self.is_done(key) and self.damage(key) is None

    def discard(self, key: str) -> None:
        """Delete what ``key`` wrote, so that it is computed from the start again."""
        folder = self.unit_dir(key)
        (folder / DONE_FILE).unlink(missing_ok=True)  # first: never finished-looking
        for path in sorted(folder.iterdir()) if folder.is_dir() else ():
            if path.name == LOCK_FILE:
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()

    @contextmanager
    def lock(self, key: str, label: str = "") -> Iterator[None]:
        """Hold ``key``'s lock while computing it, so that two runs of one directory (or two
        workers) never compute a unit twice. If another process holds it, say who on stderr
        and wait for it."""
        path = self.unit_dir(key) / LOCK_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                print(
                    f"waiting: {holder} is computing {label or key} in {self.root}",
                    file=sys.stderr,
                    flush=True,
                )
                fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def begin(self, unit: Unit) -> None:
        """Describe ``unit`` in its folder, so that a folder explains itself, and say which
        process on which host works on it (``worker``; on a cluster, where to look)."""
        payload = {
            "key": unit.key,
            "kind": unit.kind,
            "label": unit.label,
            "config": unit.config,
            "worker": {"host": socket.gethostname(), "pid": os.getpid()},
        }
        write_json(self.unit_dir(unit.key) / UNIT_FILE, payload)

    def write_result(self, key: str, frame: pd.DataFrame) -> None:
        atomic_write(self.result_path(key), lambda tmp: frame.to_parquet(tmp, index=False))

    def read_result(self, key: str) -> pd.DataFrame:
        return pd.read_parquet(self.result_path(key))

    def mark_done(self, finished: Finished) -> Finished:
        """The last write of a unit: from here on it counts as finished. Records the size and
        SHA-256 of each of its outputs; returns the record written."""
        folder = self.unit_dir(finished.key)
        outputs = {
            path.relative_to(folder).as_posix(): _fingerprint(path)
            for path in self.outputs(finished.key)
        }
        finished = finished.model_copy(update={"outputs": outputs})
        write_json(folder / DONE_FILE, finished.model_dump(mode="json"))
        return finished

    def finished(self, key: str) -> Finished:
        """The record of a finished unit; :class:`DamagedUnitError` when it is unreadable."""
        path = self.unit_dir(key) / DONE_FILE
        record = read_json(path, Finished, DamagedUnitError, "the unit is damaged")
        if record.key != key:
            raise DamagedUnitError(f"{path} is the record of unit {record.key}, not of {key}")
        return record

    def finished_keys(self) -> list[str]:
        """Keys of every finished unit in the directory, whichever plan it came from (none when
        the directory does not exist)."""
        return sorted(done.parent.name for done in self.root.glob(f"units/*/{DONE_FILE}"))

    def description(self, key: str) -> dict[str, Any] | None:
        """What :meth:`begin` wrote of ``key`` (kind, label, config); None where it is missing."""
        path = self.unit_dir(key) / UNIT_FILE
        try:
            return json.loads(path.read_text()) if path.is_file() else None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
