"""Failure classes of a step's attempts, and the attempt records every executor keeps.

An attempt is one start of a step: a Slurm job runs a new attempt each time it is requeued (same job id, so its
dependents keep waiting on it), the local runner each time it starts the step's process again. Each attempt ends
in a class, and the profile's ``[fault_tolerance]`` says whether that class is retried (``profiles.FaultTolerance``):

============== ====================================================================== ========================
class          what ended the attempt                                                 default policy
============== ====================================================================== ========================
preempted      the scheduler's signal (or a requeue it did itself); checkpoint saved  retry
node_failure   a node of the job was lost (Slurm requeues the job; it runs elsewhere) retry, without the node
time_limit     the signal before the time limit; checkpoint saved                     retry if it made progress
hang           no progress for ``hang_timeout``: the watchdog dumped every rank's      retry
               stacks into the log and ended the step
application    any other non-zero exit                                                stop
_error
stopped        the step's exit code ``stop_exit_code`` (93): "do not restart"         stop
terminated     SIGTERM (``scancel``/``cancel``)                                       --
completed      exit 0                                                                 --
============== ====================================================================== ========================

Where the attempts are written: the Slurm batch script appends one JSON line at each attempt's start and end to
``<run_dir>/attempts/<job>.jsonl`` (``executors.sbatch_attempts``); a node failure kills the batch script with its
node, so the next attempt writes the end of the one before. The local runner writes the same lines.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

FailureClass = Literal[
    "completed", "preempted", "node_failure", "time_limit", "hang", "application_error", "stopped", "terminated"
]
Decision = Literal["retry", "stop", "done"]
# the classes a profile's [fault_tolerance] sets a policy for (the others are never retried)
RETRIABLE_CLASSES = ("preempted", "node_failure", "time_limit", "hang", "application_error")
ATTEMPTS_DIR = "attempts"

WORDS: dict[str, str] = {
    "completed": "completed",
    "preempted": "preempted (checkpoint saved)",
    "node_failure": "node failure",
    "time_limit": "time limit reached (checkpoint saved)",
    "hang": "hang: no progress, the watchdog ended it",
    "application_error": "application error",
    "stopped": "exited with the do-not-restart code",
    "terminated": "terminated (SIGTERM: cancelled, or preempted by Slurm)",
}


class Attempt(BaseModel):
    number: int
    job_id: str | None = None
    nodes: str | None = None  # Slurm hostlist ("n[1-2]") or this host's name
    started_at: _dt.datetime | None = None
    ended_at: _dt.datetime | None = None
    exit_code: int | None = None
    failure: FailureClass | None = None  # None while it runs
    decision: Decision | None = None
    detail: str | None = None  # failed nodes, "no progress in this attempt", "all 3 attempts used"

    @property
    def is_segment(self) -> bool:
        """A segment of a long run, not a failure: it reached its time limit after saving a newer checkpoint."""
        return self.failure == "time_limit" and self.decision == "retry"

    def describe(self) -> str:
        """One line in words: ``attempt 2 (job 41 on n[1,3]): node failure (n2); retried``."""
        where = f" (job {self.job_id}{f' on {self.nodes}' if self.nodes else ''})" if self.job_id else ""
        if self.failure is None:
            return f"attempt {self.number}{where}: running"
        words = WORDS[self.failure]
        if self.exit_code not in (None, 0):
            words += f", exit code {self.exit_code}"
        if self.detail:
            words += f" ({self.detail})"
        then = {"retry": "; retried", "stop": "; not retried", "done": ""}.get(self.decision or "done", "")
        return f"attempt {self.number}{where}: {words}{then}"


def attempts_file(run_dir: Path | str, job_name: str) -> str:
    return f"{run_dir}/{ATTEMPTS_DIR}/{job_name}.jsonl"


def read_attempts(text: str) -> list[Attempt]:
    """The attempts of a step from its JSON lines (``start`` then ``end`` events); lines that do not parse (a write
    cut by a node failure) are skipped."""
    attempts: dict[int, Attempt] = {}
    for line in text.splitlines():
        try:
            event = json.loads(line)
            number = int(event["attempt"])
        except (ValueError, KeyError, TypeError):
            continue
        attempt = attempts.setdefault(number, Attempt(number=number))
        when = _time(event.get("time"))
        if event.get("event") == "start":
            attempt.job_id, attempt.nodes, attempt.started_at = event.get("job_id"), event.get("nodes"), when
        elif event.get("event") == "end" and event.get("class") in WORDS:
            attempt.ended_at, attempt.failure = when, event["class"]
            attempt.exit_code = event.get("exit_code")
            attempt.decision = event.get("decision") if event.get("decision") in ("retry", "stop", "done") else None
            attempt.detail = event.get("detail") or None
    return [attempts[n] for n in sorted(attempts)]


def start_event(number: int, job_id: str, nodes: str, checkpoint_step: int | None = None) -> str:
    return _line(event="start", attempt=number, job_id=job_id, nodes=nodes, time=_epoch(),
                 checkpoint_step=checkpoint_step)  # fmt: skip


def end_event(number: int, failure: str, exit_code: int | None, decision: str, detail: str = "") -> str:
    return _line(event="end", attempt=number, time=_epoch(), exit_code=exit_code, decision=decision, detail=detail,
                 **{"class": failure})  # fmt: skip


def last_failure(attempts: list[Attempt]) -> Attempt | None:
    return next((a for a in reversed(attempts) if a.failure not in (None, "completed")), None)


def _line(**fields) -> str:
    return json.dumps(fields, separators=(",", ":")) + "\n"


def _epoch() -> int:
    return int(_dt.datetime.now(_dt.UTC).timestamp())


def _time(value) -> _dt.datetime | None:
    return _dt.datetime.fromtimestamp(value, _dt.UTC) if isinstance(value, int | float) else None
