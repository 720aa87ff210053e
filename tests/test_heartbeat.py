"""Progress heartbeats, the hang watchdog (for real, in subprocesses) and the fault-injection hooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nemotron import heartbeat
from nemotron.errors import HANG_EXIT_CODE, UserError
from nemotron.heartbeat import (
    HANG_MARKER,
    PROGRESS_FILE,
    Faults,
    Heartbeat,
    eta_seconds,
    hang_timeout_from_env,
    read_hang,
    read_progress,
)

# A process of a step: beats ``beats`` units ``pause`` s apart, then runs ``then`` (its name shows in the stacks).
PROGRAM = """
import sys, time
from pathlib import Path
from nemotron import heartbeat

heartbeat.HANG_EXIT_GRACE_S = 0.2  # the real 5 s only gives other ranks time to report; nothing to wait for here
output, then = Path(sys.argv[1]), sys.argv[6]
timeout, before, beats, pause = map(float, sys.argv[2:6])


def sleeping_in_a_collective():
    time.sleep(60)


time.sleep(before)  # building the model: not watched yet
hb = heartbeat.Heartbeat(output, "training", int(beats), writer=True, hang_timeout=timeout)
for unit in range(int(beats)):
    hb.inject_faults(unit)
    hb.beat(unit + 1)
    time.sleep(pause)
if then == "hang":
    sleeping_in_a_collective()
hb.close()
time.sleep(2 * timeout)  # closed: the watchdog is gone
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEMOTRON_FAULT", "NEMOTRON_ATTEMPT"))}
    for name in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "NEMOTRON_HANG_TIMEOUT"):
        env.pop(name, None)
    return env | extra


def _process(output: Path, timeout=1.0, before=0.0, beats=3, pause=0.05, then="end", **env: str):
    args = [str(output), str(timeout), str(before), str(beats), str(pause), then]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, *args], capture_output=True, text=True, env=_env(**env), timeout=60
    )
    return done, time.monotonic() - started


def test_writes_at_a_bounded_rate_and_when_forced(tmp_path, monkeypatch):
    monkeypatch.setenv("NEMOTRON_ATTEMPT", "2")
    hb = Heartbeat(tmp_path, "training", 100, writer=True, min_interval_s=60)
    hb.beat(0, loss=9.0)  # the first beat writes: a resumed run shows its step at once
    first = read_progress(tmp_path / PROGRESS_FILE)
    for unit in range(1, 50):
        hb.beat(unit, loss=5.0)
    assert read_progress(tmp_path / PROGRESS_FILE) == first  # 49 beats within min_interval_s: no write
    time.sleep(0.1)
    hb.beat(50, force=True, loss=4.5, tokens_per_second=1234.5, checkpoint_step=50)
    text = (tmp_path / PROGRESS_FILE).read_text()
    assert text.count("\n") == 1 and text.endswith("\n")  # one line
    record = json.loads(text)
    assert list(record) == [
        *("kind", "done", "total", "time", "attempt", "started", "rate"),
        *("loss", "tokens_per_second", "checkpoint_step"),
    ]
    assert (record["kind"], record["done"], record["total"], record["attempt"]) == ("training", 50, 100, 2)
    assert type(record["done"]) is int and type(record["checkpoint_step"]) is int
    assert record["started"] == first["started"] and first["rate"] is None
    assert 0 < record["rate"] <= 50 / 0.1  # units/s since the first beat
    assert record["time"] >= record["started"]
    assert [p.name for p in tmp_path.iterdir()] == [PROGRESS_FILE]  # no temp file left behind


def test_only_the_writer_writes_and_a_failed_write_only_warns(tmp_path, monkeypatch):
    Heartbeat(tmp_path, "training", 10, writer=False).beat(1, force=True)
    assert not (tmp_path / PROGRESS_FILE).exists()

    warnings = []
    monkeypatch.setattr(heartbeat.log, "warning", lambda *args: warnings.append(args))
    gone = Heartbeat(tmp_path / "missing", "training", 10, writer=True)
    for unit in range(3):
        gone.beat(unit, force=True)  # never raises: training goes on
    assert len(warnings) == 1


def test_rate_counts_this_process_only_and_eta_follows():
    hb = Heartbeat(Path("/nonexistent"), "training", 200, writer=False)
    hb.beat(100)  # resumed at 100: the units of earlier attempts are not this process's rate
    time.sleep(0.2)
    hb.beat(102)
    record = hb.record()
    assert record["done"] == 102 and 0 < record["rate"] <= 2 / 0.2
    assert eta_seconds(record) == pytest.approx((200 - 102) / record["rate"])
    assert eta_seconds({"total": 100, "done": 40, "rate": 4.0}) == 15.0
    assert eta_seconds({"total": None, "done": 40, "rate": 4.0}) is None
    assert eta_seconds({"total": 100, "done": 40, "rate": None}) is None
    assert eta_seconds({"total": 100, "done": 100, "rate": 0.0}) is None


def test_reading_is_tolerant(tmp_path):
    assert read_progress(tmp_path / PROGRESS_FILE) is None  # not written yet
    assert read_progress('{"kind": "training", "do') is None  # half a line
    assert read_progress("[1, 2]") is None and read_progress('{"kind": "training"}') is None
    (tmp_path / PROGRESS_FILE).write_bytes(b"\xff\xfe garbage")
    assert read_progress(tmp_path / PROGRESS_FILE) is None
    assert read_progress('{"kind": "training", "done": 3}') == {"kind": "training", "done": 3}
    assert read_progress("") is None  # an empty file read elsewhere
    (tmp_path / PROGRESS_FILE).write_text('{"kind": "training", "done": 3}\n')
    assert read_progress(tmp_path / PROGRESS_FILE)["done"] == 3
    assert read_progress(str(tmp_path / PROGRESS_FILE)) is None  # a str is the file's text, never a path


@pytest.mark.parametrize(("value", "expected"), [(None, 30.0), ("", 30.0), ("0", None), ("2.5", 2.5)])
def test_hang_timeout_from_env(value, expected):
    env = {} if value is None else {"NEMOTRON_HANG_TIMEOUT": value}
    assert hang_timeout_from_env(30.0, env) == expected


@pytest.mark.parametrize("value", ["ten", "-1", "nan"])
def test_a_bad_hang_timeout_is_one_line_naming_it(value):
    with pytest.raises(UserError, match=f"NEMOTRON_HANG_TIMEOUT='{value}' is not a number of seconds"):
        hang_timeout_from_env(None, {"NEMOTRON_HANG_TIMEOUT": value})


def test_watchdog_dumps_every_stack_marks_the_hang_and_exits_76(tmp_path):
    done, took = _process(tmp_path, timeout=1.0, beats=3, then="hang", RANK="3")
    assert done.returncode == HANG_EXIT_CODE, done.stderr
    assert took < 10
    assert "watchdog: rank 3 made no progress for 1 s after unit 3 of training (attempt 1); Python stacks" in (
        done.stderr
    )
    assert "in sleeping_in_a_collective" in done.stderr  # faulthandler's dump of the main thread
    assert "nemotron-hang-watchdog" in done.stderr or "Current thread" in done.stderr
    marker = read_hang(tmp_path / HANG_MARKER)
    assert {k: marker[k] for k in ("rank", "done", "attempt")} == {"rank": 3, "done": 3, "attempt": 1}
    assert marker["idle_s"] >= 1.0 and list(marker) == ["rank", "done", "idle_s", "time", "attempt"]


def test_watchdog_spares_a_process_that_keeps_beating_and_watches_only_between_first_beat_and_close(tmp_path):
    # 0.8 s before the first beat (building a model), 1.2 s of beats, 0.6 s after close: all past a 0.3 s timeout
    done, _ = _process(tmp_path, timeout=0.3, before=0.8, beats=12, pause=0.1)
    assert done.returncode == 0, done.stderr
    assert "watchdog" not in done.stderr and not (tmp_path / HANG_MARKER).exists()
    assert read_progress(tmp_path / PROGRESS_FILE)["done"] >= 1


def test_fault_hooks_apply_to_their_rank_and_attempt():
    assert Faults.from_env({}) is None
    hang = {"NEMOTRON_FAULT_HANG_AT": "3", "WORLD_SIZE": "4"}
    assert Faults.from_env(hang | {"RANK": "3"}).hang_at == 3  # default: the last rank
    assert Faults.from_env(hang | {"RANK": "0"}).hang_at is None
    assert Faults.from_env(hang | {"RANK": "0", "NEMOTRON_FAULT_RANK": "0"}).hang_at == 3
    assert Faults.from_env(hang | {"RANK": "3", "NEMOTRON_ATTEMPT": "2"}).hang_at is None
    leave = {"NEMOTRON_FAULT_EXIT_AT": "5:42"}
    assert Faults.from_env(leave) == Faults(exit_at=5, exit_code=42)
    assert Faults.from_env(leave | {"NEMOTRON_ATTEMPT": "2"}).exit_at is None
    assert Faults.from_env(leave | {"NEMOTRON_ATTEMPT": "2", "NEMOTRON_FAULT_EVERY_ATTEMPT": "1"}).exit_at == 5
    with pytest.raises(UserError, match="NEMOTRON_FAULT_EXIT_AT='5' is not UNIT:CODE"):
        Faults.from_env({"NEMOTRON_FAULT_EXIT_AT": "5"})


def test_injected_hang_is_caught_by_the_watchdog_in_attempt_1_only(tmp_path):
    done, _ = _process(tmp_path, timeout=0.5, beats=5, NEMOTRON_FAULT_HANG_AT="2")
    assert done.returncode == HANG_EXIT_CODE, done.stderr
    assert "in _injected_hang" in done.stderr
    assert read_hang(tmp_path / HANG_MARKER)["done"] == 2

    again, _ = _process(tmp_path / "again", timeout=0.5, beats=5, NEMOTRON_FAULT_HANG_AT="2", NEMOTRON_ATTEMPT="2")
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize(("attempt", "every", "code"), [("1", "", 42), ("2", "", 0), ("2", "1", 42)])
def test_injected_exit(tmp_path, attempt, every, code):
    faults = {"NEMOTRON_FAULT_EXIT_AT": "2:42", "NEMOTRON_ATTEMPT": attempt, "NEMOTRON_FAULT_EVERY_ATTEMPT": every}
    done, _ = _process(tmp_path, timeout=0, beats=5, **faults)
    assert done.returncode == code, done.stderr


def test_curation_reports_documents_in_its_real_output_dir(curated_dataset):
    record = read_progress(Path(curated_dataset.path) / PROGRESS_FILE)
    assert record["kind"] == "data_curation"
    assert record["done"] == record["total"] == curated_dataset.metrics["documents_read"]


def test_the_slow_hook_lengthens_every_iteration_of_every_attempt():
    assert Faults.from_env({"NEMOTRON_FAULT_SLOW_S": "0.25", "NEMOTRON_ATTEMPT": "3"}).slow_s == 0.25
    with pytest.raises(UserError, match="NEMOTRON_FAULT_SLOW_S='fast' is not a number"):
        Faults.from_env({"NEMOTRON_FAULT_SLOW_S": "fast"})
