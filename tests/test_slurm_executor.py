"""The Slurm executor on real clusters (tests/slurm_cluster.py), driving the real CLI with the toy recipe."""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path

import pytest
from slurm_calls import SlurmCalls

pytestmark = [pytest.mark.slurm]


def use_cluster(launcher_env, cluster):
    launcher_env.env["SLURM_CONF"] = str(cluster.conf)
    return launcher_env


@pytest.fixture
def on_slurm(launcher_env, slurm_cluster):
    return use_cluster(launcher_env, slurm_cluster)


def run_ids(document: dict) -> list[str]:
    return [step["job_id"] for step in document["steps"].values() if step["job_id"]]


def wait_for(predicate, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached in {timeout}s")


def test_stage_completes_with_chained_artifacts(on_slurm, slurm_cluster):
    launched = on_slurm.launch("toy.stage0", "--profile", "slurm-test")
    assert launched.returncode == 0, launched.stderr
    document = launched.document
    assert document["state"] == "completed"
    assert [s["state"] for s in document["steps"].values()] == ["completed"] * 3
    assert all(job_id.isdigit() for job_id in run_ids(document)) and len(set(run_ids(document))) == 3
    steps = document["steps"]
    evaluation = json.loads((Path(steps["stage0_toy.evaluation"]["artifact"]) / "metadata.json").read_text())
    training = json.loads((Path(steps["stage0_toy.training"]["artifact"]) / "metadata.json").read_text())
    assert evaluation["lineage"][0]["path"] == steps["stage0_toy.training"]["artifact"]
    assert training["lineage"][0]["path"] == steps["stage0_toy.data_curation"]["artifact"]
    assert training["producer"] == f"slurm:{steps['stage0_toy.training']['job_id']}"
    status = on_slurm.launch("status", document["run_id"])
    assert status.returncode == 0
    assert {name: (s["state"], s["job_id"]) for name, s in status.document["steps"].items()} == {
        name: ("completed", s["job_id"]) for name, s in steps.items()
    }
    script = Path(document["run_dir"]) / "sbatch" / "stage0_toy.training.sbatch"
    assert f"--dependency=afterok:{steps['stage0_toy.data_curation']['job_id']}" in script.read_text()


def test_the_scripts_submitted_are_the_dry_runs_with_the_run_and_job_ids_filled_in(on_slurm, slurm_cluster):
    """What ``--dry-run`` shows is what runs: only the placeholders for what exists once submitted differ."""
    dry = on_slurm.launch("toy.stage0", "--profile", "slurm-test", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    launched = on_slurm.launch("toy.stage0", "--profile", "slurm-test")
    assert launched.returncode == 0, launched.stderr
    run_id, run_dir = launched.document["run_id"], Path(launched.document["run_dir"])
    ids = {name: step["job_id"] for name, step in launched.document["steps"].items()}
    assert set(dry.document["rendered"]) == set(ids)
    for name, text in dry.document["rendered"].items():
        for placeholder, value in {"run_id": run_id, **ids}.items():
            text = text.replace(f"{{{placeholder}}}", value)
        submitted = (run_dir / "sbatch" / f"{name}.sbatch").read_text().splitlines()
        assert len(submitted) == len(text.splitlines()), name
        for shown, ran in zip(text.splitlines(), submitted, strict=True):  # a placeholder's braces were quoted
            assert shown == ran or shlex.split(shown) == shlex.split(ran), (name, shown, ran)


def test_failed_step_cancels_its_dependents_and_status_shows_its_log(on_slurm, slurm_cluster):
    launched = on_slurm.launch("toy.stage0", "--profile", "slurm-test", "training.fail=true")
    assert launched.returncode == 1
    steps = launched.document["steps"]
    assert steps["stage0_toy.data_curation"]["state"] == "completed"
    assert steps["stage0_toy.training"]["state"] == "failed"
    assert steps["stage0_toy.evaluation"]["state"] == "cancelled"  # not left PENDING forever
    assert not set(run_ids(launched.document)) & set(slurm_cluster.queue_active())
    status = on_slurm.launch("status", launched.document["run_id"])
    assert "stage0_toy.training failed" in status.stderr
    assert "toy training failed on purpose" in status.stderr  # its log tail
    record = json.loads((Path(launched.document["run_dir"]) / "run.json").read_text())
    assert record["steps"]["stage0_toy.evaluation"]["reason"] == "upstream stage0_toy.training failed"


def test_cancel_leaves_no_job_of_the_run_queued(on_slurm, slurm_cluster):
    launched = on_slurm.launch("toy.stage0", "--profile", "slurm-test", "--detach", "training.sleep_s=300")
    assert launched.returncode == 0, launched.stderr
    ids = run_ids(launched.document)
    wait_for(lambda: on_slurm.launch("status", launched.document["run_id"]).document["steps"]["stage0_toy.training"]
             ["state"] == "running", what="training running")  # fmt: skip
    cancelled = on_slurm.launch("cancel", launched.document["run_id"])
    assert cancelled.returncode == 0, cancelled.stderr
    assert not set(ids) & set(slurm_cluster.queue_active())
    states = {s["state"] for name, s in cancelled.document["steps"].items() if name != "stage0_toy.data_curation"}
    assert states == {"cancelled"}


def test_sbatch_rejection_is_one_line_and_leaves_nothing_queued(on_slurm, slurm_cluster):
    (on_slurm.profiles / "badpart.toml").write_text('extends = "slurm-test"\n[steps.training]\npartition = "nope"\n')
    before = set(slurm_cluster.queue())
    launched = on_slurm.launch("toy.stage0", "--profile", "badpart")
    assert launched.returncode == 2
    assert launched.stderr.strip().splitlines() == [
        "error: Slurm refuses job stage0_toy.training: invalid partition specified: nope; nothing submitted"
    ]
    assert launched.stdout == ""
    assert set(slurm_cluster.queue()) == before  # preflight: not even data_curation was queued
    assert on_slurm.files() == []  # no run record


def test_a_job_over_its_partitions_max_time_is_refused_before_anything_is_queued(on_slurm, slurm_cluster):
    # `short` has MaxTime=00:10:00 and the test cluster does not enforce partition limits at submit: sbatch would
    # take the job and leave it pending forever (PartitionTimeLimit).
    (on_slurm.profiles / "short.toml").write_text(
        'extends = "slurm-test"\n[steps.training]\npartition = "short"\ntime = "01:00:00"\n'
    )
    before = set(slurm_cluster.queue())
    launched = on_slurm.launch("toy.stage0", "--profile", "short")
    assert launched.returncode == 2, launched.stderr
    assert launched.stderr.strip().splitlines() == [
        "error: job stage0_toy.training asks for --time=01:00:00, over partition short's MaxTime (00:10:00): "
        "set a shorter time in the profile's [steps] table; nothing submitted"
    ]
    assert set(slurm_cluster.queue()) == before and on_slurm.files() == []
    (on_slurm.profiles / "short-ok.toml").write_text(
        'extends = "slurm-test"\n[steps.training]\npartition = "short"\ntime = "00:10:00"\n'
    )
    launched = on_slurm.launch("toy.stage0", "--profile", "short-ok")
    assert launched.returncode == 0, launched.stderr


def _secret_profile(env, name: str = "withsecret") -> str:
    (env.profiles / f"{name}.toml").write_text('extends = "slurm-test"\nsecrets = ["NEMOTRON_TEST_TOKEN"]\n')
    return name


def test_secret_reaches_the_job_through_a_private_file_that_outlives_no_job(on_slurm, slurm_cluster):
    secret = "tok-" + os.urandom(6).hex()
    launched = on_slurm.launch(
        "toy.stage0", "--profile", _secret_profile(on_slurm), "--detach", "training.sleep_s=3",
        NEMOTRON_TEST_TOKEN=secret,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr
    run_dir = Path(launched.document["run_dir"])
    secrets_file = run_dir / "secrets.env"
    assert secrets_file.stat().st_mode & 0o777 == 0o600  # while jobs of the run may still start
    assert secrets_file.read_text() == f"NEMOTRON_TEST_TOKEN={secret}\n"
    cleanup = json.loads((run_dir / "run.json").read_text())["executor_data"]["cleanup_job"]
    wait_for(lambda: cleanup not in slurm_cluster.queue_active(), timeout=180, what="the run to end")
    assert not secrets_file.exists()  # removed by the run's cleanup job, with nobody watching
    status = on_slurm.launch("status", launched.document["run_id"])
    assert status.document["state"] == "completed"
    assert "secrets-cleanup" in (run_dir / "sbatch" / "secrets-cleanup.sbatch").read_text()
    for path in [*run_dir.rglob("*"), *on_slurm.state.rglob("*")]:
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path
    assert secret not in launched.stdout + launched.stderr + status.stdout + status.stderr


def test_cancel_removes_the_runs_secrets(on_slurm, slurm_cluster):
    launched = on_slurm.launch(
        "toy.stage0", "--profile", _secret_profile(on_slurm), "--detach", "training.sleep_s=300",
        NEMOTRON_TEST_TOKEN="tok-cancel",
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr
    secrets_file = Path(launched.document["run_dir"]) / "secrets.env"
    assert secrets_file.exists()
    cancelled = on_slurm.launch("cancel", launched.document["run_id"])
    assert cancelled.returncode == 0, cancelled.stderr
    assert not secrets_file.exists()
    assert not set(run_ids(launched.document)) & set(slurm_cluster.queue_active())


def test_a_requeued_job_still_reads_the_secrets_and_they_go_after_it_completes(on_slurm, slurm_cluster):
    (on_slurm.profiles / "requeue.toml").write_text('extends = "slurm-test"\nsecrets = ["NEMOTRON_TEST_TOKEN"]\n')
    launched = on_slurm.launch(
        "toy.stage0", "--profile", "requeue", "--detach", "training.sleep_s=30", NEMOTRON_TEST_TOKEN="tok-requeue"
    )
    assert launched.returncode == 0, launched.stderr
    run_dir, job_id = Path(launched.document["run_dir"]), launched.document["steps"]["stage0_toy.training"]["job_id"]
    log = run_dir / "logs" / f"stage0_toy.training.{job_id}.log"
    wait_for(lambda: log.exists() and "training on" in log.read_text(), timeout=120, what="training running")
    slurm_cluster.run("scancel", "--batch", "--signal=USR1", job_id)  # what Slurm sends before the time limit
    wait_for(lambda: "requeued to resume from its last checkpoint" in log.read_text(), timeout=60, what="requeue")
    state = slurm_cluster.run("squeue", "-h", "-j", job_id, "-o", "%T")
    wait_for(lambda: "PENDING" in slurm_cluster.run("squeue", "-h", "-j", job_id, "-o", "%T").stdout, what="pending")
    assert (run_dir / "secrets.env").exists(), state  # the requeued job has not ended: its secrets stay
    wait_for(lambda: not (run_dir / "secrets.env").exists(), timeout=180, what="secrets removed")
    status = on_slurm.launch("status", launched.document["run_id"])
    assert status.document["state"] == "completed", status.stderr
    assert log.read_text().count("training on") == 2  # ran again after the requeue, reading the secrets file


# ----------------------------------------------------------------------------------------- polling & accounting
def _calls_per_status(env, run_id: str, calls: SlurmCalls, polls: int = 3) -> list[int]:
    counts = []
    for _ in range(polls):
        calls.take()
        status = env.launch("status", run_id, PATH=calls.path(os.environ["PATH"]))
        assert status.returncode == 0, status.stderr
        counts.append(sum(calls.take().values()))
    return counts


@pytest.mark.parametrize("accounting", [False, True], ids=["no-accounting", "accounting"])
def test_one_scheduler_call_per_poll_whatever_the_number_of_jobs(
    launcher_env, slurm_cluster, slurm_cluster_acct, tmp_path, accounting
):
    cluster = slurm_cluster_acct if accounting else slurm_cluster
    env = use_cluster(launcher_env, cluster)
    calls = SlurmCalls(tmp_path / "calls")
    per_run = {}
    for target in ("toy.stage0", "toy.stage0.data_curation"):
        launched = env.launch(target, "--profile", "slurm-test", "--detach", "--force", "training.sleep_s=300"
                              if target == "toy.stage0" else "data_curation.num_examples=3")  # fmt: skip
        assert launched.returncode == 0, launched.stderr
        run_id = launched.document["run_id"]
        if accounting:  # slurmdbd knows every job of the run (sacct answers alone)
            ids = ",".join(run_ids(launched.document))
            wait_for(lambda i=ids: len(cluster.run("sacct", "-X", "-n", "-j", i).stdout.splitlines())
                     == len(i.split(",")), what="jobs in accounting")  # fmt: skip
        env.launch("status", run_id)  # first poll learns whether accounting is on
        per_run[target] = (_calls_per_status(env, run_id, calls), launched.document)
    stage_counts, stage_doc = per_run["toy.stage0"]
    assert stage_counts == [1, 1, 1], stage_counts
    single_counts, _ = per_run["toy.stage0.data_curation"]
    assert all(count <= 1 for count in single_counts)
    env.launch("cancel", stage_doc["run_id"])


def test_status_with_real_accounting_reports_exit_codes(launcher_env, slurm_cluster_acct):
    env = use_cluster(launcher_env, slurm_cluster_acct)
    launched = env.launch("toy.stage0", "--profile", "slurm-test", "training.fail=true")
    assert launched.returncode == 1, launched.stderr
    record = json.loads((Path(launched.document["run_dir"]) / "run.json").read_text())
    assert record["executor_data"]["accounting"] is True
    assert record["steps"]["stage0_toy.training"]["state"] == "failed"
    assert record["steps"]["stage0_toy.training"]["exit_code"] == 3
    assert record["steps"]["stage0_toy.evaluation"]["state"] == "cancelled"


# ----------------------------------------------------------------------------------------- remote submission
def test_remote_submission_through_ssh_ships_code_once(on_slurm, loopback_ssh, tmp_path):
    remote_dir = tmp_path / "remote-code"
    (on_slurm.profiles / "viassh.toml").write_text(loopback_ssh.profile_toml("slurm-test", remote_dir))
    env = {k: v for k, v in on_slurm.env.items() if k != "SLURM_CONF"}  # only the ssh session knows the cluster
    on_slurm.env = env
    first = on_slurm.launch("toy.stage0", "--profile", "viassh")
    assert first.returncode == 0, first.stderr
    assert first.document["state"] == "completed"
    (code_dir,) = [p for p in remote_dir.iterdir() if not p.name.endswith(".partial")]
    assert (code_dir / "src/nemotron/launcher/executors/slurm.py").is_file() and (code_dir / ".complete").exists()
    assert f"code shipped to 127.0.0.1:{code_dir}" in first.stderr
    script = (Path(first.document["run_dir"]) / "sbatch" / "stage0_toy.training.sbatch").read_text()
    assert f'export PYTHONPATH={code_dir}/src"' in script  # the job runs the shipped code ({code_dir}, bound)
    status = on_slurm.launch("status", first.document["run_id"])
    assert {s["state"] for s in status.document["steps"].values()} == {"completed"}


def test_code_snapshot_is_content_addressed_and_sent_once(loopback_ssh, tmp_path):
    import subprocess

    from nemotron.launcher.executors.slurm_options import SSHOptions
    from nemotron.launcher.remote import SSHShell, ship_code

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "tracked.py").write_text("x = 1\n")
    (repo / "untracked.py").write_text("y = 2\n")
    (repo / ".gitignore").write_text("ignored/\n")
    (repo / "ignored").mkdir()
    (repo / "ignored" / "big.bin").write_text("not shipped")
    subprocess.run(["git", "-C", str(repo), "add", "tracked.py", ".gitignore"], check=True)
    shell = SSHShell(SSHOptions.model_validate(loopback_ssh.options(tmp_path / "remote")))
    first, sent = ship_code(shell, str(tmp_path / "remote"), repo)
    assert sent and sorted(p.name for p in Path(first).iterdir()) == [".complete", ".gitignore", "tracked.py",
                                                                       "untracked.py"]  # fmt: skip
    again, sent_again = ship_code(shell, str(tmp_path / "remote"), repo)
    assert (again, sent_again) == (first, False)  # unchanged code is not sent again
    (repo / "untracked.py").write_text("y = 3\n")
    changed, sent_changed = ship_code(shell, str(tmp_path / "remote"), repo)
    assert sent_changed and changed != first and (Path(changed) / "untracked.py").read_text() == "y = 3\n"
