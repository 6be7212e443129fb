"""`attnexplain reproduce` end to end: its wall time, then per experiment the throughput
(instances per second) and the peak memory, printed as a table. Usage:

    python benchmarks/reproduce.py [--plan PLAN] [--workers 2] [--cache-dir DIR]

Pass 1 runs the command as a user does (`attnexplain reproduce --out TMP`, or for another
plan `attnexplain run PLAN --executor processes --report --out TMP`) into an empty run
directory and times it, report included; throughput is the instances of each experiment's
units over their seconds (training units: seconds per model). Pass 2 runs the same plan with a
fresh process per unit, so each unit's peak resident memory is its own (imports and its data
included); the table gives the largest per group. Both passes use the data cache as it is (a
cold cache adds the wheel downloads).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from attnexplain.reproduce import MAIN_PLAN, plans_folder
from attnexplain.runner import RunResult, run_plan
from attnexplain.runner.executors import ProcessExecutor
from attnexplain.runner.status import estimate_group
from attnexplain.runner.store import RunStore


def run_command(plan: Path, out: Path, workers: int, cache_dir: str | None) -> float:
    """Wall seconds of the user's command on ``plan`` into ``out``."""
    cache = ["--cache-dir", cache_dir] if cache_dir else []
    if plan.name == MAIN_PLAN:
        command = ["reproduce", "--out", str(out.parent), "--workers", str(workers)]
    else:
        command = ["run", str(plan), "--out", str(out), "--report", "--executor", "processes"]
        command += ["--workers", str(workers)]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "attnexplain", *command, *cache],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"the command failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def unit_rows(result: RunResult) -> pd.DataFrame:
    """One row per unit of ``result``: its group, seconds, instances and peak memory."""
    store = RunStore(result.directory)
    rows = []
    for unit in result.units:
        finished = store.finished(unit.key)
        rows.append(
            {
                "group": estimate_group(unit),
                "seconds": finished.seconds,
                "instances": finished.details.get("instances"),
                "peak MiB": finished.details.get("peak_rss_mb"),
            }
        )
    return pd.DataFrame(rows)


def table(timed: pd.DataFrame, measured: pd.DataFrame) -> pd.DataFrame:
    """Per group: units, instances, seconds, instances / s (experiments), s / unit, and the
    largest peak memory of a unit from the fresh-process pass."""
    grouped = timed.groupby("group", sort=False).agg(
        units=("seconds", "size"),
        seconds=("seconds", "sum"),
        instances=("instances", lambda values: values.sum(min_count=1)),
    )
    grouped["instances/s"] = (grouped["instances"] / grouped["seconds"]).where(
        grouped["instances"] > 0
    )
    grouped["s/unit"] = grouped["seconds"] / grouped["units"]
    grouped["peak MiB"] = measured.groupby("group", sort=False)["peak MiB"].max()
    return grouped.reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", type=Path, default=None, help="default: the main job")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    plan = args.plan or plans_folder() / MAIN_PLAN

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "timed" / plan.stem
        wall = run_command(plan, out, args.workers, args.cache_dir)
        timed = unit_rows(RunResult.load(out))
        fresh = run_plan(
            plan,
            Path(scratch) / "fresh",
            cache_dir=args.cache_dir,
            progress=False,
            executor=ProcessExecutor(args.workers, fresh=True),
        )
        measured = unit_rows(fresh)

    print(f"{plan.name}: {len(timed)} units, {args.workers} workers")
    print(f"end-to-end wall time (report included): {wall:.1f} s")
    print(f"sum of unit times: {timed['seconds'].sum():.1f} s")
    print(table(timed, measured).to_string(index=False, float_format=lambda v: f"{v:.1f}"))


if __name__ == "__main__":
    main()
