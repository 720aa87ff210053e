"""What Slurm says about a run's jobs, in ONE scheduler call, mapped to the launcher's per-step states.

``query_jobs`` asks ``sacct`` once for every job id; where accounting is disabled ("Slurm accounting storage is
disabled") it asks ``squeue --states=all`` once instead (finished jobs stay there for ``MinJobAge`` seconds). A
scheduler that does not answer at all (slurmctld down or overloaded) is an error, never "every job is gone".
``map_state`` turns every Slurm job state (and the pending reason) into a step state with a reason in words.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nemotron.errors import UserError

ACCOUNTING_DISABLED = "accounting storage is disabled"
FORGOTTEN = "Invalid job id specified"  # squeue's answer when it knows none of the ids (past MinJobAge)

# Slurm job state -> (step state, reason in words or None)
STATE_MAP: dict[str, tuple[str, str | None]] = {
    "PENDING": ("pending", None),
    "REQUEUED": ("pending", "requeued"),
    "REQUEUE_HOLD": ("pending", "requeued, held"),
    "REQUEUE_FED": ("pending", "requeued"),
    "RESV_DEL_HOLD": ("pending", "held: its reservation was deleted"),
    "SUSPENDED": ("pending", "suspended"),
    "STOPPED": ("pending", "stopped"),
    "CONFIGURING": ("running", None),
    "RUNNING": ("running", None),
    "COMPLETING": ("running", "completing"),
    "SIGNALING": ("running", "signaled"),
    "STAGE_OUT": ("running", "staging out"),
    "RESIZING": ("running", "resizing"),
    "COMPLETED": ("completed", None),
    "FAILED": ("failed", None),
    "BOOT_FAIL": ("failed", "its node failed to boot"),
    "NODE_FAIL": ("failed", "a node of the job failed"),
    "OUT_OF_MEMORY": ("failed", "out of memory"),
    "SPECIAL_EXIT": ("failed", "special exit"),
    "CANCELLED": ("cancelled", "cancelled"),
    "REVOKED": ("cancelled", "revoked"),
    "DEADLINE": ("timeout", "its deadline passed"),
    "TIMEOUT": ("timeout", "time limit reached"),
    "PREEMPTED": ("preempted", "preempted"),
}
NEVER_RUNS = "DependencyNeverSatisfied"


@dataclass(frozen=True)
class SlurmJobState:
    job_id: str
    slurm_state: str  # e.g. "CANCELLED" (without " by 0")
    reason: str | None = None  # Slurm's pending reason, "None" dropped
    exit_code: int | None = None


Runner = Callable[[Sequence[str]], subprocess.CompletedProcess]


class SlurmUnanswered(UserError):
    pass


def query_jobs(
    job_ids: Sequence[str], run_command: Runner, accounting: bool | None = None
) -> tuple[dict[str, SlurmJobState], bool | None]:
    """One scheduler call for all ``job_ids``: ``sacct``, or ``squeue`` once ``sacct`` said accounting is disabled.

    Returns the states found (ids Slurm forgot are absent) and whether accounting is on, which the caller passes
    back next time so a cluster without accounting costs one ``squeue`` per poll.
    """
    if not job_ids:
        return {}, accounting
    ids = ",".join(job_ids)
    found: dict[str, SlurmJobState] = {}
    if accounting is not False:
        sacct = run_command(["sacct", "-X", "-n", "-P", "-j", ids, "--format=JobIDRaw,State,ExitCode,Reason"])
        accounting = not (ACCOUNTING_DISABLED in sacct.stdout + sacct.stderr or sacct.returncode != 0)
        if accounting:
            found = _parse(sacct.stdout, with_exit_code=True)
            if set(found) >= set(job_ids):
                return found, True
            # jobs slurmctld has not handed to slurmdbd yet: the queue knows them
    squeue = run_command(["squeue", "-h", "--states=all", "-j", ids, "-o", "%i|%T|%r"])
    if squeue.returncode != 0 and not found and FORGOTTEN not in squeue.stderr:
        # slurmctld down or timing out: no answer is not "these jobs are gone" (their steps would be lost for good)
        message = " ".join(squeue.stderr.split()) or f"exit code {squeue.returncode}"
        raise SlurmUnanswered(f"Slurm does not answer about jobs {_few(job_ids)}: {message}")
    return {**_parse(squeue.stdout, with_exit_code=False), **found}, accounting


def _few(job_ids: Sequence[str]) -> str:
    return ",".join(job_ids[:3]) + (f",... ({len(job_ids)} jobs)" if len(job_ids) > 3 else "")


def _parse(text: str, with_exit_code: bool) -> dict[str, SlurmJobState]:
    states = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 3 or not fields[0]:
            continue
        job_id, state = fields[0], fields[1].split()[0] if fields[1] else "UNKNOWN"
        reason = fields[3] if with_exit_code and len(fields) > 3 else fields[2] if not with_exit_code else None
        exit_code = _exit_code(fields[2]) if with_exit_code else None
        states[job_id] = SlurmJobState(job_id, state, None if reason in (None, "", "None") else reason, exit_code)
    return states


def _exit_code(text: str) -> int | None:
    code, _, signal = text.partition(":")
    try:
        return int(code) if int(code) or not signal or int(signal) == 0 else 128 + int(signal)
    except ValueError:
        return None


# sinfo's short node states of a node that cannot run jobs: down, drained/draining, failed, or not responding (*)
UNUSABLE_NODE_RE = re.compile(r"^(down|drain|drng|fail|failg)|[*]$")


def down_nodes(hostlist: str, run_command: Runner) -> list[str]:
    """The nodes of ``hostlist`` (``n[1-2]``) that cannot run jobs now, in one ``sinfo`` call (the batch script's
    attempt record applies the same rule: ``sbatch_attempts``)."""
    listed = run_command(["sinfo", "-h", "-N", "-n", hostlist, "-o", "%N %t"])
    states = dict(line.split()[:2] for line in listed.stdout.splitlines() if len(line.split()) >= 2)
    return sorted(node for node, state in states.items() if UNUSABLE_NODE_RE.search(state))


def map_state(job: SlurmJobState) -> tuple[str, str | None]:
    """A step state and a reason in words for one Slurm job state."""
    if job.slurm_state == "PENDING" and job.reason == NEVER_RUNS:
        return "cancelled", "its dependency can never be satisfied (an upstream job failed)"
    state, reason = STATE_MAP.get(job.slurm_state, ("unknown", f"Slurm state {job.slurm_state}"))
    if state == "pending" and job.reason:
        reason = f"{reason}; {job.reason}" if reason else job.reason
    return state, reason
