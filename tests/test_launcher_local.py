"""The local executor through the real CLI, on the toy recipe's real (fast) steps: run, reuse, fail, detach, cancel."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from launcher_env import LauncherEnv

TOY_STAGE0 = ("stage0_toy.data_curation", "stage0_toy.training", "stage0_toy.evaluation")


def _states(document: dict) -> dict[str, str]:
    return {name: step["state"] for name, step in document["steps"].items()}


def _wait_for_state(env: LauncherEnv, run_id: str, step: str, state: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = json.loads((env.root / "runs" / run_id / "run.json").read_text())
        if record["steps"][step]["state"] == state:
            return record
        time.sleep(0.2)
    raise AssertionError(f"{step} never reached {state}: {record['steps'][step]}")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] == "Z"


def test_stage_runs_then_reuses_every_step(launcher_env: LauncherEnv) -> None:
    first = launcher_env.launch("toy.stage0", "training.lr=0.5")
    assert first.returncode == 0, first.stderr
    document = first.document
    assert _states(document) == dict.fromkeys(TOY_STAGE0, "completed")
    for step in document["steps"].values():
        assert (Path(step["artifact"]) / "metadata.json").is_file()
        assert Path(step["artifact"]).is_relative_to(launcher_env.root / "toy" / "stage0_toy")
    record = json.loads((Path(document["run_dir"]) / "run.json").read_text())
    assert record["plan"]["jobs"][1]["args"][-2:] == ["--lr", "0.5"]
    assert (Path(document["run_dir"]) / "logs" / "stage0_toy.training.log").read_text().count("training on") == 1

    second = launcher_env.launch("toy.stage0", "training.lr=0.5")
    assert second.returncode == 0, second.stderr
    assert _states(second.document) == dict.fromkeys(TOY_STAGE0, "reused")
    assert [s["artifact"] for s in second.document["steps"].values()] == [
        s["artifact"] for s in document["steps"].values()
    ]

    index = [json.loads(line) for line in (launcher_env.state / "runs.jsonl").read_text().splitlines()]
    launches = [e["run_id"] for e in index if "outcome" not in e]  # outcome lines: each run's row once finished
    assert launches == [document["run_id"], second.document["run_id"]]
    assert [e["outcome"]["state"] for e in index if "outcome" in e] == ["completed", "completed"]
    assert document["run_id"] < second.document["run_id"]  # ids sort by time

    status = launcher_env.launch("status", document["run_id"])
    assert status.returncode == 0 and _states(status.document) == dict.fromkeys(TOY_STAGE0, "completed")
    assert "training_loss=" in status.stderr  # headline metric column
    logs = launcher_env.launch("logs", document["run_id"], "training")
    assert "training on" in logs.stderr and logs.document["step"] == "stage0_toy.training"

    # One step alone finds its input (the stage's data) and its own output: reused; a new lr reruns only it.
    alone = launcher_env.launch("toy.stage0.training", "training.lr=0.5", "--dry-run").document
    assert alone["jobs"]["stage0_toy.training"]["state"] == "reuse"
    changed = launcher_env.launch("toy.stage0", "training.lr=0.25", "--dry-run").document
    assert [j["state"] for j in changed["jobs"].values()] == ["reuse", "run", "run"]
    upstream = launcher_env.launch("toy.stage0", "training.lr=0.5", "data_curation.num_examples=20", "--dry-run")
    assert [j["state"] for j in upstream.document["jobs"].values()] == ["run", "run", "run"]
    forced = launcher_env.launch("toy.stage0", "training.lr=0.5", "--force", "--dry-run").document
    assert [j["state"] for j in forced["jobs"].values()] == ["run", "run", "run"]
    # stage1 starts from stage0's checkpoint, found on disk (the newest complete one at this scale)
    stage1 = launcher_env.launch("toy.stage1", "--dry-run").document
    assert stage1["jobs"]["stage1_toy.training"]["inputs"]["init_checkpoint"].startswith(
        str(launcher_env.root / "toy" / "stage0_toy" / "training")
    )


def test_failing_step_stops_downstream_and_shows_its_log(launcher_env: LauncherEnv) -> None:
    result = launcher_env.launch("toy.stage0", "training.fail=true")
    assert result.returncode == 1
    assert _states(result.document) == {
        "stage0_toy.data_curation": "completed",
        "stage0_toy.training": "failed",
        "stage0_toy.evaluation": "cancelled",
    }
    assert "step stage0_toy.training failed (exit code 3" in result.stderr
    assert "toy training failed on purpose" in result.stderr  # the tail of its log
    status = launcher_env.launch("status")  # the newest run
    assert "toy training failed on purpose" in status.stderr
    assert launcher_env.launch("logs", result.document["run_id"]).document["step"] == "stage0_toy.training"


def test_detached_run_can_be_followed(launcher_env: LauncherEnv) -> None:
    result = launcher_env.launch("toy.stage0", "--detach", "training.sleep_s=2")
    assert result.returncode == 0, result.stderr
    assert result.document["state"] == "running"  # returned while the runner works in the background
    run_id = result.document["run_id"]
    followed = launcher_env.launch("logs", run_id, "stage0.training", "--follow", timeout=120)
    assert followed.returncode == 0 and "training on" in followed.stderr
    _wait_for_state(launcher_env, run_id, "stage0_toy.evaluation", "completed")
    assert _states(launcher_env.launch("status", run_id).document) == dict.fromkeys(TOY_STAGE0, "completed")


def test_status_follow_shows_each_change_and_returns_when_the_run_ends(launcher_env: LauncherEnv) -> None:
    result = launcher_env.launch("toy.stage0", "--detach", "training.sleep_s=3")
    assert result.returncode == 0 and result.document["state"] == "running", result.stderr
    run_id = result.document["run_id"]
    followed = launcher_env.launch("status", run_id, "--follow", timeout=120)
    assert followed.returncode == 0, followed.stderr
    assert followed.document["state"] == "completed"  # it returned because the run ended
    lines = [line for line in followed.stderr.splitlines() if line.startswith(f"[{run_id}] stage0_toy.training")]
    states = [line.rsplit(": ", 1)[-1] for line in lines]
    assert "running" in states and states[-1] == "completed", followed.stderr  # one line per change, as it went


def test_a_run_executes_its_dry_runs_text_with_the_run_filled_in(launcher_env: LauncherEnv) -> None:
    """What ``--dry-run`` shows is what runs: the detached runner (another process, reading the run record) executes
    the words of each job's text with ``{run_id}`` filled in, and nothing else."""
    dry = launcher_env.launch("toy.stage0", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    run_id = launcher_env.launch("toy.stage0", "--detach").document["run_id"]
    record = _wait_for_state(launcher_env, run_id, "stage0_toy.evaluation", "completed")
    run_dir = launcher_env.root / "runs" / run_id
    assert list(dry.document["rendered"]) == list(TOY_STAGE0)
    for name, text in dry.document["rendered"].items():
        assert "NEMOTRON_RUN_ID='{run_id}'" in text  # what exists only once the run does is a placeholder
        bound = text.replace("{run_id}", run_id)
        assert record["executor_data"]["commands"][name] == bound
        executed = (run_dir / "logs" / f"{name}.log").read_text().splitlines()[0]  # the runner's "$ command" line
        assert executed == f"$ {shlex.join(shlex.split(bound, comments=True))}"


def test_bind_refuses_a_value_that_would_need_shell_quoting() -> None:
    from nemotron.launcher.executors.base import ExecutorError, bind

    text = "--job-name='{run_id}.x' -v '{run_dir}/secrets.env' ${HOME} {print $1} {stage0.training}"
    bound = bind(text, {"run_id": "toy-1", "run_dir": "/a/runs/toy-1", "stage0.training": "42"})
    assert bound == "--job-name='toy-1.x' -v '/a/runs/toy-1/secrets.env' ${HOME} {print $1} 42"
    for value in ("/my runs/toy-1", "/a/it's"):
        with pytest.raises(ExecutorError) as refused:
            bind(text, {"run_dir": value})
        message = str(refused.value)
        assert "\n" not in message and "{run_dir}" in message and repr(value) in message


def test_cancel_stops_a_detached_run(launcher_env: LauncherEnv) -> None:
    run_id = launcher_env.launch("toy.stage0", "--detach", "training.sleep_s=120").document["run_id"]
    record = _wait_for_state(launcher_env, run_id, "stage0_toy.training", "running")
    step_pid = int(record["steps"]["stage0_toy.training"]["job_id"])
    cancelled = launcher_env.launch("cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.document["state"] == "cancelled"
    assert _states(cancelled.document)["stage0_toy.training"] == "cancelled"
    assert _states(cancelled.document)["stage0_toy.evaluation"] == "cancelled"
    assert _gone(step_pid)


def test_ctrl_c_terminates_the_running_step(launcher_env: LauncherEnv) -> None:
    process = launcher_env.popen(
        "toy.stage0", "training.sleep_s=120", stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 300
        while not list((launcher_env.root / "runs").glob("*/run.json")) and time.monotonic() < deadline:
            time.sleep(0.2)
        run_id = next((launcher_env.root / "runs").glob("*/run.json")).parent.name
        record = _wait_for_state(launcher_env, run_id, "stage0_toy.training", "running")
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert json.loads(stdout)["state"] == "cancelled"
    assert _gone(int(record["steps"]["stage0_toy.training"]["job_id"]))


@pytest.mark.slow
def test_distributed_step_runs_under_torchrun(launcher_env: LauncherEnv) -> None:
    (launcher_env.profiles / "two.toml").write_text('extends = "local"\n[local]\nnproc_per_node = 2\n')
    result = launcher_env.launch(
        "toy.stage0.training", "--profile", "two", f"training.dataset_path={_dataset(launcher_env)}"
    )
    assert result.returncode == 0, result.stderr
    log = (Path(result.document["run_dir"]) / "logs" / "stage0_toy.training.log").read_text()
    assert "torch.distributed.run --standalone --nproc-per-node=2" in log
    assert "(rank 0)" in log and "(rank 1)" in log


def _dataset(env: LauncherEnv) -> Path:
    result = env.launch("toy.stage0.data_curation")
    assert result.returncode == 0, result.stderr
    return Path(result.document["steps"]["stage0_toy.data_curation"]["artifact"])
