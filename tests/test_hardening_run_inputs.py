"""Plans a user can write that passed validation and then crashed, hung or were misread:
over-long names, impossible dataset options, huge seeds, duplicate keys, deep nesting, bytes
that are not UTF-8 and alias bombs; and ``run`` options that cannot work (``--workers 0``, a
Ray address nothing listens on).
Each is one ``error:`` line, before any work starts or any file is written."""

from __future__ import annotations

import time

import pytest
import yaml

from attnexplain.data.synthetic import make_synthetic
from attnexplain.errors import InvalidInputError
from attnexplain.runner import executors, load_plan
from attnexplain.runner.executors import CONNECT_TIMEOUT_S, RayExecutor
from tests.conftest import assert_one_error_line, run_main
from tests.test_runner import TINY

BOMB = """\
notes:
  - &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  - &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  - &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  - &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  - &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  - &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  - &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


def _plan_text(**changes) -> str:
    return yaml.safe_dump({**TINY, **changes}, sort_keys=False)


def _tiny_with_options(**options) -> str:
    return _plan_text(datasets=[{"name": "synthetic", "options": {"n": 600, **options}}])


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (_plan_text(name="x" * 300), ["name: a name of 300 characters", "at most 100"]),
        (_tiny_with_options(n=-5), ["datasets[0]", "n: should be greater than or equal to 1"]),
        (_tiny_with_options(seed=10**23), ["seed: should be less than or equal to 4294967295"]),
        (_plan_text(seeds=[10**23]), ["seeds[0]: should be less than or equal to 4294967295"]),
        (_plan_text() + "seeds: [2]\n", ["the key 'seeds' is given twice", "lines 11 and 19"]),
        ("a: " + "[" * 100_000 + "]" * 100_000 + "\n", ["nested more than 64 levels deep"]),
        (_plan_text() + BOMB, ["expands to more than 100,000 values"]),
    ],
    ids=[
        "long-name",
        "negative-n",
        "huge-option-seed",
        "huge-seed",
        "duplicate-key",
        "deep",
        "alias-bomb",
    ],
)
def test_a_plan_that_cannot_run_is_one_error_line(monkeypatch, capsys, tmp_path, text, fragments):
    path = tmp_path / "plan.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.perf_counter()
    result = run_main(monkeypatch, capsys, "run", str(path), "--out", str(tmp_path / "run"))
    assert time.perf_counter() - started < 10
    assert_one_error_line(result, f"plan {path}", *fragments)
    assert not (tmp_path / "run").exists()


def test_a_plan_that_is_not_utf8_is_one_error_line(monkeypatch, capsys, tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_bytes(_plan_text().encode() + "notes: [caf\u00e9]\n".encode("latin-1"))
    result = run_main(monkeypatch, capsys, "run", str(path), "--out", str(tmp_path / "run"))
    assert_one_error_line(result, "not UTF-8 text (byte 0xe9", "save it as UTF-8")


def test_aliases_within_the_budget_and_merge_keys_still_load(tmp_path):
    path = tmp_path / "plan.yaml"
    extra = "finetune: {<<: {epochs: 1}, batch_size: 4}\nnotes: [&n short, *n]\n"
    path.write_text(_plan_text() + extra, encoding="utf-8")
    plan = load_plan(path)
    assert plan.finetune.epochs == 1 and plan.finetune.batch_size == 4
    assert plan.notes == ["short", "short"]


def test_the_synthetic_generator_refuses_what_a_plan_refuses():
    with pytest.raises(InvalidInputError, match="n: should be greater than or equal to 1"):
        make_synthetic(n=-5)


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_workers_below_one_are_refused_before_the_run_starts(
    monkeypatch, capsys, tmp_path, workers
):
    plan = tmp_path / "plan.yaml"
    plan.write_text(_plan_text(), encoding="utf-8")
    out = tmp_path / "run"
    result = run_main(
        monkeypatch,
        capsys,
        "run",
        str(plan),
        "--out",
        str(out),
        "--executor",
        "processes",
        "--workers",
        workers,
    )
    assert_one_error_line(result, f"--workers must be at least 1, got {workers}")
    assert not out.exists()  # no manifest of a run that never started


def test_an_unreachable_ray_address_is_one_error_line_within_its_timeout(
    monkeypatch, capsys, tmp_path
):
    plan = tmp_path / "plan.yaml"
    plan.write_text(_plan_text(), encoding="utf-8")
    out = tmp_path / "run"
    started = time.perf_counter()
    result = run_main(
        monkeypatch,
        capsys,
        "run",
        str(plan),
        "--out",
        str(out),
        "--executor",
        "ray",
        "--address",
        "127.0.0.1:1",
    )
    assert time.perf_counter() - started < CONNECT_TIMEOUT_S
    assert_one_error_line(result, "cannot reach the Ray cluster at 127.0.0.1:1 within 10 s")
    assert not out.exists()


def test_a_local_ray_instance_is_started_on_the_loopback_interface(monkeypatch):
    import ray

    calls = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(executors, "_RayPool", lambda ray, work: None)  # no tasks to send
    assert list(RayExecutor().map(lambda unit: unit, [])) == []
    assert calls == [
        {"log_to_driver": True, "include_dashboard": False, "_node_ip_address": "127.0.0.1"}
    ]
