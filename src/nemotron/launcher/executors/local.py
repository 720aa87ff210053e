"""The local executor: each job a subprocess on this machine, in dependency order, one log per step.

A distributed step with ``nproc_per_node > 1`` runs under torchrun (``python -m torch.distributed.run``). The process
running the jobs (the attached launcher, or ``python -m nemotron.launcher.executors.local RUN_DIR`` when detached)
records its identity (pid + start time, ``processes.identify``) in the run record; ``cancel`` from any shell sends it
SIGTERM, which it treats like Ctrl-C: terminate the running step, mark the run cancelled. Nothing is signalled for a
finished run, nor a pid that now belongs to another process.

Steps live and die with their runner: each step is its own process group, started with ``die_with_parent``, so a
runner killed even with SIGKILL takes its steps with it (SIGTERM: training checkpoints and exits 75). ``status``
then tells from the artifacts what became of each step: complete -> completed, else cancelled; a rerun reuses what
completed and resumes training from its checkpoint.

A job's text (``render``) is a command without a shell: ``env K=V ... python -m ...`` (``# ...`` lines are comments).
``submit`` binds its ``{run_id}`` and stores it in the run record (``executor_data["commands"]``); the runner executes
those words (``shlex.split``), so a run does what its dry-run showed, and the record says what that was.
"""

from __future__ import annotations

import datetime as _dt
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from nemotron.array import ARRAY_TASK_ENV
from nemotron.declaration import Resources
from nemotron.errors import REQUEUE_EXIT_CODE
from nemotron.heartbeat import ATTEMPT_ENV, HANG_MARKER, PROGRESS_FILE, read_progress
from nemotron.launcher.executors.array_runner import run_array, run_capped
from nemotron.launcher.executors.base import Executor, ExecutorError, bind, follow_file, log_tail, secret_values
from nemotron.launcher.failures import Attempt
from nemotron.launcher.inputs import is_complete
from nemotron.launcher.plan import Job, Plan
from nemotron.launcher.processes import (
    TERMINATE_GRACE_S,
    identify,
    is_running,
    signal_process,
    start_owned,
    terminate,
)
from nemotron.launcher.profiles import FaultTolerance, Profile
from nemotron.launcher.report import LiveView, print_failure, stderr_console
from nemotron.launcher.resources import JobResources, machine_resources
from nemotron.launcher.runs import FINISHED_STATES, SUCCESS_STATES, RunRecord, StepRecord, read_run, save_run

POLL_S = 0.2
PROGRESS_SAVE_S = 2.0  # the run record is rewritten with a running step's progress at most this often


class Cancelled(Exception):
    """Ctrl-C or SIGTERM (``cancel`` from another shell) while jobs run."""


def job_command(job: Job, python: str = sys.executable) -> list[str]:
    if job.resources.distributed and job.resources.nproc_per_node > 1:
        nproc = f"--nproc-per-node={job.resources.nproc_per_node}"
        return [python, "-m", "torch.distributed.run", "--standalone", nproc, "-m", job.module, *job.args]
    return job.command(python)


class LocalExecutor(Executor):
    name = "local"

    @classmethod
    def job_resources(cls, declared: Resources, chosen: dict, profile: Profile) -> JobResources:
        return machine_resources(declared, chosen, profile.local.nproc_per_node)

    def run_jobs(self, run: RunRecord) -> RunRecord:
        """Run the plan's jobs in order, in this process (attached, or as the detached runner)."""
        return run_jobs(run, self.prepare_retry)

    def prepare_retry(self, run: RunRecord, job: Job) -> None:
        """Before another attempt of ``job`` (the docker executor removes the container of the last one)."""

    def prepare(self, plan: Plan, profile: Profile, run: RunRecord | None) -> dict[str, str]:
        rendered = {}
        for job in plan.jobs_to_run:
            env = " ".join(f"{k}={shlex.quote(v)}" for k, v in {**job.env, "NEMOTRON_RUN_ID": "{run_id}"}.items())
            secrets = f"  # + secrets from your shell: {', '.join(plan.secret_names)}" if plan.secret_names else ""
            after = f"# after: {', '.join(job.depends_on)}\n" if job.depends_on else ""
            rendered[job.name] = f"{after}{array_comment(job)}env {env} {shlex.join(job_command(job))}{secrets}\n"
        return rendered

    def schedule(
        self, plan: Plan, profile: Profile, run: RunRecord, prepared: dict[str, str], detach: bool
    ) -> RunRecord:
        secret_values(plan)  # fail before starting anything if a secret is missing
        values = {"run_id": run.run_id}
        # in the record: the runner (another process when detached) executes these words, and nothing else
        run.executor_data["commands"] = {name: bind(text, values) for name, text in prepared.items()}
        if not detach:
            return self.run_jobs(run)
        for record in run.steps.values():  # saved before the runner exists, so no write of ours races with its own
            if record.state == "planned":
                record.state, record.reason = "pending", "waiting for the runner"
        save_run(run)
        runner_log = Path(run.run_dir) / "runner.log"
        with open(runner_log, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", type(self).__module__, str(run.run_dir)],  # that module's main()
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # survives the launching shell, and its Ctrl-C
            )
        # The runner records its own identity (saving here too would race with its first state updates).
        run.executor_data["runner"] = identify(process.pid)
        return run

    def status(self, run: RunRecord) -> dict[str, StepRecord]:
        current = read_run(Path(run.run_dir))
        if not _runner_gone(current):
            return current.steps
        return {
            name: record if record.state in FINISHED_STATES else self.orphaned(current, name, record)
            for name, record in current.steps.items()
        }

    def orphaned(self, run: RunRecord, name: str, record: StepRecord) -> StepRecord:
        """What became of an unfinished step whose runner is gone (the steps die with it: see the module doc)."""
        job = run.plan.job(name)
        if record.state == "running" and is_running(_process(run, name)):
            return record.model_copy(update={"reason": "its runner is gone; the step is being stopped"})
        if is_complete(job.output, job.artifact_type):
            return record.model_copy(update={"state": "completed", "reason": None})
        started = record.state == "running"
        reason = "stopped with its runner" if started else "its runner ended before it started"
        return record.model_copy(update={"state": "cancelled", "reason": reason})

    def logs(self, run: RunRecord, job: str, follow: bool = False) -> Iterator[str]:
        path = run.log_path(job)
        if not follow:
            yield path.read_text(errors="replace") if path.exists() else ""
            return

        def finished() -> bool:
            return self.status(run)[job].state in FINISHED_STATES

        yield from follow_file(path, finished)

    def cancel(self, run: RunRecord) -> RunRecord:
        current = read_run(Path(run.run_dir))
        if current.finished:
            return current  # nothing of a finished run is signalled: its pids may belong to others by now
        runner = current.executor_data.get("runner")
        if signal_process(runner, signal.SIGTERM):
            deadline = time.monotonic() + TERMINATE_GRACE_S + 5
            while is_running(runner) and time.monotonic() < deadline:
                time.sleep(POLL_S)
        current = read_run(Path(run.run_dir))
        for name, record in current.steps.items():  # the runner is gone: finish its bookkeeping
            if record.state in FINISHED_STATES:
                continue
            signal_process(_process(current, name), signal.SIGTERM, group=True)
            settled = self.orphaned(current, name, record)
            if settled.state == "completed":
                current.steps[name] = settled
            else:
                _finish(record, "cancelled", reason="cancelled")
        save_run(current)
        return current


# ----------------------------------------------------------------------------------------------- the runner
def run_jobs(run: RunRecord, prepare_retry: Callable[[RunRecord, Job], None] | None = None) -> RunRecord:
    """Run the plan's jobs in order until one fails or the run is cancelled; returns the final record."""
    prepare_retry = prepare_retry or (lambda _run, _job: None)
    run.executor_data["runner"] = identify(os.getpid())
    save_run(run)
    view = LiveView(run)
    try:
        with _sigterm_as_cancel(), view:
            for job in run.plan.jobs:
                record = run.steps[job.name]
                if record.state not in ("planned", "pending"):
                    continue
                failed = [d for d in job.depends_on if run.steps[d].state not in SUCCESS_STATES]
                if failed:
                    _finish(record, "cancelled", reason=f"upstream {failed[0]} did not complete")
                    save_run(run)
                    continue
                if job.array is not None:
                    run_array(run, job, record, view, run.executor_data["commands"][job.name], _words)
                    continue
                if job.sweep is not None:
                    _run_sweep(run, [j for j in run.plan.jobs if j.sweep and j.sweep.group == job.sweep.group], view)
                    continue
                _run_one(run, job, record, view, _command(run, job), prepare_retry)
    except (Cancelled, KeyboardInterrupt):
        for record in run.steps.values():
            if record.state not in FINISHED_STATES:
                _finish(record, "cancelled", reason="cancelled")
        save_run(run)
        stderr_console().print(f"run {run.run_id} cancelled")
    for name, record in run.steps.items():
        if record.state == "failed":
            print_failure(run, name, log_tail(record.log))
    return run


def _run_one(
    run: RunRecord,
    job: Job,
    record: StepRecord,
    view: LiveView,
    command: list[str],
    prepare_retry: Callable[[RunRecord, Job], None],
) -> None:
    """Run the step, a new attempt each time one ends in a class the profile retries (``failures``): here that is a
    hang (the watchdog's marker) or a SIGTERM from outside the runner (exit 75, checkpoint saved)."""
    faults = FaultTolerance.model_validate(run.profile.get("fault_tolerance", {}))
    while True:
        number = len(record.attempts) + 1
        if number > 1:
            prepare_retry(run, job)
        attempt = Attempt(number=number, started_at=_now())
        (job.output / HANG_MARKER).unlink(missing_ok=True)
        process = _start(run, job, record, command, number)
        if process is None:
            return
        attempt.job_id = record.job_id
        record.attempts.append(attempt)
        save_run(run)
        try:
            saved = time.monotonic()
            while process.poll() is None:
                progress = read_progress(job.output / PROGRESS_FILE)
                if progress != record.progress and time.monotonic() - saved >= PROGRESS_SAVE_S:
                    record.progress, saved = progress, time.monotonic()
                    save_run(run)  # `status` from another shell reads the record
                view.refresh()
                time.sleep(POLL_S)
        except BaseException:
            terminate(process)
            _end_attempt(attempt, "terminated", process.returncode, "stop")
            _finish(record, "cancelled", exit_code=process.returncode, reason="cancelled")
            raise
        record.progress = None
        failure = _failure_class(process.returncode, job, faults)
        failures = number - sum(a.is_segment for a in record.attempts)  # this attempt and the failures before it
        if failure in faults.retried_classes() and failures < faults.max_attempts:
            _end_attempt(attempt, failure, process.returncode, "retry")
            record.state, record.reason = "pending", f"attempt {number} ended by {failure}: resuming"
            save_run(run)
            continue
        _end_attempt(attempt, failure, process.returncode, "done" if failure == "completed" else "stop")
        break
    _settle(job, record, attempt, process.returncode)
    save_run(run)
    view.refresh()


def _settle(job: Job, record: StepRecord, attempt: Attempt, returncode: int) -> None:
    """A step's state once its last attempt ended: completed only with a complete artifact."""
    if returncode != 0:
        _finish(record, "failed", exit_code=returncode, reason=attempt.describe())
    elif not is_complete(job.output, job.artifact_type):
        _finish(record, "failed", exit_code=0, reason=f"no complete {job.artifact_type} artifact at {job.output}")
    else:
        _finish(record, "completed", exit_code=0)


def _run_sweep(run: RunRecord, jobs: list[Job], view: LiveView) -> None:
    """A sweep's group (``launcher.sweeps``): its tasks at once, at most its ``max_parallel``, each a job with its own
    record, one attempt each (a task that failed is what the next launch reruns: the others' outputs are complete).
    A task whose upstream task did not complete is cancelled; the others run."""
    faults = FaultTolerance.model_validate(run.profile.get("fault_tolerance", {}))
    ready = {}
    for job in jobs:
        record = run.steps[job.name]
        failed = [d for d in job.depends_on if run.steps[d].state not in SUCCESS_STATES]
        if record.state not in ("planned", "pending"):
            continue
        if failed:
            _finish(record, "cancelled", reason=f"upstream {failed[0]} did not complete")
        else:
            ready[job.name] = job
    save_run(run)

    def start(name: str) -> subprocess.Popen | None:
        job, record = ready[name], run.steps[name]
        attempt = Attempt(number=1, started_at=_now())
        process = _start(run, job, record, _command(run, job), 1)
        if process is not None:
            attempt.job_id = record.job_id
            record.attempts.append(attempt)
        save_run(run)
        return process

    def ended(name: str, returncode: int) -> None:
        job, record = ready[name], run.steps[name]
        failure = _failure_class(returncode, job, faults)
        _end_attempt(record.attempts[-1], failure, returncode, "done" if failure == "completed" else "stop")
        _settle(job, record, record.attempts[-1], returncode)
        save_run(run)

    try:
        run_capped(list(ready), jobs[0].sweep.max_parallel, start, ended, view)
    except BaseException:
        for name in ready:
            if run.steps[name].state not in FINISHED_STATES:
                _finish(run.steps[name], "cancelled", reason="cancelled")
        raise


def _command(run: RunRecord, job: Job) -> list[str]:
    """The words of the job's text as ``submit`` bound it; no shell runs them, so its ``#`` lines are comments."""
    return _words(run.executor_data["commands"][job.name])


def _words(text: str) -> list[str]:
    return shlex.split(text, comments=True)


def array_comment(job: Job) -> str:
    """What a dry-run says of an array job: its tasks run as this command, each with its index in the environment."""
    if job.array is None:
        return ""
    a = job.array
    return f"# array: tasks {a.ranges()} of {a.count}, {a.max_parallel} at once, each with {ARRAY_TASK_ENV}=<index>\n"


def _start(run: RunRecord, job: Job, record: StepRecord, command: list[str], attempt: int):
    """The step's process for one attempt, or None (the record says why) if it could not be started."""
    # the job's own environment is in its command (``env K=V``); the attempt and the secrets are not text
    env = {**os.environ, ATTEMPT_ENV: str(attempt), **secret_values(run.plan)}
    Path(record.log).parent.mkdir(parents=True, exist_ok=True)
    with open(record.log, "ab") as log:
        log.write(f"$ {shlex.join(command)}\n".encode())
        log.flush()
        try:
            process = start_owned(command, log, env)
        except OSError as err:  # e.g. E2BIG: an environment or command line larger than the kernel takes
            _finish(record, "failed", reason=f"could not be started: {err.strerror or err} ({command[0]})")
            save_run(run)
            return None
    record.state, record.reason, record.job_id = "running", None, str(process.pid)
    record.started_at = record.started_at or _now()
    run.executor_data.setdefault("processes", {})[job.name] = identify(process.pid)
    return process


def _failure_class(returncode: int, job: Job, faults: FaultTolerance) -> str:
    if returncode == 0:
        return "completed"
    if returncode == faults.stop_exit_code:
        return "stopped"
    if (job.output / HANG_MARKER).exists():
        return "hang"
    if returncode == REQUEUE_EXIT_CODE:  # SIGTERM from outside the runner (the runner's own cancel raised above)
        return "preempted"
    return "application_error"


def _end_attempt(attempt: Attempt, failure: str, returncode: int | None, decision: str) -> None:
    attempt.ended_at, attempt.failure, attempt.exit_code, attempt.decision = _now(), failure, returncode, decision


def _finish(record: StepRecord, state: str, exit_code: int | None = None, reason: str | None = None) -> None:
    record.state, record.reason = state, reason
    record.exit_code = exit_code if exit_code is not None else record.exit_code
    if record.started_at is not None and record.ended_at is None:
        record.ended_at = _now()


def _process(run: RunRecord, job_name: str) -> str | None:
    """The recorded identity of a step's process (``processes.identify``), None if it never started."""
    return run.executor_data.get("processes", {}).get(job_name)


def _runner_gone(run: RunRecord) -> bool:
    runner = run.executor_data.get("runner")
    return runner is not None and not is_running(runner)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


@contextmanager
def _sigterm_as_cancel():
    def handler(signum, frame):
        raise Cancelled()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str], executor: LocalExecutor | None = None) -> int:
    """Detached runner: ``python -m nemotron.launcher.executors.<local|docker> RUN_DIR``."""
    executor = executor or LocalExecutor()
    if len(argv) != 1:
        print(f"usage: python -m {type(executor).__module__} RUN_DIR", file=sys.stderr)
        return 2
    try:
        run = executor.run_jobs(read_run(Path(argv[0])))
    except ExecutorError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0 if run.state == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
