"""Failures of long jobs on the real test clusters: each failure class with its policy, through the CLI.

nano2 training on the 3-node cluster (``slurm_cluster_3nodes``): a lost node (resubmitted without it, resumed, the
same weights as an uninterrupted run, its dependent run once after it), a hung rank (every rank's stacks in the log,
resumed), a time limit shorter than the step (resumed while attempts make progress), and the progress ``status``
shows while training runs. The toy recipe on the single-node cluster: exit 93 (not retried), an application error
(dependents cancelled), a time limit without progress (not retried).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from slurm_cluster import lose_node, revive_node
from test_slurm_executor import use_cluster, wait_for
from test_slurm_nano2 import _launcher_env, _read, metadata

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
TRAINING = "stage0_pretrain.training"
EVALUATION = "stage0_pretrain.evaluation"
SAVE_INTERVAL = 10
# 2 data-parallel ranks (one per node): the global batch of 16 split in micro batches of 8
TWO_RANKS = ["training.micro_batch_size=8", "training.warmup_iters=2", f"training.save_interval={SAVE_INTERVAL}"]


@pytest.fixture(scope="module")
def ft(tmp_path_factory, slurm_cluster_3nodes):
    """A launcher environment on the 3-node cluster, with profiles for 2-node training and its faults."""
    env = _launcher_env(tmp_path_factory.mktemp("ft"), slurm_cluster_3nodes)
    two_nodes = "[steps.training]\nnodes = 2\n[fault_tolerance]\nmax_attempts = 3\nhang_timeout = 15\n"
    profiles = {
        "ft": two_nodes,
        "ft-hang": two_nodes + '[env]\nPYTHONUNBUFFERED = "1"\nNEMOTRON_FAULT_HANG_AT = "12"\n',
        # USR1 10 s before the end (Slurm sends it up to 60 s earlier still), each iteration 0.25 s longer: the
        # step takes more than one attempt whatever the machine's speed. One failure allowed: the time-limit
        # segments that made progress are not failures (max_segments bounds them)
        "ft-time": '[steps.training]\ntime = "00:02:00"\n[slurm]\nsignal = "B:USR1@10"\n'
        '[fault_tolerance]\nmax_attempts = 1\nmax_segments = 20\n[env]\nPYTHONUNBUFFERED = "1"\n'
        'NEMOTRON_FAULT_SLOW_S = "0.75"\n',
    }
    for name, text in profiles.items():
        (env.profiles / f"{name}.toml").write_text(f'extends = "slurm-test"\n{text}')
    return env


def launch(env, profile: str, dataset, *overrides: str, target: str = "nano2.stage0.training", root: str = "ft"):
    """Detached; each scenario under its own artifact root, so none reuses another's outputs (same config)."""
    launched = env.launch(target, "--profile", profile, "--scale", "tiny", f"training.dataset_path={dataset.path}",
                          *overrides, "--artifact-root", str(env.root / root), "--detach")  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-3000:]
    return launched.document


def status(env, run_id: str) -> dict:
    done = env.launch("status", run_id)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.document


def wait_finished(env, run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        document = status(env, run_id)
        if document["state"] in ("completed", "failed", "cancelled"):
            return document
        time.sleep(2)
    env.launch("cancel", run_id)  # never leave a long job on the machine
    raise AssertionError(f"run {run_id} not finished in {timeout}s: {document}")


def progress(document: dict, job: str = TRAINING) -> dict:
    """The step's progress record ({} before its first one)."""
    try:
        return json.loads((Path(document["steps"][job]["artifact"]) / "progress.json").read_text())
    except (OSError, ValueError):
        return {}


def weights(step: dict) -> dict[str, bytes]:
    """Every weight and optimizer moment of the step's final checkpoint, as bytes (compared bit for bit)."""
    from nemotron.training.checkpointing import checkpoint_tensors

    checkpoint = Path(metadata(step["artifact"])["checkpoint_path"])
    return {name: tensor.numpy().tobytes() for name, tensor in checkpoint_tensors(checkpoint).items()}


@pytest.fixture(scope="module")
def uninterrupted(ft, curated_dataset):
    """2 ranks on 2 nodes, 40 iterations, nothing in the way: the reference weights; its status seen while it runs."""
    document = launch(ft, "ft", curated_dataset, "training.train_iters=40", *TWO_RANKS)
    seen = wait_for(lambda: _running_progress(ft, document["run_id"]), timeout=600, what="training progress")
    final = wait_finished(ft, document["run_id"], 900)
    return document, seen, final


def _running_progress(env, run_id: str) -> dict | None:
    step = status(env, run_id)["steps"][TRAINING]
    return step if step["state"] == "running" and step.get("progress", {}).get("done", 0) > 0 else None


def test_status_of_running_training_shows_iteration_total_and_loss(uninterrupted):
    _document, running, final = uninterrupted
    assert running["progress"]["total"] == 40 and 0 < running["progress"]["done"] <= 40
    assert running["progress"]["loss"] > 0 and running["attempts"][0]["nodes"].startswith("n")
    assert final["steps"][TRAINING]["state"] == "completed"


def test_a_lost_node_is_left_out_the_step_resumes_and_its_dependent_runs_once(ft, curated_dataset, uninterrupted,
                                                                              slurm_cluster_3nodes):  # fmt: skip
    cluster = slurm_cluster_3nodes
    document = launch(ft, "ft", curated_dataset, "training.train_iters=40", *TWO_RANKS, target="nano2.stage0",
                      root="lost-node")  # fmt: skip
    run_id, log_dir = document["run_id"], Path(document["run_dir"]) / "logs"
    lost = None
    try:
        wait_for(lambda: (progress(document).get("checkpoint_step") or 0) >= SAVE_INTERVAL, 600, "a checkpoint")
        job_id = document["steps"][TRAINING]["job_id"]
        nodes = cluster.run("squeue", "-h", "-j", job_id, "-o", "%N").stdout.strip()
        lost = cluster.run("scontrol", "show", "hostnames", nodes).stdout.split()[-1]
        lose_node(cluster, lost)
        # status sees the requeued job pending after a node failure and keeps it off the lost node
        wait_for(lambda: f"ExcNodeList={lost}" in _job(ft, cluster, run_id, job_id), 120, "the node excluded")
        final = wait_finished(ft, run_id, 900)
    finally:
        if lost:
            revive_node(cluster, lost)
    training, evaluation = final["steps"][TRAINING], final["steps"][EVALUATION]
    assert training["state"] == "completed", _read(log_dir / f"{TRAINING}.{job_id}.log")[-3000:]
    first, second = training["attempts"]
    assert (first["failure"], first["detail"], first["decision"]) == ("node_failure", lost, "retry")
    assert second["failure"] == "completed" and lost not in _hostnames(cluster, second["nodes"])
    assert "resumed from" in _read(log_dir / f"{TRAINING}.{job_id}.log")
    # bitwise the weights and optimizer state of the run nothing interrupted
    assert weights(training) == weights(uninterrupted[2]["steps"][TRAINING])
    assert evaluation["state"] == "completed" and len(evaluation["attempts"]) == 1
    assert evaluation["attempts"][0]["started_at"] >= second["ended_at"]


@pytest.fixture(scope="module")
def time_limited(ft, curated_dataset, uninterrupted):
    """Started before the hang scenario and checked after it (one node beside its two): the 2-minute limits take
    their time whatever else runs. One rank; USR1 10-70 s before the limit: an attempt trains for 30-90 s after its
    start-up (at most 120 iterations of 0.75 s and more), so 250 iterations take three attempts or more: at least
    two time-limit segments, more than max_attempts = 1."""
    document = launch(ft, "ft-time", curated_dataset, "training.train_iters=250", "training.warmup_iters=2",
                      "training.save_interval=25", "training.seed=7")  # fmt: skip
    yield document
    ft.launch("cancel", document["run_id"])  # a no-op once it has finished


def test_a_hung_rank_dumps_every_ranks_stacks_and_the_step_resumes(ft, curated_dataset, time_limited):
    document = launch(ft, "ft-hang", curated_dataset, "training.train_iters=30", *TWO_RANKS)
    final = wait_finished(ft, document["run_id"], 900)
    training = final["steps"][TRAINING]
    log = _read(Path(document["run_dir"]) / "logs" / f"{TRAINING}.{training['job_id']}.log")
    assert training["state"] == "completed", log[-3000:]
    first, second = training["attempts"]
    assert (first["failure"], first["decision"], second["failure"]) == ("hang", "retry", "completed")
    for rank in (0, 1):  # both ranks: the hung one, and the one waiting for it in the all-reduce
        idle = re.search(rf"watchdog: rank {rank} made no progress for (\d+) s", log)
        assert idle and 15 <= int(idle[1]) <= 15 + 5, log[-3000:]  # hang_timeout + its 1 s poll + a loaded machine
    assert "Thread 0x" in log or "Current thread 0x" in log  # faulthandler's stacks
    assert "inject_faults" in log  # the hung rank's stack shows where it stopped
    assert metadata(training["artifact"])["num_steps"] == 30


def test_a_time_limit_shorter_than_the_step_resumes_while_attempts_make_progress(ft, time_limited):
    final = wait_finished(ft, time_limited["run_id"], 1200)
    training = final["steps"][TRAINING]
    *limited, last = training["attempts"]
    assert training["state"] == "completed", training["attempts"]
    assert all((a["failure"], a["decision"]) == ("time_limit", "retry") for a in limited), limited
    assert len(limited) >= 2 > 1  # more segments than max_attempts = 1 allows failures: none of them was one
    assert last["failure"] == "completed"
    assert metadata(training["artifact"])["num_steps"] == 250


# ------------------------------------------------------------------------------- the toy, on the single node
@pytest.fixture
def toy_slurm(launcher_env, slurm_cluster):
    env = use_cluster(launcher_env, slurm_cluster)
    (env.profiles / "short.toml").write_text(
        'extends = "slurm-test"\n[steps.training]\ntime = "00:01:00"\n[slurm]\nsignal = "B:USR1@50"\n'
    )
    return env


def test_exit_93_is_not_retried_and_its_dependents_are_cancelled(toy_slurm):
    done = toy_slurm.launch("toy.stage0", "--profile", "slurm-test", "training.fail=true", "training.exit_code=93")
    training = done.document["steps"]["stage0_toy.training"]
    assert training["state"] == "failed" and done.document["steps"]["stage0_toy.evaluation"]["state"] == "cancelled"
    (attempt,) = status(toy_slurm, done.document["run_id"])["steps"]["stage0_toy.training"]["attempts"]
    assert (attempt["failure"], attempt["exit_code"], attempt["decision"]) == ("stopped", 93, "stop")


def test_an_application_error_names_the_step_attempt_and_exit_code(toy_slurm):
    done = toy_slurm.launch("toy.stage0", "--profile", "slurm-test", "training.fail=true")
    assert done.returncode != 0
    again = toy_slurm.launch("status", done.document["run_id"])
    steps = again.document["steps"]
    assert steps["stage0_toy.training"]["state"] == "failed"
    assert steps["stage0_toy.evaluation"]["state"] == "cancelled"
    assert "upstream stage0_toy.training failed" in steps["stage0_toy.evaluation"]["reason"]
    reason = steps["stage0_toy.training"]["reason"]
    assert reason.startswith("attempt 1 (job ") and "application error, exit code 3" in reason, reason
    assert "stage0_toy.training: attempt 1 (job" in again.stderr  # the attempt line under the table


def test_a_time_limit_without_progress_is_not_retried(toy_slurm):
    done = toy_slurm.launch("toy.stage0", "--profile", "short", "training.sleep_s=300")
    step = status(toy_slurm, done.document["run_id"])["steps"]["stage0_toy.training"]
    (attempt,) = step["attempts"]
    assert step["state"] == "failed", step
    assert (attempt["failure"], attempt["decision"]) == ("time_limit", "stop")
    assert attempt["detail"] == "no newer checkpoint in this attempt"


# ------------------------------------------------------------------------------------------------ helpers
def _job(env, cluster, run_id: str, job_id: str) -> str:
    status(env, run_id)  # the launcher's status is what excludes the failed node from the pending job
    return cluster.run("scontrol", "show", "job", job_id, check=False).stdout


def _hostnames(cluster, hostlist: str) -> list[str]:
    return cluster.run("scontrol", "show", "hostnames", hostlist).stdout.split()
