"""The test clusters themselves: a batch job runs on each, on every node, and accounting records it."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.slurm


def _wait_gone(cluster, job_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = cluster.run("scontrol", "show", "job", job_id, check=False).stdout
        if "JobState=COMPLETED" in state or "JobState=FAILED" in state:
            return
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {state}")


def test_single_node_runs_a_batch_job(slurm_cluster, tmp_path):
    out = tmp_path / "out.txt"
    job = slurm_cluster.run("sbatch", "--parsable", f"--output={out}", "--wrap", "echo hello $SLURM_JOB_ID").stdout
    job_id = job.strip()
    _wait_gone(slurm_cluster, job_id)
    assert out.read_text().strip() == f"hello {job_id}"
    disabled = slurm_cluster.run("sacct", "-j", job_id, check=False)
    assert "accounting storage is disabled" in (disabled.stdout + disabled.stderr)


def test_two_nodes_have_their_own_hostnames(slurm_cluster_2nodes, tmp_path):
    out = tmp_path / "hosts.txt"
    cmd = ["sbatch", "--parsable", "-N2", f"--output={out}", "--wrap", "srun hostname | sort"]
    job_id = slurm_cluster_2nodes.run(*cmd).stdout.strip()
    _wait_gone(slurm_cluster_2nodes, job_id)
    assert out.read_text().split() == ["n1", "n2"]


def test_accounting_records_the_job(slurm_cluster_acct, tmp_path):
    cluster = slurm_cluster_acct
    job_id = cluster.run("sbatch", "--parsable", f"--output={tmp_path}/o", "--wrap", "exit 3").stdout.strip()
    _wait_gone(cluster, job_id)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = cluster.run("sacct", "-X", "-n", "-P", "-j", job_id, "-o", "JobID,State,ExitCode").stdout.split()
        if rows and rows[0].startswith(f"{job_id}|FAILED"):
            break
        time.sleep(0.5)
    assert rows == [f"{job_id}|FAILED|3:0"]
