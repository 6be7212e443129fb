"""The benchmark scripts still run: each once, at a toy size (their timings are not checked)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_jain_wallace_batching_prints_a_speed_up_per_batch_size():
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "jain_wallace_batching.py"),
            *("--instances", "4", "--steps", "2", "--length", "30", "--repeats", "1"),
            *("--batch-sizes", "2", "4"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = re.findall(
        r"^(adversarial search|permutation \(100\)) +(\d+) .* ([\d.]+)x$", done.stdout, flags=re.M
    )
    assert sorted((name, size) for name, size, _ in rows) == [
        ("adversarial search", "2"),
        ("adversarial search", "4"),
        ("permutation (100)", "2"),
        ("permutation (100)", "4"),
    ]
    assert all(float(speed_up) > 0 for *_, speed_up in rows)


@pytest.mark.slow  # a run, a fresh process per unit and a report: ~45 s
def test_reproduce_benchmark_prints_wall_time_throughput_and_memory(tmp_path):
    plan = tmp_path / "toy.yaml"
    plan.write_text(
        "name: toy\n"
        "datasets: [{name: synthetic, options: {n: 400, seed: 2}}]\n"
        "models: [{encoder: average, hidden_size: 16}]\n"
        "seeds: [1]\nsplit: test\nmax_instances: 10\n"
        "train: {epochs: 1, embeddings: random, embed_dim: 16}\n"
        "experiments: [{name: jain_wallace.correlation}]\n"
    )
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "reproduce.py"), "--plan", str(plan)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    wall = re.search(r"^end-to-end wall time \(report included\): ([\d.]+) s$", done.stdout, re.M)
    assert wall and float(wall.group(1)) > 0
    row = re.search(
        r"^jain_wallace.correlation +1 +[\d.]+ +10.0 +([\d.]+) +[\d.]+ +(\d+)$", done.stdout, re.M
    )
    assert row, done.stdout
    assert float(row.group(1)) > 0 and int(row.group(2)) > 100  # instances/s, peak MiB


def _benchmark_output(script: str, *args: str) -> str:
    """What ``benchmarks/<script>`` prints at a toy size (its exit status checked)."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_generation_benchmark_prints_the_capture_ratio_each_methods_cost_and_memory():
    stdout = _benchmark_output(
        "generation.py",
        *("--small", "--new-tokens", "2", "--repeats", "1"),
        *("--methods", "attention-norm", "leave-one-out", "--rerun-deletions"),
    )
    ratio = re.search(r"capture vs plain generate: ([\d.]+)x", stdout)
    assert ratio and float(ratio.group(1)) > 0
    costs = re.findall(r"^  (attention-norm|leave-one-out) +([\d.]+) s$", stdout, re.M)
    assert [name for name, _ in costs] == ["attention-norm", "leave-one-out"]
    assert re.search(r"every deletion re-run +[\d.]+ s \([\d.]+x; [\d.e+-]+\)", stdout)
    assert re.search(r"capture \+ rollout vs plain generate: [\d.]+x", stdout)
    memory = re.findall(r"^  prompt +(\d+) tokens( +[\d.]+ s +[\d.]+ MB){2}$", stdout, re.M)
    assert [length for length, _ in memory] == ["32", "64", "128"]


def test_faithfulness_benchmark_prints_a_cost_per_measure_and_method():
    stdout = _benchmark_output(
        "faithfulness.py",
        *("--n", "300", "--instances", "4", "--batch-size", "4", "--encoder", "average"),
        *("--methods", "attention", "leave-one-out", "--companions"),
    )
    assert re.search(r"^comprehensiveness +[\d.]+ +[\d.]+$", stdout, flags=re.M)
    assert re.search(r"^sensitivity-max +[\d.]+ +nan$", stdout, flags=re.M)
    assert re.search(r"^f-fidelity-sufficiency +[\d.]+ +[\d.]+$", stdout, flags=re.M)
    trained = re.findall(r"^companion ([a-z-]+): trained in [\d.]+ s$", stdout, flags=re.M)
    assert trained == ["shuffled-labels", "random-deletion"]
