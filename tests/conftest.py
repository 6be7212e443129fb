"""Shared fixtures. Wheels are cached where the user's cache is (``ATTNEXPLAIN_CACHE`` or the
default), so repeated runs download nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from attnexplain import cli, load_dataset


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


def run_main(monkeypatch, capsys, *args: str) -> CliResult:
    """``attnexplain ARGS`` in this process (as :func:`~attnexplain.cli.main` runs it)."""
    monkeypatch.setattr(sys, "argv", ["attnexplain", *args])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    captured = capsys.readouterr()
    return CliResult(exit_.value.code, captured.out, captured.err)


def assert_one_error_line(result: CliResult, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="session")
def synthetic():
    """A small planted-rationale dataset (3000 texts)."""
    return load_dataset("synthetic", n=3000, seed=3)
