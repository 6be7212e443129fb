"""Shared fixtures. Wheels are cached where the user's cache is (``ATTNEXPLAIN_CACHE`` or the
default), so repeated runs download nothing."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass

import pytest

from attnexplain import cli, load_dataset


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(
    *args: str,
    cwd: str | os.PathLike | None = None,
    fresh: bool = False,
    stdin: str | None = None,
) -> CliResult:
    """``attnexplain ARGS`` as a user types it, from ``cwd``: its exit code, stdout and stderr.

    By default it runs in this process, through the same :func:`attnexplain.cli.main` that
    ``python -m attnexplain`` calls, with the arguments, the working directory and both
    streams its own, and warnings shown as a fresh process would show them (this spares the
    ~5 s import of torch and transformers per call). ``fresh`` runs
    ``python -m attnexplain ARGS`` in a new process, for what only a process shows: how it
    starts, what it imports, its exit by a signal; ``stdin`` (text on the command's standard
    input) runs it there too.
    """
    if fresh or stdin is not None:
        done = subprocess.run(
            [sys.executable, "-m", "attnexplain", *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=600,
        )
        return CliResult(done.returncode, done.stdout, done.stderr)
    out, err, started_in, argv = io.StringIO(), io.StringIO(), os.getcwd(), sys.argv
    code: int | str | None = 0
    try:
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("default")  # each warning shown again, as in a new process
            sys.argv = ["attnexplain", *args]
            os.chdir(cwd or started_in)
            try:
                cli.main()
            except SystemExit as exit_:
                code = exit_.code
    finally:
        sys.argv = argv
        os.chdir(started_in)
    if isinstance(code, str):  # sys.exit("message"), as Python prints it
        err.write(code + "\n")
        code = 1
    return CliResult(code or 0, out.getvalue(), err.getvalue())


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
