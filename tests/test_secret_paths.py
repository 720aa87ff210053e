"""Where a profile's secret travels on the real Slurm cluster with accounting: to the job through the run's 0600 file
only — never in the environment sbatch hands slurmctld, which saves it in its StateSaveLocation and, with
``AccountingStoreFlags=job_env`` (on in this fixture, as a site may set it), in the accounting database."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from test_slurm_executor import run_ids, use_cluster, wait_for


def files_holding(value: str, *bases: Path) -> list[Path]:
    found = []
    for base in bases:
        for path in base.rglob("*"):
            if path.is_file() and not path.is_symlink() and value.encode() in path.read_bytes():
                found.append(path)
    return found


@pytest.mark.slurm
def test_a_secret_reaches_the_job_and_no_file_or_record_of_the_scheduler(launcher_env, slurm_cluster_acct):
    env = use_cluster(launcher_env, slurm_cluster_acct)
    (env.profiles / "acctsecret.toml").write_text('extends = "slurm-test"\nsecrets = ["NEMOTRON_TEST_TOKEN"]\n')
    secret = "tok-" + os.urandom(8).hex()
    launched = env.launch(
        "toy.stage0", "--profile", "acctsecret", "--detach", "training.sleep_s=2",
        "training.digest_of=NEMOTRON_TEST_TOKEN", NEMOTRON_TEST_TOKEN=secret,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr
    jobs = run_ids(launched.document)
    state_dir = slurm_cluster_acct.base / "state"
    # While the jobs wait in the queue slurmctld holds each one's saved environment (hash.N/job.ID/environment):
    # it is there, and the secret is not in it.
    saved = [p for p in state_dir.rglob("environment") if p.parent.name.removeprefix("job.") in jobs]
    assert saved, sorted(str(p) for p in state_dir.rglob("*"))
    assert all(b"PATH=" in p.read_bytes() for p in saved)
    assert files_holding(secret, state_dir) == []

    run_dir = Path(launched.document["run_dir"])
    wait_for(lambda: not (run_dir / "secrets.env").exists(), timeout=180, what="the run to end")
    status = env.launch("status", launched.document["run_id"])
    assert status.document["state"] == "completed", status.stderr
    training = launched.document["steps"]["stage0_toy.training"]["job_id"]
    log = (run_dir / "logs" / f"stage0_toy.training.{training}.log").read_text()
    assert f"NEMOTRON_TEST_TOKEN sha256 {hashlib.sha256(secret.encode()).hexdigest()}" in log  # it reached the job

    base = slurm_cluster_acct.base
    assert files_holding(secret, state_dir, base / "spool", base / "log", env.root, env.state) == []
    # the accounting database's copy of each batch job's environment, as sacct shows it
    for job in jobs:
        envs = slurm_cluster_acct.run("sacct", "-j", job, "--env-vars").stdout
        assert "PATH=" in envs, envs  # job_env is on: the environment is stored
        assert secret not in envs
    assert secret not in launched.stdout + launched.stderr + status.stdout + status.stderr
