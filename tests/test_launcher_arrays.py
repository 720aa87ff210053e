"""Job arrays through the local and docker executors: sharded curation as tasks, at most max_parallel at once."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from sharded_corpus import write_corpus

TARGET = "nano2.stage0.data_curation"
STEP = "stage0_pretrain.data_curation"


def _peak_running(job_log: str) -> int:
    """The most tasks running at once, replayed from the runner's "task N started/ended" lines."""
    running = peak = 0
    for line in job_log.splitlines():
        running += 1 if " started " in line else -1 if " ended " in line else 0
        peak = max(peak, running)
    return peak


def test_local_tasks_run_two_at_once_and_a_rerun_redoes_only_the_killed_one(launcher_env, tmp_path) -> None:
    (launcher_env.profiles / "local-arrays.toml").write_text('extends = "local"\n[arrays]\nmax_parallel = 2\n')
    corpus = write_corpus(tmp_path / "corpus", files=3, documents_per_file=40)
    args = [TARGET, "--profile", "local-arrays", f"data_curation.sources={corpus}", "data_curation.shards=3"]

    launched = launcher_env.launch(*args, "--detach")
    assert launched.returncode == 0, launched.stderr
    job_log = Path(launched.document["run_dir"]) / "logs" / f"{STEP}.log"
    deadline = time.monotonic() + 240
    while not (found := re.search(r"task 2 started \(pid (\d+)\)", job_log.read_text() if job_log.exists() else "")):
        assert time.monotonic() < deadline, "task 2 never started"
        time.sleep(0.2)
    os.killpg(int(found.group(1)), signal.SIGKILL)  # the third task, started once a slot freed
    while (status := launcher_env.launch("status", launched.document["run_id"])).document["state"] == "running":
        assert time.monotonic() < deadline, "the run never ended"
        time.sleep(0.5)
    record = status.document["steps"][STEP]
    assert record["state"] == "failed" and record["tasks"] == {"done": 2, "total": 3, "failed": [2]}
    assert _peak_running(job_log.read_text()) == 2

    rerun = launcher_env.launch(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.document["steps"][STEP]["tasks"] == {"done": 3, "total": 3, "failed": []}
    rerun_log = (Path(rerun.document["run_dir"]) / "logs" / f"{STEP}.log").read_text()
    assert re.findall(r"task (\d+) started", rerun_log) == ["2"]  # only the shard that was killed
    dataset = json.loads((Path(record["artifact"]) / "metadata.json").read_text())
    assert [s["path"] for s in dataset["shards"]] == ["shards/00000", "shards/00001", "shards/00002"]


def test_a_docker_dry_run_names_each_task_container_and_the_throttle(launcher_env, tmp_path) -> None:
    corpus = write_corpus(tmp_path / "corpus", files=2, documents_per_file=5)
    done = launcher_env.launch(
        TARGET, "--executor", "docker", f"data_curation.sources={corpus}", "data_curation.shards=2", "--dry-run"
    )
    assert done.returncode == 0, done.stderr
    text = done.document["rendered"][STEP]
    assert text.startswith("# array: tasks 0-1 of 2, 4 at once, each with NEMOTRON_ARRAY_TASK=<index>\n")
    assert "--name 'nemotron-{run_id}-stage0_pretrain-data_curation-{array_task}'" in text
    assert "-e NEMOTRON_ATTEMPT -e NEMOTRON_ARRAY_TASK " in text


@pytest.mark.docker
def test_docker_runs_each_task_in_its_own_container(docker_env) -> None:
    from test_docker_executor import write_profile

    launcher_env, engine, image = docker_env
    profile = write_profile(launcher_env, image.tag, engine, name="arrays", tables="[arrays]\nmax_parallel = 2")
    corpus = write_corpus(launcher_env.root / "corpus", files=2, documents_per_file=30)  # mounted: under the root
    done = launcher_env.launch(
        TARGET, "--profile", profile, f"data_curation.sources={corpus}", "data_curation.shards=2", timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = done.document["steps"][STEP]
    assert record["state"] == "completed" and record["tasks"] == {"done": 2, "total": 2, "failed": []}
    run_id = done.document["run_id"]
    ids = engine.containers(f"label=nemotron.run={run_id}")
    names = sorted(engine.docker("inspect", "--format", "{{.Name}}", *ids).stdout.decode().split())
    assert names == [f"/nemotron-{run_id}-stage0_pretrain-data_curation-{i}" for i in (0, 1)]


def test_cancel_stops_every_running_task_of_a_local_array(launcher_env, tmp_path) -> None:
    (launcher_env.profiles / "local-arrays.toml").write_text('extends = "local"\n[arrays]\nmax_parallel = 2\n')
    # large enough that no task is done seconds after it started, when the cancel comes
    corpus = write_corpus(tmp_path / "corpus", files=3, documents_per_file=4000)
    args = [TARGET, "--profile", "local-arrays", f"data_curation.sources={corpus}", "data_curation.shards=3"]
    launched = launcher_env.launch(*args, "--detach")
    assert launched.returncode == 0, launched.stderr
    job_log = Path(launched.document["run_dir"]) / "logs" / f"{STEP}.log"
    deadline = time.monotonic() + 120
    while len(pids := re.findall(r"started \(pid (\d+)\)", job_log.read_text() if job_log.exists() else "")) < 2:
        assert time.monotonic() < deadline, "two tasks never started"
        time.sleep(0.1)
    cancelled = launcher_env.launch("cancel", launched.document["run_id"])
    assert cancelled.returncode == 0, cancelled.stderr
    record = cancelled.document["steps"][STEP]
    assert record["state"] == "cancelled"
    for pid in pids:  # both tasks' process groups are gone, and task 2 never started
        with pytest.raises(ProcessLookupError):
            os.killpg(int(pid), 0)
    assert "task 2 started" not in job_log.read_text()
