"""The local and docker runners' job arrays: a job's tasks as processes, at most ``max_parallel`` at once
(``run_capped``, which also runs a sweep's tasks: ``local``).

Each task is the job's command (its ``{array_task}`` placeholder bound: the docker executor names each task's
container with it) with its index in ``ARRAY_TASK_ENV``, logging to ``logs/<job>.<index>.log``; the job's own log
says which task started and how each ended. A task that fails does not stop the others (each is its own part: a
shard), and the job fails naming the failed indices, which a rerun then redoes alone (``nemotron.array``). A
failed task is not retried here: its part is redone by the next launch, which plans exactly the missing tasks.
"""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from nemotron.array import ARRAY_TASK_ENV
from nemotron.heartbeat import ATTEMPT_ENV
from nemotron.launcher.executors.base import bind, secret_values
from nemotron.launcher.inputs import is_complete
from nemotron.launcher.plan import Job
from nemotron.launcher.processes import identify, start_owned, terminate
from nemotron.launcher.runs import RunRecord, StepRecord, TaskCounts, save_run

POLL_S = 0.2
TASK_PLACEHOLDER = "array_task"  # ``{array_task}`` in a job's text: the task's index
K = TypeVar("K")


def task_log(run: RunRecord, job: Job, index: int) -> Path:
    return Path(run.run_dir) / "logs" / f"{job.name}.{index}.log"


def run_array(run: RunRecord, job: Job, record: StepRecord, view, text: str, words) -> None:
    """Run ``job``'s array tasks to their end (``text``: the job's command as bound at submit, ``words``: how the
    runner splits it) and settle ``record``; Ctrl-C or a cancel stops every running task and re-raises."""
    array, failed = job.array, []
    record.tasks = TaskCounts(done=array.count - len(array.indices), total=array.count)
    record.state, record.reason, record.started_at = "running", None, record.started_at or _now()
    Path(record.log).parent.mkdir(parents=True, exist_ok=True)
    save_run(run)

    def start(index: int) -> subprocess.Popen:
        process = _start(run, job, index, words(bind(text, {TASK_PLACEHOLDER: str(index)})))
        _note(record, f"task {index} started (pid {process.pid}), log {task_log(run, job, index)}")
        return process

    def ended(index: int, code: int) -> None:
        _note(record, f"task {index} ended with exit code {code}")
        if code == 0:
            record.tasks.done += 1
        else:
            failed.append(index)
            record.tasks.failed = sorted(failed)
        save_run(run)

    try:
        run_capped(array.indices, array.max_parallel, start, ended, view)
    except BaseException:
        record.state, record.reason, record.ended_at = "cancelled", "cancelled", _now()
        raise
    record.ended_at = _now()
    if failed:
        record.state, record.exit_code = "failed", 1
        record.reason = f"task(s) {','.join(map(str, sorted(failed)))} of {array.count} failed; a rerun redoes them"
    elif not is_complete(job.output, job.artifact_type):
        record.state, record.exit_code = "failed", 0
        record.reason = f"every task ended, but there is no complete {job.artifact_type} artifact at {job.output}"
    else:
        record.state, record.exit_code, record.reason = "completed", 0, None
    save_run(run)
    view.refresh()


def run_capped(
    keys: Sequence[K],
    max_parallel: int,
    start: Callable[[K], subprocess.Popen | None],
    ended: Callable[[K, int], None],
    view,
) -> None:
    """``start(key)`` for each key in order, at most ``max_parallel`` processes at once (None: it could not start),
    ``ended(key, exit code)`` as each ends; any exception (Ctrl-C, a cancel) stops the running ones and re-raises."""
    pending, running = list(keys), {}
    try:
        while pending or running:
            while pending and len(running) < max_parallel:
                key = pending.pop(0)
                if (process := start(key)) is not None:
                    running[key] = process
            for key in [key for key, process in running.items() if process.poll() is not None]:
                ended(key, running.pop(key).returncode)
            view.refresh()
            time.sleep(POLL_S)
    except BaseException:
        for process in running.values():
            terminate(process)
        raise


def _start(run: RunRecord, job: Job, index: int, command: list[str]) -> subprocess.Popen:
    env = {**os.environ, ATTEMPT_ENV: "1", ARRAY_TASK_ENV: str(index), **secret_values(run.plan)}
    with open(task_log(run, job, index), "ab") as log:
        process = start_owned(command, log, env)  # stopped as one group, dies with the runner like a step
    run.executor_data.setdefault("processes", {})[f"{job.name}.{index}"] = identify(process.pid)
    return process


def _note(record: StepRecord, line: str) -> None:
    with open(record.log, "a") as log:
        log.write(f"{_now():%H:%M:%S} {line}\n")


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)
