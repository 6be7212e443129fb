"""The benchmark scripts still run: each once, at a toy size (their timings are not checked)."""

import re
import subprocess
import sys
from pathlib import Path

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
