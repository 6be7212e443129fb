"""benchmarks/analyses.py still runs: once, at a toy size (its timings are not checked)."""

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "analyses.py"


def test_analyses_benchmark_prints_every_analysis_and_path_of_both_families():
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--encoders", "cnn", "--instances", "2", "--length", "12"),
            *("--transformer", "tiny", "--transformer-instances", "2", "--wordpieces", "8"),
            *("--steps", "2", "--permutations", "3"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = re.findall(
        r"^ *(classic cnn|bert tiny) +(.+?) +(fast|generic|loop|single) ", done.stdout, flags=re.M
    )
    paths = {(model, analysis.strip(), path) for model, analysis, path in rows}
    assert ("classic cnn", "J&W correlation: leave-one-out", "loop") in paths
    assert ("bert tiny", "J&W adversarial (K=5, 2 steps)", "fast") in paths
    assert ("bert tiny", "J&W adversarial (K=5, 2 steps)", "generic") in paths
    assert len(paths) == 11 + 11
