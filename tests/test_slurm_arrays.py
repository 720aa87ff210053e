"""Sharded curation as one Slurm job array on the real test cluster: throttled, equal to an unsharded run, and a
rerun that redoes only the task that was killed."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
from sharded_corpus import write_corpus

pytestmark = [pytest.mark.slurm]

TARGET = "nano2.stage0.data_curation"
COUNTS = ("documents_read", "documents_kept", "dropped_duplicate", "train_documents", "valid_documents", "tokens")


def _running_tasks(cluster, array_id: str) -> int:
    listed = cluster.run("squeue", "-h", "-r", "-t", "RUNNING", "-j", array_id, "-o", "%i", check=False)
    return len(listed.stdout.split())


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached in {timeout}s")


def test_four_shards_run_as_one_throttled_array_and_a_rerun_redoes_only_the_killed_task(
    launcher_env, slurm_cluster, tmp_path
) -> None:
    launcher_env.env["SLURM_CONF"] = str(slurm_cluster.conf)
    (launcher_env.profiles / "slurm-arrays.toml").write_text('extends = "slurm-test"\n[arrays]\nmax_parallel = 2\n')
    corpus = write_corpus(tmp_path / "corpus")
    args = [TARGET, "--profile", "slurm-arrays", f"data_curation.sources={corpus}", "data_curation.shards=4"]

    launched = launcher_env.launch(*args, "--detach")
    assert launched.returncode == 0, launched.stderr
    run_id = launched.document["run_id"]
    step = launched.document["steps"]["stage0_pretrain.data_curation"]
    array_id, output = step["job_id"], Path(step["artifact"])
    assert array_id.isdigit()  # one job for the four shards
    sbatch = next((Path(launched.document["run_dir"]) / "sbatch").glob("*.data_curation.sbatch")).read_text()
    assert "#SBATCH --array=0-3%2" in sbatch

    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _running_tasks(slurm_cluster, array_id))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        # task 3 waits for a slot; once it runs, the tokenizer exists (a task before it trained it): kill it there
        _wait(lambda: f"{array_id}_3" in slurm_cluster.run("squeue", "-h", "-r", "-t", "RUNNING", "-o", "%i").stdout,
              240, "task 3 running")  # fmt: skip
        slurm_cluster.run("scancel", f"{array_id}_3")
        status = _wait(lambda: _finished(launcher_env, run_id), 240, "the array's end")
    finally:
        stop.set()
        sampler.join()
    assert 1 <= peak[0] <= 2, peak[0]
    record = status["steps"]["stage0_pretrain.data_curation"]
    assert record["state"] in ("failed", "cancelled") and record["tasks"] == {"done": 3, "total": 4, "failed": [3]}
    shown = launcher_env.launch("status", run_id)
    assert "3/4, failed 3" in shown.stderr
    written = {i: (output / f"shards/{i:05d}/shard.json").stat().st_mtime_ns for i in range(3)}

    # the relaunch redoes the killed shard alone (a stage downstream of an array, chained afterok on the array's
    # id and training on all its shards, is test_slurm_sweeps.py's: a sweep's upstream there is a sharded curation)
    rerun = launcher_env.launch(*args, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.document["state"] == "completed"
    sbatch_dir = Path(rerun.document["run_dir"]) / "sbatch"
    resubmitted = next(sbatch_dir.glob("*.data_curation.sbatch")).read_text()
    assert "#SBATCH --array=3%2" in resubmitted  # only the killed task's shard
    assert {i: (output / f"shards/{i:05d}/shard.json").stat().st_mtime_ns for i in range(3)} == written

    sharded = json.loads((output / "metadata.json").read_text())
    assert len(sharded["shards"]) == 4
    unsharded = _unsharded(corpus, tmp_path / "unsharded", output / "tokenizer.json")
    assert {k: sharded["metrics"][k] for k in COUNTS} == {k: unsharded.metrics[k] for k in COUNTS}
    assert sharded["metrics"]["dropped_duplicate"] > 0


def _finished(launcher_env, run_id: str) -> dict | None:
    status = launcher_env.launch("status", run_id)
    document = status.document if status.returncode in (0, 1) and status.stdout.strip() else None
    return document if document and document["state"] not in ("running", "planned") else None


def _unsharded(corpus: Path, output: Path, tokenizer: Path):
    """The same corpus curated in one process with the shards' tokenizer: what the shards must add up to."""
    from nemotron.recipes.nano2.stage0_pretrain.data_curation import Config, main

    return main(Config(sources=(str(corpus),), shards=1, tokenizer_path=tokenizer, output_dir=output))


def test_shards_zero_is_refused_with_one_line_and_nothing_submitted(launcher_env, slurm_cluster) -> None:
    launcher_env.env["SLURM_CONF"] = str(slurm_cluster.conf)
    before = subprocess.run(["squeue", "-h", "-o", "%i"], env=slurm_cluster.env, capture_output=True, text=True)
    refused = launcher_env.launch(TARGET, "--profile", "slurm-test", "data_curation.shards=0")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip().count("\n") == 0 and "--shards 0" in refused.stderr, refused.stderr
    after = subprocess.run(["squeue", "-h", "-o", "%i"], env=slurm_cluster.env, capture_output=True, text=True)
    assert after.stdout == before.stdout and launcher_env.files() == []
