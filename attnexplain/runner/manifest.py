"""``manifest.json``: what a run directory holds and how it came to be.

It records the validated plan, the package versions, the git revision of the code, the seeds,
the run's status (``running``, ``complete``, ``interrupted``, ``failed``) and every unit with
its status and timing. It is rewritten atomically after every unit, so even after ``kill -9``
it lists each unit that finished (a killed run stays ``running`` until it is run again).
A unit found damaged when the run started carries ``damaged``: why it was computed again.
Reading a manifest back (:func:`read_manifest`) validates it like a plan.
"""

from __future__ import annotations

import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from attnexplain.atomic import write_json
from attnexplain.errors import InvalidInputError
from attnexplain.runner.executors import UnitFailure
from attnexplain.runner.plan import Plan
from attnexplain.runner.store import Finished, RunStore
from attnexplain.runner.units import Unit
from attnexplain.schema import Strict, read_json

PACKAGES = ("attnexplain", "torch", "transformers", "captum")
STATUSES = ("running", "complete", "interrupted", "failed")


class _Record(Strict):
    # what the code reads is checked; the rest (timings, versions) is kept as it is
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)


class UnitRecord(_Record):
    """A unit's entry in the manifest."""

    key: str
    label: str = ""
    status: str
    reused: bool = False
    seconds: float | None = None


class GitRecord(_Record):
    revision: str
    dirty: bool


class ManifestRecord(_Record):
    """What :func:`read_manifest` checks of a ``manifest.json``."""

    plan: dict[str, Any]
    plan_file: str | None = None
    seeds: list[int] = Field(default_factory=list)
    versions: dict[str, str | None] = Field(default_factory=dict)
    git: GitRecord | None = None
    status: str
    error: str | None = None
    units: list[UnitRecord]


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The ``manifest.json`` at ``path`` as a dict, validated; :class:`InvalidInputError`
    naming the file and the field when it is not one attnexplain wrote."""
    record = read_json(
        path,
        ManifestRecord,
        InvalidInputError,
        "it is not a manifest attnexplain wrote (run the plan into this directory again to "
        "rewrite it)",
    )
    return record.model_dump()


def now() -> str:
    """The time as ISO 8601 in UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages results depend on (None: not installed)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision() -> dict[str, Any] | None:
    """The commit of the source tree this package runs from and whether it has uncommitted
    changes; None for an installed package or without git."""
    source = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=source, capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout.strip()

    try:
        revision = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"revision": revision, "dirty": dirty}


class Manifest:
    """The manifest of one invocation of a plan in a run directory, written as soon as it is
    made (every unit ``pending`` but those finished before, which are ``done`` and
    ``reused``)."""

    def __init__(
        self,
        store: RunStore,
        plan: Plan,
        units: list[Unit],
        plan_file: str | None,
        damaged: dict[str, str] | None = None,
    ) -> None:
        self.store = store
        self.payload: dict[str, Any] = {
            "plan": plan.model_dump(mode="json", exclude_none=True),
            "plan_file": plan_file,
            "seeds": plan.seeds,
            "versions": package_versions(),
            "python": platform.python_version(),
            "git": git_revision(),
            "status": "running",
            "started_at": now(),
            "finished_at": None,
            "error": None,
            "units": [self._entry(unit, (damaged or {}).get(unit.key)) for unit in units],
        }
        self._positions = {unit.key: i for i, unit in enumerate(units)}
        self._write()

    def _entry(self, unit: Unit, damage: str | None) -> dict[str, Any]:
        entry = {
            "key": unit.key,
            "path": str(self.store.unit_dir(unit.key).relative_to(self.store.root)),
            "kind": unit.kind,
            "label": unit.label,
            "depends_on": list(unit.depends_on),
            "status": "pending",
            "reused": False,
            "seconds": None,
            "finished_at": None,
            "details": {},
            **({"damaged": damage} if damage else {}),
        }
        if self.store.is_done(unit.key):
            entry |= self._finished(self.store.finished(unit.key)) | {"reused": True}
        return entry

    @staticmethod
    def _finished(finished: Finished) -> dict[str, Any]:
        return {
            "status": "done",
            "seconds": finished.seconds,
            "finished_at": finished.finished_at,
            "details": finished.details,
        }

    def record(self, finished: Finished, reused: bool = False) -> None:
        """A unit finished in this invocation (``reused``: by another invocation meanwhile)."""
        entry = self.payload["units"][self._positions[finished.key]]
        entry |= self._finished(finished) | {"reused": reused}
        self._write()

    def record_failure(self, failure: UnitFailure) -> None:
        """A unit failed in this invocation (or did not run because a unit it needs failed)."""
        status = "failed" if failure.ran else "not run"
        self.payload["units"][self._positions[failure.key]] |= {
            "status": status,
            "error": failure.error,
        }
        self._write()

    def label(self, key: str) -> str:
        return self.payload["units"][self._positions[key]]["label"]

    def close(self, status: str, error: str | None = None) -> None:
        """The invocation ended: ``complete``, ``interrupted`` or ``failed`` (with ``error``)."""
        self.payload |= {"status": status, "finished_at": now(), "error": error}
        self._write()

    def _write(self) -> None:
        write_json(self.store.manifest_path, self.payload)
