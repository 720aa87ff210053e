"""Runs under load on the test Slurm cluster: N runs x 9 jobs queued, then the seconds and the Slurm client calls of
``runs``, ``status RUN``, one poll of the live view (``status --follow``) and ``cancel --state running --yes``.

    uv run python bench/bench_queue.py [--runs 10 30] [--no-accounting]

Starts a one-node test cluster (tests/slurm_cluster.py: the Slurm Debian packages and root), with accounting
(MariaDB + slurmdbd, so the launcher asks ``sacct``) unless ``--no-accounting`` (then ``squeue``). Its node is held in
a maintenance reservation, so every job queued stays pending, as on a full cluster or before a maintenance window:
nothing computes and each figure is the launcher's and slurmctld's own cost. For each N, in a fresh state dir:
N launches of ``nano2 --profile slurm-test --detach`` (9 jobs each, one seed per run so no two runs claim the same
outputs), each timed; then each command timed (median of ``--repeat``) and its Slurm client calls counted by
wrappers first on PATH (tests/slurm_calls.py: sacct, squeue, scontrol, sbatch, scancel, sinfo). The live view's poll
is timed in this process, as ``status --follow`` makes it after its start (one ``Executor.status`` + a redraw).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
LAUNCH = str(Path(sys.executable).parent / "nemotron-launch")
RESERVATION = "bench-queue-hold"

from slurm_calls import SlurmCalls  # noqa: E402
from slurm_cluster import start_single_node  # noqa: E402


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[1:])} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return seconds


def measure(command: list[str], env: dict[str, str], calls: SlurmCalls, repeat: int) -> tuple[float, Counter]:
    """Median seconds of ``repeat`` runs and the Slurm calls of one."""
    seconds = []
    for _ in range(repeat):
        calls.take()
        seconds.append(timed(command, env))
    return statistics.median(seconds), calls.take()


def live_poll(env: dict[str, str], run_id: str, calls: SlurmCalls, repeat: int) -> tuple[float, Counter]:
    """One iteration of ``base.watch`` (what ``status --follow`` does every poll), here in this process."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        from nemotron.launcher.executors.base import get_executor
        from nemotron.launcher.report import LiveView
        from nemotron.launcher.runs import find_run

        run = find_run(run_id)
        executor = get_executor(run.executor)
        seconds = []
        with contextlib.redirect_stderr(io.StringIO()), LiveView(run) as view:
            for _ in range(repeat):
                calls.take()
                start = time.perf_counter()
                run.steps = executor.status(run)
                view.refresh(run)
                seconds.append(time.perf_counter() - start)
        return statistics.median(seconds), calls.take()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def wait_for_accounting(cluster, env: dict[str, str], timeout: float = 120) -> None:
    """Until slurmdbd knows every queued job (else the launcher's one ``sacct`` is followed by a ``squeue``)."""
    queued = set(cluster.run("squeue", "-h", "-o", "%i").stdout.split())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        known = cluster.run("sacct", "-X", "-n", "-P", "-j", ",".join(queued), "-o", "JobIDRaw").stdout.split()
        if queued <= set(known):
            return
        time.sleep(1)


def bench_size(cluster, base: dict[str, str], workdir: Path, runs: int, repeat: int) -> dict:
    calls = SlurmCalls(workdir / "calls")
    env = {
        **base,
        "NEMOTRON_ARTIFACT_ROOT": str(workdir / "artifacts"),
        "NEMOTRON_STATE_DIR": str(workdir / "state"),
        "PATH": calls.path(base["PATH"]),
    }
    calls.take()
    submit = [timed([LAUNCH, "nano2", "--profile", "slurm-test", "--detach", f"data_curation.seed={seed}"], env)
              for seed in range(runs)]  # fmt: skip
    submitted = calls.take()
    if cluster.accounting:
        wait_for_accounting(cluster, env)
    newest = subprocess.run([LAUNCH, "runs", "-n", "1"], env=env, capture_output=True, text=True, check=True)
    run_id = json.loads(newest.stdout)["runs"][0]["run_id"]
    figures = {
        "jobs queued": len(cluster.run("squeue", "-h", "-o", "%i").stdout.split()),
        "submit s/run": (statistics.mean(submit), Counter({k: v / runs for k, v in submitted.items()})),
        "runs": measure([LAUNCH, "runs"], env, calls, repeat),
        "status RUN": measure([LAUNCH, "status", run_id], env, calls, repeat),
        "live view poll": live_poll(env, run_id, calls, repeat),
    }
    calls.take()
    figures["cancel --state running --yes"] = (timed([LAUNCH, "cancel", "--state", "running", "--yes"], env),
                                               calls.take())  # fmt: skip
    figures["runs (all ended)"] = measure([LAUNCH, "runs"], env, calls, repeat)
    return figures


def calls_text(counted: Counter) -> str:
    return " ".join(f"{name} {count:g}" for name, count in sorted(counted.items()) if count) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-accounting", action="store_true")
    args = parser.parse_args()
    cluster_dir = Path(tempfile.mkdtemp(prefix="nemotron-bench-queue-"))
    cluster_dir.chmod(0o755)  # mariadbd runs as mysql
    cluster = start_single_node(cluster_dir, name="benchqueue", accounting=not args.no_accounting)
    try:
        cluster.run("scontrol", "create", "reservation", f"ReservationName={RESERVATION}", "StartTime=now",
                    "Duration=600", "Nodes=ALL", "Users=daemon", "Flags=ignore_jobs")  # fmt: skip
        base = {**os.environ, "SLURM_CONF": str(cluster.conf), "XDG_CONFIG_HOME": str(cluster_dir / "config")}
        print(f"one-node test cluster, accounting {'off (squeue)' if args.no_accounting else 'on (sacct)'}, "
              f"jobs held by a reservation; {os.cpu_count()} CPUs; medians of {args.repeat}", flush=True)  # fmt: skip
        for runs in args.runs:
            with tempfile.TemporaryDirectory(prefix=f"bench-queue-{runs}-") as work:
                figures = bench_size(cluster, base, Path(work), runs, args.repeat)
            print(f"\n{runs} runs x 9 jobs ({figures.pop('jobs queued')} jobs in the queue)")
            print(f"{'command':<32} {'seconds':>8}   Slurm client calls")
            for name, (seconds, counted) in figures.items():
                print(f"{name:<32} {seconds:>8.3f}   {calls_text(counted)}", flush=True)
    finally:
        cluster.run("scontrol", "delete", f"ReservationName={RESERVATION}", check=False)
        cluster.stop()
        subprocess.run(["rm", "-rf", str(cluster_dir)], check=False)


if __name__ == "__main__":
    main()
