"""Devices: one place resolves ``--device``; runs compute inside its scope; no code below the
runner creates a tensor on a fixed device. The CUDA path cannot run on this machine (no GPU):
these tests check the CPU path, the errors, and that the source holds no CPU-only creation
that a CUDA run would trip over."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

from attnexplain.device import computing_on, draw, resolve_device, resolve_precision
from attnexplain.errors import InvalidInputError
from attnexplain.runner import run_plan
from attnexplain.runner.plan import parse_plan

PACKAGE = Path(__file__).resolve().parents[1] / "attnexplain"


def test_auto_and_cpu_resolve_here_and_unknown_or_unseen_devices_are_clear_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type in (expected, "mps")
    with pytest.raises(InvalidInputError, match=r"unknown device 'tpu'.*auto, cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match=r"'cuda:1' is not available.*sees cpu"):
            resolve_device("cuda:1")
    with pytest.raises(InvalidInputError, match="unknown precision 'fp8'"):
        resolve_precision("fp8")


def test_the_scope_sets_and_restores_the_default_device_and_autocast():
    before = torch.get_default_device()
    with computing_on(torch.device("cpu"), "bf16"):
        assert torch.is_autocast_enabled("cpu")
        product = torch.ones(2, 3) @ torch.ones(3, 2)
        assert product.dtype == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")
    assert torch.get_default_device() == before
    with pytest.raises(RuntimeError), computing_on(torch.device("cpu")):
        raise RuntimeError("a failing unit")
    assert torch.get_default_device() == before


def test_seeded_draws_do_not_depend_on_the_device_they_land_on():
    first = draw(torch.rand, (3, 4), torch.Generator().manual_seed(1), torch.device("cpu"))
    second = draw(torch.rand, (3, 4), torch.Generator().manual_seed(1), torch.device("meta"))
    assert second.device.type == "meta" and second.shape == first.shape
    again = draw(torch.rand, (3, 4), torch.Generator().manual_seed(1), torch.device("cpu"))
    assert torch.equal(first, again)


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            yield node


def test_no_code_below_the_runner_creates_tensors_on_a_fixed_device():
    """A CUDA run differs from a CPU run only in the device string: tensors are made on
    torch's default device (the run's), seeded draws go through attnexplain.device, and every
    tensor turned into numpy goes through its to_numpy (any device, any precision)."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "device.py":
            continue
        tree = ast.parse(path.read_text())
        where = path.relative_to(PACKAGE.parent)
        for call in _calls(tree):
            line = f"{where}:{call.lineno}"
            if call.func.attr == "numpy":
                problems.append(f"{line}: .numpy() instead of attnexplain.device.to_numpy")
            if call.func.attr == "Generator":
                problems.append(f"{line}: a generator outside attnexplain.device")
            for keyword in call.keywords:
                value = keyword.value
                if (
                    keyword.arg == "device"
                    and isinstance(value, ast.Constant)
                    and isinstance(value.value, str)
                ):
                    problems.append(f"{line}: device={value.value!r} fixed")
            if call.func.attr == "cuda":
                problems.append(f"{line}: .cuda()")
    assert problems == []


def test_every_unit_records_the_device_it_ran_on(tmp_path):
    plan = parse_plan(
        {
            "name": "device",
            "datasets": [{"name": "synthetic", "options": {"n": 200, "seed": 1}}],
            "models": [{"encoder": "average", "hidden_size": 16}],
            "seeds": [0],
            "max_instances": 8,
            "train": {"epochs": 1, "embeddings": "random", "embed_dim": 16},
            "experiments": [{"name": "jain_wallace.permutation", "params": {"permutations": 5}}],
        }
    )
    if not torch.cuda.is_available():  # a device this machine lacks: refused before any work
        with pytest.raises(InvalidInputError, match="not available"):
            run_plan(plan, tmp_path / "gpu", progress=False, device="cuda")
        assert not (tmp_path / "gpu" / "units").exists()
    run_plan(plan, tmp_path / "run", progress=False, device="cpu", precision="bf16")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert {unit["details"]["device"] for unit in manifest["units"]} == {"cpu"}
