"""``nemotron-launch runs`` over a large run index (1,000 records, written here as the launcher writes them), its
filters and its bad input; the Slurm side (one scheduler call for every run, cancel by filter) is in
tests/test_runs_slurm.py."""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import subprocess
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from launcher_env import LauncherEnv

RECORDS = 1000
ENV_KEYS = ("NEMOTRON_RECIPES", "NEMOTRON_ARTIFACT_ROOT", "NEMOTRON_STATE_DIR", "NEMOTRON_PROFILES", "XDG_CONFIG_HOME")
KINDS = ("completed", "failed", "cancelled")
DELETED_FINISHED, DELETED_UNFINISHED, WITHOUT_OUTCOME = 500, RECORDS - 3, RECORDS - 2  # run numbers


def _outcome(run, kind: str, created: _dt.datetime) -> None:
    """The steps of a run that ended ``kind`` (completed, failed in training, or cancelled in training)."""
    data_curation, training, evaluation = run.steps.values()
    for minute, record in enumerate((data_curation, training, evaluation)):
        record.started_at, record.ended_at = (
            created + _dt.timedelta(minutes=minute),
            created + _dt.timedelta(minutes=minute + 1),
        )
        record.state = "completed"
    if kind == "failed":
        training.state, training.exit_code, training.reason = "failed", 3, None
        evaluation.state, evaluation.reason, evaluation.started_at = (
            "cancelled",
            "upstream stage0_toy.training failed",
            None,
        )
    elif kind == "cancelled":
        training.state, training.reason = "cancelled", "cancelled"
        evaluation.state, evaluation.reason, evaluation.started_at = (
            "cancelled",
            "upstream stage0_toy.training cancelled",
            None,
        )


def write_records(env: LauncherEnv, monkeypatch: pytest.MonkeyPatch, count: int, now: _dt.datetime) -> None:
    """``count`` runs of toy.stage0, run ``i`` launched ``count - i`` hours and 30 minutes before ``now``: a launch
    line and a run.json each (as ``create_run`` writes them), and the outcome line a finished run gets."""
    for key in ENV_KEYS:
        monkeypatch.setenv(key, env.env[key])
    from nemotron.launcher import runs
    from nemotron.launcher.plan import build_plan
    from nemotron.launcher.profiles import profile_for
    from nemotron.launcher.run_index import append_outcome

    plan = build_plan("toy.stage0", profile_for(None, "local"))
    evaluation = plan.job("evaluation").output
    evaluation.mkdir(parents=True)
    (evaluation / "metadata.json").write_text(json.dumps({"metrics": {"accuracy": 0.5}}))
    steps = {job.name: runs.StepRecord(artifact=job.output) for job in plan.jobs}
    for i in range(count):
        created = now - _dt.timedelta(hours=count - i, minutes=30)
        run_id = f"toy-{i:05d}"
        fresh_steps = {name: record.model_copy() for name, record in steps.items()}
        run_dir = env.root / "runs" / run_id
        run = runs.RunRecord(run_id=run_id, run_dir=run_dir, executor="local", profile={}, plan=plan, steps=fresh_steps,
                             created_at=created)  # fmt: skip
        (run.run_dir / "logs").mkdir(parents=True)
        runs._append_index(run)
        if i == DELETED_UNFINISHED:
            run.steps["stage0_toy.data_curation"].state = "running"
        else:
            _outcome(run, KINDS[i % 3], created)
        (run.run_dir / "run.json").write_text(run.model_dump_json())
        if i not in (WITHOUT_OUTCOME, DELETED_UNFINISHED):  # WITHOUT_OUTCOME: indexed by an older version
            append_outcome(runs.index_path(), run)
        if i == RECORDS // 3:
            with open(runs.index_path(), "ab") as index:
                index.write(b'{"run_id": "torn-wri\n')
    shutil.rmtree(env.root / "runs" / f"toy-{DELETED_FINISHED:05d}")
    shutil.rmtree(env.root / "runs" / f"toy-{DELETED_UNFINISHED:05d}")


def _rows(env: LauncherEnv, *args: str) -> tuple[list[dict], list[str]]:
    listed = env.launch("runs", *args)
    assert listed.returncode == 0, listed.stderr
    return listed.document["runs"], listed.stderr.splitlines()


def _seconds(env: LauncherEnv, *args: str) -> float:
    start = time.perf_counter()
    _rows(env, *args)
    return time.perf_counter() - start


def test_a_thousand_runs_are_listed_from_the_index(launcher_env: LauncherEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    now = _dt.datetime.now(_dt.UTC)
    write_records(launcher_env, monkeypatch, RECORDS, now)
    rows, stderr = _rows(launcher_env)
    assert [row["run_id"] for row in rows] == [f"toy-{i:05d}" for i in reversed(range(RECORDS))]  # newest first
    assert len(stderr) == 1 and "skipped 1 unreadable line of the run index" in stderr[0], stderr
    by_id = {row["run_id"]: row for row in rows}
    deleted = by_id[f"toy-{DELETED_FINISHED:05d}"]
    assert (deleted["state"], deleted["problem"]) == (KINDS[DELETED_FINISHED % 3], "run directory deleted")
    lost = by_id[f"toy-{DELETED_UNFINISHED:05d}"]
    assert (lost["state"], lost["problem"], lost["target"]) == ("unknown", "run directory deleted", "toy.stage0")
    failed = by_id["toy-00001"]
    assert failed["failures"] == "stage0_toy.training failed: exit code 3"
    assert (failed["steps_done"], failed["steps_total"], failed["metric"]) == (1, 3, None)
    completed = by_id["toy-00000"]
    assert (completed["state"], completed["metric_step"], completed["metric"]) == ("completed", "stage0_toy.evaluation",
                                                                                    "accuracy=0.5")  # fmt: skip
    assert _dt.datetime.fromisoformat(completed["ended_at"]) - _dt.datetime.fromisoformat(completed["started_at"]) == (
        _dt.timedelta(minutes=3)
    )
    # the run indexed without an outcome was read from its record once; its outcome is in the index now
    index = [line for line in (launcher_env.state / "runs.jsonl").read_text().splitlines() if "outcome" in line]
    assert json.loads(index[-1])["run_id"] == f"toy-{WITHOUT_OUTCOME:05d}"

    # as cheap as the index allows: all 1,000 within twice the time of the newest one alone
    every, newest = [], []
    for _ in range(3):
        every.append(_seconds(launcher_env))
        newest.append(_seconds(launcher_env, "-n", "1"))
    assert min(every) <= 2 * min(newest), (every, newest)  # the least disturbed of each, on a shared machine

    newest, stderr = _rows(launcher_env, "-n", "3")
    assert [row["run_id"] for row in newest] == ["toy-00999", "toy-00998", "toy-00997"]
    assert stderr == []  # the torn line, two thirds of the way back, was never read
    failed_ids = [row["run_id"] for row in _rows(launcher_env, "--state", "failed", "-n", "2")[0]]
    assert failed_ids == [f"toy-{i:05d}" for i in (994, 991)]  # 997 (1 mod 3) is the unknown one
    recent = _rows(launcher_env, "--since", "2d", "--state", "completed,cancelled")[0]
    assert [row["run_id"] for row in recent] == [f"toy-{i:05d}" for i in range(999, RECORDS - 48, -1) if i % 3 != 1]
    assert len(_rows(launcher_env, "--target", "toy.stage0_toy")[0]) == RECORDS  # a stage by its name or alias
    assert _rows(launcher_env, "--target", "toy.stage1")[0] == []
    assert _rows(launcher_env, "--state", "unknown")[0] == [lost]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--state", "nosuch"], "unknown run state 'nosuch' for --state: valid states are planned, running, completed, "
                                "failed, cancelled, unknown"),
        (["--since", "yesterdayish"], "--since 'yesterdayish': expected a duration (30m, 12h, 2d, 1w) or a UTC date"),
        (["-n", "0"], "-n '0': expected a number of runs, 1 or more"),
        (["--target", "toy.stage7"], "unknown target 'toy.stage7'"),
    ],
)  # fmt: skip
def test_bad_filters_are_one_line(launcher_env: LauncherEnv, args: list[str], message: str) -> None:
    for command in ("runs", "cancel"):
        listed = launcher_env.launch(command, *args)
        assert listed.returncode == 2 and listed.stdout == ""
        assert len(listed.stderr.splitlines()) == 1 and message in listed.stderr, listed.stderr


def test_cancel_takes_run_ids_or_a_filter(launcher_env: LauncherEnv) -> None:
    nothing = launcher_env.launch("cancel")
    assert nothing.returncode == 2 and nothing.stderr.startswith("error: cancel needs run ids, or a filter")
    both = launcher_env.launch("cancel", "toy-1", "--state", "running")
    assert both.returncode == 2 and "not both" in both.stderr
    none_in_flight = launcher_env.launch("cancel", "--state", "running")
    assert none_in_flight.returncode == 0 and none_in_flight.document == {"cancelled": []}


def test_the_index_is_read_newest_first_across_blocks(tmp_path) -> None:
    """Lines longer than a read block, split across blocks; the newest outcome line of a run wins, a null one (the
    run went on after all) sends the listing back to its record; unreadable lines are counted where they are."""
    from nemotron.launcher.run_index import BLOCK_BYTES, IndexScan

    def line(run: int, **fields) -> bytes:
        return json.dumps({"run_id": f"r{run}", "run_dir": f"/runs/r{run}", **fields}).encode() + b"\n"

    lines = [line(i, note="x" * (i * 997 % (BLOCK_BYTES // 3))) for i in range(300)]
    lines.insert(100, b"\xff not a line\n")
    lines += [line(5, outcome={"state": "failed"}), line(6, outcome={"state": "failed"}), line(5, outcome=None)]
    lines += [line(6, outcome={"state": "completed"}), line(300, note="x" * (2 * BLOCK_BYTES))]
    index = tmp_path / "runs.jsonl"
    index.write_bytes(b"".join(lines))
    scan = IndexScan(index)
    found = list(scan)
    assert [run.run_id for run in found] == [f"r{i}" for i in reversed(range(301))]
    outcomes = {run.run_id: run.outcome for run in found if run.outcome is not None}
    assert outcomes == {"r6": {"state": "completed"}}
    assert scan.skipped == [len(b"".join(lines[:100]))]


@settings(max_examples=150, deadline=None, database=None)
@given(
    states=st.lists(st.one_of(st.sampled_from(["running", "failed,completed", " unknown", ""]), st.text(max_size=12))),
    since=st.one_of(st.none(), st.sampled_from(["2d", "99999999999w", "2026-02-30", "2026-12-01T08:00"]), st.text()),
    limit=st.one_of(st.none(), st.sampled_from(["1", "0", "-1", "1e3", "99999999999999999999"]), st.text(max_size=5)),
)
def test_filters_parse_or_are_refused_in_one_line(states, since, limit) -> None:
    from nemotron.errors import UserError
    from nemotron.launcher.run_list import RunFilter

    try:
        parsed = RunFilter.parse(states, None, since, limit)
    except UserError as err:
        assert "\n" not in str(err)
        return
    assert parsed.limit is None or parsed.limit >= 1


def _on_a_terminal(env: LauncherEnv, answer: str, *args: str) -> tuple[int, str]:
    """The CLI with a pseudo-terminal for stdin, stdout and stderr, ``answer`` typed in."""
    primary, secondary = os.openpty()
    process = subprocess.Popen(env.command(*args), env=env.env, stdin=secondary, stdout=secondary, stderr=secondary)
    os.close(secondary)
    os.write(primary, answer.encode())
    output = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the process ended and closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(primary)
    return process.wait(timeout=60), output.decode(errors="replace")


def test_cancel_by_filter_asks_on_a_terminal(launcher_env: LauncherEnv) -> None:
    """A local detached run in flight: the table and the question on the terminal; "n" leaves it, "y" cancels it."""
    launched = launcher_env.launch("toy.stage0", "--detach", "training.sleep_s=60")
    assert launched.returncode == 0, launched.stderr
    run_id = launched.document["run_id"]
    code, shown = _on_a_terminal(launcher_env, "n\n", "cancel", "--target", "toy")
    assert code == 1 and run_id in shown and "cancel these 1 run" in shown and "nothing cancelled" in shown, shown
    assert launcher_env.launch("status", run_id).document["state"] == "running"
    code, shown = _on_a_terminal(launcher_env, "y\n", "cancel", "--target", "toy")
    assert code == 0 and f"{run_id}: cancelled" in shown, shown
    assert launcher_env.launch("runs", "--state", "cancelled").document["runs"][0]["run_id"] == run_id


def test_a_scheduler_that_does_not_answer_is_an_error_never_every_job_gone() -> None:
    """slurmctld down or timing out under load: the listing warns and shows the runs as recorded (``run_list``);
    reading "no answer" as "Slurm forgot these jobs" would end every step of every run listed for good."""
    from nemotron.launcher.executors.slurm_state import SlurmUnanswered, query_jobs

    def answer(returncode: int, stderr: str):
        return lambda argv: subprocess.CompletedProcess(argv, returncode, stdout="", stderr=stderr)

    timeout = answer(1, "squeue: error: slurm_load_jobs error: Socket timed out on send/recv operation\n")
    with pytest.raises(SlurmUnanswered, match="Slurm does not answer about jobs 7,8: squeue: error: .* timed out"):
        query_jobs(["7", "8"], timeout, accounting=False)
    forgotten = answer(1, "slurm_load_jobs error: Invalid job id specified\n")  # past MinJobAge: the exit markers tell
    assert query_jobs(["7", "8"], forgotten, accounting=False) == ({}, False)
