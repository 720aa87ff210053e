"""The README's main job, timed: a whole recipe at --scale tiny through the launcher on this machine.

    uv run python bench/bench_pipeline.py                      # nemotron-launch nano2 --executor local --scale tiny
    uv run python bench/bench_pipeline.py --recipe nemotron4

Runs ``nemotron-launch RECIPE --executor local --scale tiny`` as a child process with a fresh artifact root and run
index (nothing reused), then prints its wall time, the largest resident set of any process it started (the
children's ``ru_maxrss``), and each job's own duration from the run record, in plan order. Each job is its own
process (as on a cluster), so the sum of the job times shows what starting them costs beside the wall time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAUNCHER = [sys.executable, "-m", "nemotron.launcher.cli"]


def run_recipe(recipe: str, root: Path) -> tuple[float, dict]:
    env = {**os.environ, "NEMOTRON_ARTIFACT_ROOT": str(root / "artifacts"), "NEMOTRON_STATE_DIR": str(root / "state")}
    start = time.perf_counter()
    done = subprocess.run(
        [*LAUNCHER, recipe, "--executor", "local", "--scale", "tiny"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{recipe} failed with exit code {done.returncode}")
    return wall, json.loads(done.stdout)


def job_seconds(summary: dict) -> dict[str, float]:
    record = json.loads((Path(summary["run_dir"]) / "run.json").read_text())
    seconds = {}
    for name, step in record["steps"].items():
        started, ended = step.get("started_at"), step.get("ended_at")
        if started and ended:
            seconds[name] = (dt.datetime.fromisoformat(ended) - dt.datetime.fromisoformat(started)).total_seconds()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="nano2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as scratch:
        wall, summary = run_recipe(args.recipe, Path(scratch))
        jobs = job_seconds(summary)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux reports kilobytes
    print(f"{'job':<44} {'seconds':>8}")
    for name, seconds in jobs.items():
        print(f"{name:<44} {seconds:>8.1f}")
    print(f"{'sum of jobs':<44} {sum(jobs.values()):>8.1f}")
    print(f"{'wall (the whole launch)':<44} {wall:>8.1f}")
    print(f"{len(jobs)} jobs, state {summary['state']}, largest process {peak_mb:.0f} MB, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
