"""nano2 stage0 at --scale tiny for several seeds: wall time, peak RSS, and whether the model learned (figures only).

    uv run python bench/bench_stage0.py                 # seeds 1 2 3
    uv run python bench/bench_stage0.py --seeds 1 --keep /tmp/stage0-runs

Each seed runs ``python -m nemotron.recipes.nano2.stage0_pretrain --scale tiny --seed S`` as a child process; its
peak RSS is the child's ``ru_maxrss`` (the largest resident set of the stage process). Prints one row per seed and a
mean row: held-out multiple-choice accuracy against chance, greedy exact match, validation perplexity, and losses.
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

COLUMNS = ("seed", "wall_s", "peak_rss_mb", "mc_acc", "chance", "gen_em", "valid_ppl", "valid_loss", "unigram_loss")


def run_seed(seed: int, root: Path) -> dict[str, float]:
    out = root / f"seed{seed}"
    command = [sys.executable, "-m", "nemotron.recipes.nano2.stage0_pretrain", "--scale", "tiny", "--seed", str(seed)]
    env = {**os.environ, "NEMOTRON_ARTIFACT_ROOT": str(root / "artifact_root")}
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with (out / "stdout.json").open("w+") as stdout:
        child = subprocess.Popen([*command, "--output-root", str(out)], stdout=stdout, env=env)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage: its peak RSS, not the max of all
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"seed {seed}: stage failed with exit code {os.waitstatus_to_exitcode(status)}")
        stdout.seek(0)
        document = stdout.read()
    artifacts = json.loads(document)["artifacts"]
    evaluation, training = artifacts["evaluation"]["metrics"], artifacts["training"]["metrics"]
    return {
        "seed": seed,
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux reports kilobytes
        "mc_acc": evaluation["facts_mc/acc"],
        "chance": evaluation["facts_mc/chance_acc"],
        "gen_em": evaluation["facts_gen/exact_match"],
        "valid_ppl": evaluation["valid_perplexity"],
        "valid_loss": training["valid_loss"],
        "unigram_loss": training["unigram_loss"],
    }


def print_table(rows: list[dict[str, float]]) -> None:
    print(" ".join(f"{c:>12}" for c in COLUMNS))
    for row in rows:
        print(" ".join(f"{row[c]:>12.4g}" if c != "seed" else f"{row[c]:>12}" for c in COLUMNS))
    if len(rows) > 1:
        means = {c: statistics.mean(r[c] for r in rows) for c in COLUMNS[1:]}
        print(" ".join([f"{'mean':>12}"] + [f"{means[c]:>12.4g}" for c in COLUMNS[1:]]))
        margin = min(r["mc_acc"] - r["chance"] for r in rows)
        print(f"smallest margin of held-out MC accuracy over chance across seeds: {margin:+.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs here (default: a temp dir, deleted)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_stage0_") as scratch:
        root = args.keep or Path(scratch)
        rows = []
        for seed in args.seeds:
            rows.append(run_seed(seed, root))
            print(f"seed {seed} done in {rows[-1]['wall_s']:.0f} s", file=sys.stderr)
    print_table(rows)


if __name__ == "__main__":
    main()
