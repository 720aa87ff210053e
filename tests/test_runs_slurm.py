"""Runs at a glance on the real test Slurm cluster with accounting: 20 detached runs of a shortened nano2.stage0 (60
jobs) listed with one ``sacct`` call, then all cancelled by a filter with one ``scancel``. Their jobs wait in a
maintenance reservation the test holds on the node, so nothing computes and every state is known."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from slurm_calls import SlurmCalls
from test_slurm_executor import run_ids, use_cluster, wait_for

pytestmark = [pytest.mark.slurm]

RUNS = 20
RESERVATION = "nemotron-runs-test"


@pytest.fixture
def held_queue(slurm_cluster_acct):
    """Jobs submitted meanwhile wait (ReqNodeNotAvail, Reserved for maintenance); ``sbatch --test-only`` still
    accepts them (they would start once the reservation ends), as on a cluster before a maintenance window."""
    cluster = slurm_cluster_acct
    cluster.run("scontrol", "create", "reservation", f"ReservationName={RESERVATION}", "StartTime=now",
                "Duration=120", "Nodes=ALL", "Users=daemon", "Flags=ignore_jobs")  # fmt: skip
    try:
        yield cluster
    finally:
        cluster.run("scontrol", "delete", f"ReservationName={RESERVATION}", check=False)


def test_twenty_runs_listed_with_one_sacct_and_cancelled_by_a_filter_with_one_scancel(
    launcher_env, held_queue, tmp_path
):
    cluster = held_queue
    env = use_cluster(launcher_env, cluster)

    def launch(seed: int) -> dict:
        launched = env.launch("nano2.stage0", "--profile", "slurm-test", "--detach", f"data_curation.seed={seed}",
                              "data_curation.max_documents=200", "training.train_iters=2")  # fmt: skip
        assert launched.returncode == 0, launched.stderr
        return launched.document

    with ThreadPoolExecutor(4) as pool:
        documents = list(pool.map(launch, range(RUNS)))
    jobs = {document["run_id"]: run_ids(document) for document in documents}
    every_job = [job_id for ids in jobs.values() for job_id in ids]
    assert len(every_job) == 3 * RUNS
    ids = ",".join(every_job)
    wait_for(lambda: len(cluster.run("sacct", "-X", "-n", "-j", ids).stdout.splitlines()) == len(every_job),
             what="every job in accounting")  # fmt: skip
    first = documents[0]["run_id"]
    assert env.launch("cancel", first).returncode == 0  # one run already cancelled, the others in the queue

    calls = SlurmCalls(tmp_path / "calls")
    counted = {"PATH": calls.path(os.environ["PATH"])}
    listed = env.launch("runs", **counted)
    assert listed.returncode == 0, listed.stderr
    rows = {row["run_id"]: row for row in listed.document["runs"]}
    assert set(rows) == set(jobs)
    assert {run_id: row["state"] for run_id, row in rows.items()} == {
        run_id: "cancelled" if run_id == first else "running" for run_id in jobs
    }
    assert {(row["steps_done"], row["steps_total"], row["target"], row["profile"]) for row in rows.values()} == {
        (0, 3, "nano2.stage0", "slurm-test")
    }
    assert calls.take() == {"sacct": 1}, calls.lines()  # one call for the 57 jobs in flight, none for the cancelled

    refused = env.launch("cancel", "--state", "running", "--target", "nano2", **counted)
    assert refused.returncode == 2 and "19 runs (57 unfinished jobs): add --yes" in refused.stderr, refused.stderr
    assert calls.take()["scancel"] == 0
    cancelled = env.launch("cancel", "--state", "running", "--target", "nano2", "--yes", **counted)
    assert cancelled.returncode == 0, cancelled.stderr
    assert {document["run_id"] for document in cancelled.document["cancelled"]} == set(jobs) - {first}
    made = calls.take()
    assert made["scancel"] == 1 and made["sacct"] == 1, calls.lines()

    assert env.launch("runs", "--state", "running").document == {"runs": []}
    assert not set(every_job) & set(cluster.queue_active())
