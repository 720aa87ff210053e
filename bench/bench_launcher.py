"""How fast the launcher answers people: wall time of real ``nemotron-launch`` processes (median of N runs).

    uv run python bench/bench_launcher.py [--repeat 5] [--torch-repeat 3]

Measures, in one run on this machine: the interpreter floor (``python -c pass``), ``nemotron-launch --help``,
``nemotron-launch nano2 --profile eos --dry-run`` (the whole plan, every step Config validated), a launch whose every
step is reused (the toy recipe in tests/, run once first, so the figure is the launcher's own cost), and
``python -c "import torch"`` as the yardstick the ratios are printed against. Targets: help <= 0.15 s, eos dry-run
<= 0.4 s, reuse launch < 2 s. With the ``nemo-run`` extra installed, the same 9-job plan's dry-run through NeMo-Run
(``--profile nemo-run-slurm``, which extends ``eos``: one NeMo-Run experiment dry-run, an sbatch script per task)
is measured beside the native one, with their ratio.

Each figure is taken twice: with Python's bytecode cache (how an installed tool runs: the warm-up run writes the
cache, here under .bench/pycache so the venv is left alone) and without it (``PYTHONDONTWRITEBYTECODE=1``, which this
project's development machines export: then every run compiles every imported module from source).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAUNCH = [str(Path(sys.executable).parent / "nemotron-launch")]
NATIVE_DRY_RUN = "nemotron-launch nano2 --profile eos --dry-run"
NEMO_RUN_DRY_RUN = "nemotron-launch nano2 --profile nemo-run-slurm --dry-run"


def wall(command: list[str], env: dict[str, str], repeat: int) -> tuple[float, list[float]]:
    """Median wall seconds of ``repeat`` runs (after one untimed warm-up run that fills the page cache)."""
    subprocess.run(command, env=env, capture_output=True, check=True)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def measure(env: dict[str, str], repeat: int, torch_repeat: int) -> dict[str, tuple[float, list[float]]]:
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "nemotron-launch --help": [*LAUNCH, "--help"],
        NATIVE_DRY_RUN: [*LAUNCH, "nano2", "--profile", "eos", "--dry-run"],
        "nemotron-launch toy.stage0 (all reused)": [*LAUNCH, "toy.stage0"],
    }
    if importlib.util.find_spec("nemo_run") is not None:
        cases[NEMO_RUN_DRY_RUN] = [*LAUNCH, "nano2", "--profile", "nemo-run-slurm", "--dry-run"]
    results = {name: wall(command, env, repeat) for name, command in cases.items()}
    results['python -c "import torch"'] = wall([sys.executable, "-c", "import torch"], env, torch_repeat)
    return results


def report(title: str, results: dict[str, tuple[float, list[float]]]) -> None:
    torch_s = results['python -c "import torch"'][0]
    print(f"\n{title}\n{'command':<58} {'median s':>9} {'x torch':>8}   runs (s)")
    for name, (median, times) in results.items():
        runs = " ".join(f"{t:.3f}" for t in times)
        print(f"{name:<58} {median:>9.3f} {median / torch_s:>8.3f}   {runs}")
    if NEMO_RUN_DRY_RUN in results:
        ratio = results[NEMO_RUN_DRY_RUN][0] / results[NATIVE_DRY_RUN][0]
        print(f"the 9-job nano2 dry-run through NeMo-Run takes {ratio:.1f}x the native one")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--torch-repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "NEMOTRON_ARTIFACT_ROOT": f"{tmp}/artifacts",
            "NEMOTRON_STATE_DIR": f"{tmp}/state",
            "NEMOTRON_RECIPES": "toy=launcher_toy.recipe",
            "PYTHONPATH": str(REPO / "tests"),
            "USER": os.environ.get("USER", "bench"),
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([*LAUNCH, "toy.stage0"], env=env, capture_output=True, check=True)  # so the next reuses
        cached = measure({**env, "PYTHONPYCACHEPREFIX": str(REPO / ".bench" / "pycache")}, args.repeat, 1)
        uncached = measure({**env, "PYTHONDONTWRITEBYTECODE": "1"}, args.repeat, args.torch_repeat)
    report("with the bytecode cache (an installed tool)", cached)
    report("without a bytecode cache (PYTHONDONTWRITEBYTECODE=1)", uncached)
    print(f"\ncpus={os.cpu_count()} load average={os.getloadavg()[0]:.2f} (other work on the machine inflates figures)")


if __name__ == "__main__":
    main()
