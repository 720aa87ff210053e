"""What the stage benches share: run one stage of a recipe (``--recipe``, default nano2) as a child process and
measure it, then print the seed table.

A stage runs as ``python -m nemotron.recipes.<recipe>.<stage> --scale tiny --seed S ... --output-root DIR``; its wall
time is measured around the child, its peak RSS is the child's own ``ru_maxrss`` (``os.wait4``, so the figure is that
stage process's largest resident set, not the maximum over every child this bench ever started), and its stdout (the
stage's JSON document) is kept in ``DIR/stdout.json`` and parsed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StageRun:
    artifacts: dict
    """The stage's artifacts by step name (``data_curation``, ``training``, ``evaluation``), as printed on stdout."""
    wall_s: float
    peak_rss_mb: float


def artifact_env(root: Path) -> dict[str, str]:
    """This process's environment with tracked artifacts kept under ``root`` (not the user's cache)."""
    return {**os.environ, "NEMOTRON_ARTIFACT_ROOT": str(root / "artifact_root")}


RECIPES = ("nano2", "nemotron4")


def run_stage(recipe: str, stage: str, seed: int, out: Path, env: dict[str, str], *args: str) -> StageRun:
    """Run ``recipe``'s ``stage`` at tiny scale with outputs under ``out``; exits the bench if the stage fails."""
    module = f"nemotron.recipes.{recipe}.{stage}"
    if importlib.util.find_spec(module) is None:
        raise SystemExit(f"recipe {recipe} has no stage {stage}: this bench measures a recipe that has it")
    command = [sys.executable, "-m", module, "--scale", "tiny", "--seed", str(seed)]
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with (out / "stdout.json").open("w+") as stdout:
        child = subprocess.Popen([*command, *args, "--output-root", str(out)], stdout=stdout, env=env)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage: its peak RSS, not the max of all
        wall = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise SystemExit(f"seed {seed}: {stage} failed with exit code {code}")
        stdout.seek(0)
        document = stdout.read()
    return StageRun(json.loads(document)["artifacts"], wall, usage.ru_maxrss / 1024)  # Linux reports kilobytes


def kept_or_run_stage(recipe: str, stage: str, seed: int, out: Path, env: dict[str, str], *args: str) -> StageRun:
    """The complete run of ``stage`` an earlier bench kept in ``out`` (``--keep``), else ``run_stage``.

    Complete: ``out/stdout.json`` parses (a stage prints it only after all its steps succeeded) and every artifact in
    it still has its ``metadata.json`` (saved last). A kept run's wall time and peak RSS are unknown (NaN).
    """
    try:
        artifacts = json.loads((out / "stdout.json").read_text())["artifacts"]
        complete = bool(artifacts) and all((Path(a["path"]) / "metadata.json").is_file() for a in artifacts.values())
    except (OSError, ValueError, KeyError, TypeError):
        complete = False
    if not complete:
        return run_stage(recipe, stage, seed, out, env, *args)
    print(f"seed {seed}: reusing the complete {stage} run in {out}", file=sys.stderr)
    return StageRun(artifacts, math.nan, math.nan)


def run_seeds(doc: str, timed: str, run_seed: Callable[[int, Path, str], dict[str, float]]) -> list[dict[str, float]]:
    """Parse ``--recipe``/``--seeds``/``--keep``, run ``run_seed(seed, root, recipe)`` for each seed, return the rows.

    ``timed`` names the stage whose wall time is a row's ``wall_s`` (progress on stderr).
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--recipe", choices=RECIPES, default="nano2")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs here (default: a temp dir, deleted)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix=f"bench_{timed}_") as scratch:
        root = args.keep or Path(scratch)
        rows = []
        for seed in args.seeds:
            rows.append(run_seed(seed, root / args.recipe, args.recipe))
            print(f"seed {seed} done ({timed} {rows[-1]['wall_s']:.0f} s)", file=sys.stderr)
    return rows


def print_rows(columns: Sequence[str], rows: list[dict[str, float]]) -> None:
    """Header, one row per seed and, for several seeds, a mean row; 12-wide columns, 4 significant digits."""
    print(" ".join(f"{c:>12}" for c in columns))
    for row in rows:
        print(" ".join(f"{row[c]:>12.4g}" if c != "seed" else f"{row[c]:>12}" for c in columns))
    if len(rows) > 1:
        means = {c: statistics.mean(r[c] for r in rows) for c in columns[1:]}
        print(" ".join([f"{'mean':>12}"] + [f"{means[c]:>12.4g}" for c in columns[1:]]))
