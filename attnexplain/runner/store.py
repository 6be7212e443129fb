"""The run directory: where units keep what they produced.

    RUN/
      manifest.json             the plan, provenance, status, per-unit timings (manifest.py)
      units/<key>/
        unit.json               the unit's kind, label and config (what its key hashes)
        checkpoint/             training units: the checkpoint folder (resumable mid-training)
        result.parquet          experiment units: the per-instance table
        work/                   experiment units that train models (W&P): resumable work
        done                    written last, atomically: the unit is finished (timing, metrics)

Every file is written atomically (temporary file + ``os.replace``), and ``done`` only after
the unit's output, so a crash, Ctrl-C or ``kill -9`` at any moment leaves each unit either
finished or not started over: never a finished-looking unit with half its output.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from attnexplain.atomic import atomic_write, write_json
from attnexplain.runner.units import Unit

DONE_FILE = "done"
UNIT_FILE = "unit.json"
RESULT_FILE = "result.parquet"
CHECKPOINT_FOLDER = "checkpoint"
WORK_FOLDER = "work"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class Finished:
    """What the ``done`` marker of a unit records: its key, how long it took to compute (in
    the invocation that computed it) and what it reports (training: dev / test metrics)."""

    key: str
    seconds: float
    finished_at: str
    details: dict[str, Any] = field(default_factory=dict)


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
        return (self.unit_dir(key) / DONE_FILE).is_file()

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

    def mark_done(self, finished: Finished) -> None:
        """The last write of a unit: from here on it counts as finished."""
        write_json(self.unit_dir(finished.key) / DONE_FILE, asdict(finished))

    def finished(self, key: str) -> Finished:
        """The record of a finished unit."""
        return Finished(**json.loads((self.unit_dir(key) / DONE_FILE).read_text()))

    def finished_keys(self) -> list[str]:
        """Keys of every finished unit in the directory, whichever plan it came from (none when
        the directory does not exist)."""
        return sorted(done.parent.name for done in self.root.glob(f"units/*/{DONE_FILE}"))

    def description(self, key: str) -> dict[str, Any] | None:
        """What :meth:`begin` wrote of ``key`` (kind, label, config); None where it is missing."""
        path = self.unit_dir(key) / UNIT_FILE
        return json.loads(path.read_text()) if path.is_file() else None
