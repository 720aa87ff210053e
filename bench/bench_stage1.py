"""nano2 stage1 at --scale tiny for several seeds: stage0 then stage1 per seed; stage1's wall time, peak RSS, and the
instruction-following gain over its input model (figures only).

    uv run python bench/bench_stage1.py                 # seeds 1 2 3
    uv run python bench/bench_stage1.py --seeds 1 --keep /tmp/stage1-runs

Each stage runs as ``python -m nemotron.recipes.nano2.<stage> --scale tiny --seed S`` in a child process; peak RSS
is the stage1 child's ``ru_maxrss``. Columns: held-out instruction exact match of the tuned and the stage0 model,
stage0's held-out MC accuracy before/after tuning (regression), SFT valid loss on held-out replies vs. the initial one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = ("seed", "wall_s", "peak_rss_mb", "em_tuned", "em_input", "mc_tuned", "mc_input", "valid_loss", "init_loss")


def run_stage(stage: str, seed: int, out: Path, env: dict[str, str], *args: str) -> tuple[dict, float, float]:
    """(artifacts, wall seconds, peak RSS MB) of one stage run."""
    command = [sys.executable, "-m", f"nemotron.recipes.nano2.{stage}", "--scale", "tiny", "--seed", str(seed)]
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with (out / "stdout.json").open("w+") as stdout:
        child = subprocess.Popen([*command, *args, "--output-root", str(out)], stdout=stdout, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"seed {seed}: {stage} failed with exit code {os.waitstatus_to_exitcode(status)}")
        stdout.seek(0)
        return json.loads(stdout.read())["artifacts"], wall, usage.ru_maxrss / 1024


def run_seed(seed: int, root: Path) -> dict[str, float]:
    env = {**os.environ, "NEMOTRON_ARTIFACT_ROOT": str(root / "artifact_root")}
    stage0, _, _ = run_stage("stage0_pretrain", seed, root / f"seed{seed}" / "stage0", env, "--eval.tasks", "facts_mc")
    init = stage0["training"]["path"]
    stage1, wall, rss = run_stage(
        "stage1_instruction_tuning", seed, root / f"seed{seed}" / "stage1", env, "--init-checkpoint-path", init
    )
    evaluation, training = stage1["evaluation"]["metrics"], stage1["training"]["metrics"]
    return {
        "seed": seed,
        "wall_s": wall,
        "peak_rss_mb": rss,
        "em_tuned": evaluation["instruct/exact_match"],
        "em_input": evaluation["input_model/instruct/exact_match"],
        "mc_tuned": evaluation["facts_mc/acc"],
        "mc_input": evaluation["input_model/facts_mc/acc"],
        "valid_loss": training["valid_loss"],
        "init_loss": training["init_loss"],
    }


def print_table(rows: list[dict[str, float]]) -> None:
    print(" ".join(f"{c:>12}" for c in COLUMNS))
    for row in rows:
        print(" ".join(f"{row[c]:>12.4g}" if c != "seed" else f"{row[c]:>12}" for c in COLUMNS))
    if len(rows) > 1:
        means = {c: statistics.mean(r[c] for r in rows) for c in COLUMNS[1:]}
        print(" ".join([f"{'mean':>12}"] + [f"{means[c]:>12.4g}" for c in COLUMNS[1:]]))
    print(f"smallest exact-match gain over the input model: {min(r['em_tuned'] - r['em_input'] for r in rows):+.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs here (default: a temp dir, deleted)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_stage1_") as scratch:
        root = args.keep or Path(scratch)
        rows = []
        for seed in args.seeds:
            rows.append(run_seed(seed, root))
            print(f"seed {seed} done (stage1 {rows[-1]['wall_s']:.0f} s)", file=sys.stderr)
    print_table(rows)


if __name__ == "__main__":
    main()
