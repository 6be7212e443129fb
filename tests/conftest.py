"""Shared fixtures. Wheels are cached where the user's cache is (``ATTNEXPLAIN_CACHE`` or the
default), so repeated runs download nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from attnexplain import load_dataset


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: str | os.PathLike | None = None) -> CliResult:
    """Run ``python -m attnexplain ARGS`` in a subprocess, as a user would."""
    done = subprocess.run(
        [sys.executable, "-m", "attnexplain", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="session")
def synthetic():
    """A small planted-rationale dataset (3000 texts)."""
    return load_dataset("synthetic", n=3000, seed=3)
