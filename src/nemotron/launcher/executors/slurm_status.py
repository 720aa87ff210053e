"""A Slurm run's steps brought up to date from what the scheduler said about its jobs (``slurm_state.query_jobs``,
asked once for every run being looked at) and what its batch scripts and steps wrote on the shared filesystem:
each attempt (``sbatch_attempts``), a running step's progress, the exit marker of a job Slurm no longer knows.
A job requeued after a node failure is kept off the failed nodes (``ExcNodeList``) while it is pending.
"""

from __future__ import annotations

import datetime as _dt
import sys

from nemotron.heartbeat import PROGRESS_FILE, read_progress
from nemotron.launcher.executors.base import explain_cancelled
from nemotron.launcher.executors.slurm_arrays import array_state, query_array
from nemotron.launcher.executors.slurm_state import SlurmJobState, down_nodes, map_state
from nemotron.launcher.failures import attempts_file, last_failure, read_attempts
from nemotron.launcher.runs import FINISHED_STATES, RunRecord


def watched_jobs(run: RunRecord) -> dict[str, str]:
    """Job name -> Slurm job id of every job of the run the scheduler may still change."""
    return {n: r.job_id for n, r in run.steps.items() if r.job_id and r.state not in FINISHED_STATES}


def update_run(shell, run: RunRecord, found: dict[str, SlurmJobState]) -> None:
    """The run's unfinished steps from ``found`` (the scheduler's answer for their jobs, and others')."""
    now = _dt.datetime.now(_dt.UTC)
    arrays: dict[str, dict[int, str]] = {}  # a sweep's array id -> its tasks' states: one query per array
    for name, job_id in watched_jobs(run).items():
        record = run.steps[name]
        if run.plan.job(name).array is not None:  # its tasks, asked for apart (``slurm_arrays``)
            accounting = run.executor_data.get("accounting")
            record.state, record.reason, record.tasks = array_state(shell, run.plan.job(name), job_id, accounting)
            record.started_at = record.started_at or (now if record.state == "running" else None)
            record.ended_at = record.ended_at or (now if record.state in FINISHED_STATES else None)
            continue
        if run.plan.job(name).sweep is not None and job_id not in found:
            found = {**found, **_sweep_task(shell, run, job_id, arrays)}
        if job_id in found:
            state, reason = map_state(found[job_id])
            record.exit_code = found[job_id].exit_code if found[job_id].exit_code is not None else record.exit_code
        else:
            state, reason = _from_exit_marker(shell, run, name, job_id)
        if state == "completed" and record.exit_code not in (None, 0):
            state = "failed"
        if state == "failed" and record.exit_code is None:  # squeue has no exit codes: the marker has
            _from_exit_marker(shell, run, name, job_id)
        record.state, record.reason = state, reason
        if state == "running" and record.started_at is None:
            record.started_at = now
        if state in FINISHED_STATES and record.ended_at is None:
            record.ended_at = now
        _read_attempts(shell, run, name)
    explain_cancelled(run)


def _sweep_task(shell, run: RunRecord, job_id: str, arrays: dict[str, dict[int, str]]) -> dict[str, SlurmJobState]:
    """A sweep's task (``ARRAY_INDEX``) as Slurm knows it (``sacct``/``squeue`` list the pending ones of an array in
    one line, ``ID_[2-3%2]``, not by their own ids); empty once Slurm forgot it (its exit marker tells then)."""
    array_id, _, index = job_id.partition("_")
    if array_id not in arrays:
        arrays[array_id] = query_array(array_id, shell.run, run.executor_data.get("accounting"))
    state = arrays[array_id].get(int(index)) if index.isdigit() else None
    return {job_id: SlurmJobState(job_id, state)} if state else {}


def _from_exit_marker(shell, run: RunRecord, name: str, job_id: str) -> tuple[str, str | None]:
    """A job the scheduler forgot (accounting off, past MinJobAge): the batch script's exit marker tells."""
    marker = shell.read_file(f"{run.run_dir}/logs/{name}.exit").decode().strip()
    if marker.isdigit():
        run.steps[name].exit_code = int(marker)
        return ("completed", None) if marker == "0" else ("failed", f"exit code {marker}")
    return "unknown", f"Slurm no longer knows job {job_id}"


def _read_attempts(shell, run: RunRecord, name: str) -> None:
    """What the batch script recorded of the step's attempts, its progress while it runs, and the last failure in
    words; a job Slurm requeued after a node failure is kept off the failed nodes while it is pending."""
    record, job = run.steps[name], run.plan.job(name)
    record.attempts = read_attempts(shell.read_file(attempts_file(run.run_dir, name)).decode(errors="replace"))
    record.progress = None
    if record.state == "running":
        record.progress = read_progress(shell.read_file(f"{job.output}/{PROGRESS_FILE}").decode(errors="replace"))
    failure = last_failure(record.attempts)
    if failure is not None and record.state in ("failed", "timeout") and failure.decision == "stop":
        record.reason = failure.describe()
    if record.state == "pending" and record.attempts:
        _keep_off_failed_nodes(shell, run, name)


def _keep_off_failed_nodes(shell, run: RunRecord, name: str) -> None:
    """A pending job that already ran is a requeued one: the nodes it lost (recorded by a later attempt, or, while
    the attempt Slurm killed has no end yet, those of its nodes that are down now) go in its ``ExcNodeList``, so
    it stays off them even if they come back before it starts. Slurm itself does not place it on a down node."""
    record = run.steps[name]
    lost = {node for a in record.attempts if a.failure == "node_failure" for node in (a.detail or "").split(",")}
    last = record.attempts[-1]
    if last.failure is None and last.nodes:  # killed with its nodes' batch script: the next attempt will say why
        lost |= set(down_nodes(last.nodes, shell.run))
    failed = sorted(node for node in lost if node)
    excluded = run.executor_data.setdefault("excluded_nodes", {})
    if not failed or excluded.get(name) == failed:
        return
    done = shell.run(["scontrol", "update", f"JobId={record.job_id}", f"ExcNodeList={','.join(failed)}"])
    if done.returncode == 0:
        excluded[name] = failed
        print(f"{name}: job {record.job_id} kept off {', '.join(failed)} (node failure)", file=sys.stderr)
