"""Local runs and their processes: steps die with a killed launcher, status stays true, cancel signals only what the
run started and still owns, a step that cannot be started fails its run in one line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from launcher_env import LauncherEnv
from test_launcher_local import TOY_STAGE0, _gone, _states, _wait_for_state


def _record(env: LauncherEnv, run_id: str) -> dict:
    return json.loads((env.root / "runs" / run_id / "run.json").read_text())


def _start_attached(env: LauncherEnv, *args: str) -> tuple[subprocess.Popen, str]:
    process = env.popen(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((env.root / "runs").glob("*/run.json")) and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.1)
    return process, next((env.root / "runs").glob("*/run.json")).parent.name


def _step_pid(record: dict, job: str) -> int:
    return int(record["executor_data"]["processes"][job].partition(":")[0])


def _wait_gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _gone(pid)


def test_sigkill_of_the_launcher_ends_its_steps_and_a_rerun_reuses_what_completed(launcher_env: LauncherEnv) -> None:
    launcher, run_id = _start_attached(launcher_env, "toy.stage0", "training.sleep_s=120")
    record = _wait_for_state(launcher_env, run_id, "stage0_toy.training", "running")
    step_pid = _step_pid(record, "stage0_toy.training")
    launcher.kill()  # SIGKILL: no handler of the launcher runs
    launcher.wait(timeout=30)
    assert _wait_gone(step_pid), "the training step outlived the launcher that started it"

    status = launcher_env.launch("status", run_id)
    assert status.returncode == 0, status.stderr
    assert _states(status.document) == {
        "stage0_toy.data_curation": "completed",
        "stage0_toy.training": "cancelled",
        "stage0_toy.evaluation": "cancelled",
    }
    assert "stopped with its runner" in status.stderr, status.stderr

    rerun = launcher_env.launch("toy.stage0", "training.sleep_s=120", "--dry-run")
    assert [job["state"] for job in rerun.document["jobs"].values()] == ["reuse", "run", "run"]


def test_status_and_cancel_count_an_artifact_completed_after_the_runner_died(launcher_env: LauncherEnv) -> None:
    launcher, run_id = _start_attached(launcher_env, "toy.stage0", "training.sleep_s=2")
    record = _wait_for_state(launcher_env, run_id, "stage0_toy.training", "running")
    launcher.send_signal(signal.SIGSTOP)  # the runner cannot record what its step does from here on
    try:
        output = Path(record["steps"]["stage0_toy.training"]["artifact"])
        deadline = time.monotonic() + 60
        while not (output / "metadata.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _wait_gone(_step_pid(record, "stage0_toy.training"))
    finally:
        launcher.kill()
        launcher.wait(timeout=30)
    assert _record(launcher_env, run_id)["steps"]["stage0_toy.training"]["state"] == "running"  # as recorded

    status = launcher_env.launch("status", run_id)
    assert _states(status.document)["stage0_toy.training"] == "completed"
    assert _states(status.document)["stage0_toy.evaluation"] == "cancelled"
    cancelled = launcher_env.launch("cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert _states(cancelled.document)["stage0_toy.training"] == "completed"
    assert (
        launcher_env.launch("toy.stage0", "training.sleep_s=2", "--dry-run").document["jobs"]["stage0_toy.training"][
            "state"
        ]
        == "reuse"
    )


def test_cancel_never_signals_a_process_that_only_shares_a_recorded_pid(launcher_env: LauncherEnv) -> None:
    done = launcher_env.launch("toy.stage0")
    assert done.returncode == 0, done.stderr
    run_file = Path(done.document["run_dir"]) / "run.json"
    bystander = subprocess.Popen(["sleep", "60"])  # a process that now holds a pid the run once had
    try:
        record = json.loads(run_file.read_text())
        record["executor_data"]["runner"] = f"{bystander.pid}:1"  # same pid, another start time
        record["executor_data"]["processes"] = dict.fromkeys(TOY_STAGE0, f"{bystander.pid}:1")
        for job in TOY_STAGE0:
            record["steps"][job]["job_id"] = str(bystander.pid)
        run_file.write_text(json.dumps(record))
        finished = launcher_env.launch("cancel", done.document["run_id"])
        assert finished.returncode == 0 and _states(finished.document) == dict.fromkeys(TOY_STAGE0, "completed")
        assert bystander.poll() is None, "cancel signalled a process of a finished run"

        record["steps"]["stage0_toy.training"]["state"] = "running"  # as if its runner had died mid-step
        record["steps"]["stage0_toy.evaluation"]["state"] = "planned"
        run_file.write_text(json.dumps(record))
        cancelled = launcher_env.launch("cancel", done.document["run_id"])
        assert cancelled.returncode == 0, cancelled.stderr
        time.sleep(0.5)
        assert bystander.poll() is None, "cancel signalled a process that merely reused the runner's pid"
        # Both artifacts are complete on disk: cancel must not turn finished work into "cancelled".
        assert _states(cancelled.document) == dict.fromkeys(TOY_STAGE0, "completed")
    finally:
        bystander.kill()
        bystander.wait()


def test_a_step_that_cannot_be_started_fails_the_run_in_one_line(launcher_env: LauncherEnv) -> None:
    # One environment value over the kernel's per-string limit (128 KiB): exec fails with E2BIG.
    (launcher_env.profiles / "huge.toml").write_text(f'extends = "local"\n[env]\nHUGE = "{"x" * (1 << 20)}"\n')
    result = launcher_env.launch("toy.stage0", "--profile", "huge")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert _states(result.document) == {
        "stage0_toy.data_curation": "failed",
        "stage0_toy.training": "cancelled",
        "stage0_toy.evaluation": "cancelled",
    }
    assert "could not be started: Argument list too long" in result.stderr
    status = launcher_env.launch("status", result.document["run_id"])
    assert status.document["state"] == "failed"


def test_a_pid_is_signalled_only_while_it_is_the_recorded_process() -> None:
    from nemotron.launcher.processes import identify, is_running, signal_process

    child = subprocess.Popen(["sleep", "60"])
    try:
        identity = identify(child.pid)
        assert identity is not None and is_running(identity)
        assert not signal_process(f"{child.pid}:0", signal.SIGTERM)  # a pid alone is not enough
        assert child.poll() is None
        assert signal_process(identity, signal.SIGTERM)
        child.wait(timeout=10)
        assert not is_running(identity)
        assert not signal_process(identity, signal.SIGTERM)
        assert not is_running(None) and not is_running("garbage") and not is_running(f"{os.getpid()}:0")
    finally:
        child.kill()
        child.wait()


# ------------------------------------------------------------------------------------ concurrent launches
def test_two_identical_launches_at_once_never_produce_one_output_twice(launcher_env: LauncherEnv) -> None:
    args = ("toy.stage0", "training.sleep_s=4")
    launches = [launcher_env.popen(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in launches]
    assert sorted(rc for rc, _, _ in results) == [0, 2], results
    (winner_out,) = [out for rc, out, _ in results if rc == 0]
    (loser_err,) = [err for rc, _, err in results if rc == 2]
    winner = json.loads(winner_out)["run_id"]
    # data_curation or training, depending on how far the first run got when the second claimed
    assert re.match(rf"error: stage0_toy\.\w+ is already being produced by run {winner} ", loser_err), loser_err
    assert len(loser_err.strip().splitlines()) == 1
    assert [p.name for p in (launcher_env.root / "runs").iterdir()] == [winner]  # the refused launch left nothing
    log = launcher_env.root / "runs" / winner / "logs" / "stage0_toy.training.log"
    assert log.read_text().count("training on") == 1

    again = launcher_env.launch(*args)  # the first run ended: its outputs are reused, its claims are stale
    assert again.returncode == 0 and _states(again.document) == dict.fromkeys(TOY_STAGE0, "reused")


def test_a_cancelled_runs_claims_do_not_block_a_new_launch(launcher_env: LauncherEnv) -> None:
    first = launcher_env.launch("toy.stage0", "--detach", "training.sleep_s=120")
    _wait_for_state(launcher_env, first.document["run_id"], "stage0_toy.training", "running")
    refused = launcher_env.launch("toy.stage0", "--detach", "training.sleep_s=120")
    assert refused.returncode == 2 and first.document["run_id"] in refused.stderr
    assert launcher_env.launch("cancel", first.document["run_id"]).returncode == 0
    second = launcher_env.launch("toy.stage0", "--detach", "training.sleep_s=120")
    assert second.returncode == 0, second.stderr
    assert launcher_env.launch("cancel", second.document["run_id"]).returncode == 0


# ------------------------------------------------------------------------------------ debris of killed writers
def test_the_next_writer_removes_what_a_killed_writer_left(tmp_path: Path) -> None:
    from nemotron.fsutil import atomic_write_text, staging_dir

    out = tmp_path / "artifact"
    out.mkdir()
    leave_debris = (
        "import sys, tempfile, time\n"
        "from pathlib import Path\n"
        "from nemotron.fsutil import staging_dir, writer_tag\n"
        "out = Path(sys.argv[1])\n"
        "(staging_dir(out) / 'train.bin').write_bytes(b'x' * 1000)\n"
        "tempfile.mkstemp(prefix=f'.metadata.json.{writer_tag()}.', suffix='.tmp', dir=out)\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n"
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", leave_debris, str(out)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for writer in writers:
            assert writer.stdout.readline().strip() == "ready"
        killed, alive = writers
        killed.kill()  # SIGKILL mid-write: its temp file and staging directory stay behind
        killed.wait()
        ancient = out / ".metadata.json.otherhost~1.abcd.tmp"  # another machine's, long ago
        ancient.write_text("{")
        os.utime(ancient, (time.time() - 7200, time.time() - 7200))
        recent = out / ".metadata.json.otherhost~2.efgh.tmp"  # another machine's, maybe still writing
        recent.write_text("{")

        atomic_write_text(out / "metadata.json", "{}\n")
        staging_dir(out)

        left = sorted(p.name for p in out.iterdir())
        assert not any(f"~{killed.pid}" in name for name in left), left
        assert sum(f"~{alive.pid}" in name for name in left) == 2, left  # a live writer's work is never touched
        assert recent.name in left and ancient.name not in left
    finally:
        for writer in writers:
            writer.kill()
            writer.wait()
