"""Run records: what a launch planned and what became of it, so status/logs/cancel work from any shell.

A record lives at ``<artifact_root>/runs/<run_id>/run.json`` (atomic writes; the executor updates it) next to the
run's logs, and is indexed locally in ``$NEMOTRON_STATE_DIR/runs.jsonl`` (default ``~/.local/state/nemotron``).
Run ids sort by time: ``nano2-20261124-203015-a1b2`` (UTC).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from nemotron.artifact import shown
from nemotron.errors import UserError
from nemotron.fsutil import atomic_write_text
from nemotron.launcher.failures import Attempt
from nemotron.launcher.plan import Plan
from nemotron.launcher.run_index import append_outcome, ended_state
from nemotron.launcher.run_states import FINISHED_STATES, SUCCESS_STATES

StepState = Literal[
    "planned",  # not yet handed to the executor
    "reused",  # its output already existed, complete, for the same fingerprint
    "pending",  # submitted, waiting (on a dependency, on resources); ``reason`` says which
    "running",
    "completed",
    "failed",
    "cancelled",
    "timeout",
    "preempted",  # stopped by the scheduler; requeued when the profile allows it
    "unknown",  # the executor can no longer tell (e.g. its runner died)
]
RunState = Literal["planned", "running", "completed", "failed", "cancelled"]
STATE_DIR_ENV = "NEMOTRON_STATE_DIR"
RUN_FILE = "run.json"


class RunError(UserError):
    pass


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


class TaskCounts(BaseModel):
    """An array job's tasks (``nemotron.array``): how many are done of how many, and which failed (their indices)."""

    done: int = 0
    total: int
    failed: list[int] = Field(default_factory=list)

    def text(self) -> str:
        """``3/4`` or ``3/4, failed 2``: what ``status`` shows of an array step."""
        failed = f", failed {','.join(map(str, self.failed))}" if self.failed else ""
        return f"{self.done}/{self.total}{failed}"


class StepRecord(BaseModel):
    state: StepState = "planned"
    job_id: str | None = None  # pid, container id, Slurm job id: whatever the executor addresses it by
    started_at: _dt.datetime | None = None
    ended_at: _dt.datetime | None = None
    exit_code: int | None = None
    reason: str | None = None  # why it is pending / why it failed, in words
    log: Path | None = None
    artifact: Path
    attempts: list[Attempt] = Field(default_factory=list)  # every start of the step (failures.py), oldest first
    progress: dict[str, Any] | None = None  # the step's last progress record while it runs (nemotron.heartbeat)
    tasks: TaskCounts | None = None  # an array job's tasks (None: one task)


class RunRecord(BaseModel):
    run_id: str
    run_dir: Path
    executor: str
    profile: dict[str, Any]  # the resolved profile (it holds secret names only, never values)
    plan: Plan
    detached: bool = False
    created_at: _dt.datetime = Field(default_factory=_now)
    updated_at: _dt.datetime = Field(default_factory=_now)
    steps: dict[str, StepRecord]  # job name -> record, plan order
    executor_data: dict[str, Any] = Field(default_factory=dict)  # backend-specific (runner pid, remote host, ...)
    indexed_outcome: RunState | None = None  # the final state an outcome line of the run index holds (run_index)

    @property
    def state(self) -> RunState:
        states = [s.state for s in self.steps.values()]
        if any(s in ("failed", "timeout", "unknown") for s in states):
            return "failed" if all(s in FINISHED_STATES | {"planned"} for s in states) else "running"
        if any(s == "cancelled" for s in states):
            return "cancelled"
        if all(s in SUCCESS_STATES for s in states):
            return "completed"
        if all(s == "planned" for s in states):
            return "planned"
        return "running"

    @property
    def finished(self) -> bool:
        return all(s.state in FINISHED_STATES | {"planned"} for s in self.steps.values()) and self.state != "planned"

    def log_path(self, job_name: str) -> Path:
        return Path(self.run_dir) / "logs" / f"{job_name}.log"

    def summary(self) -> dict[str, Any]:
        """The one JSON document the CLI prints on stdout."""
        return {
            "run_id": self.run_id,
            "target": self.plan.target,
            "executor": self.executor,
            "state": self.state,
            "run_dir": str(self.run_dir),
            "steps": {
                name: {
                    "state": rec.state,
                    "job_id": rec.job_id,
                    "artifact": str(rec.artifact),
                    **({"reason": rec.reason} if rec.reason else {}),
                    **({"attempts": [a.model_dump(mode="json") for a in rec.attempts]} if rec.attempts else {}),
                    **({"progress": rec.progress} if rec.progress else {}),
                    **({"tasks": rec.tasks.model_dump()} if rec.tasks else {}),
                }
                for name, rec in self.steps.items()
            },
        }


def check_writable(root: Path, what: str = "artifact root") -> None:
    """Fail before anything is written if ``root`` cannot be created or written (checked, not probed by writing)."""
    root = Path(root)
    existing = next(p for p in (root, *root.parents) if p.exists())
    if not existing.is_dir():
        raise RunError(f"{what} {shown(root)} is not usable: {shown(existing)} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunError(f"{what} {shown(root)} is not writable ({shown(existing)} does not allow writing)")


def check_index_writable() -> None:
    """Checked before a run is recorded: a record written under the artifact root but never indexed would be a run
    that ``status`` and ``logs`` cannot find."""
    check_writable(state_dir(), f"run index directory (${STATE_DIR_ENV})")
    index = index_path()
    if index.exists() and not (index.is_file() and os.access(index, os.W_OK)):
        raise RunError(f"run index {shown(index)} is not a writable file (${STATE_DIR_ENV} names its directory)")


def new_run_id(recipe: str) -> str:
    return f"{recipe}-{_now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def create_run(
    plan: Plan, profile_snapshot: dict[str, Any], claim: Callable[[RunRecord], None], detached: bool = False
) -> RunRecord:
    """A new record for ``plan`` (reused jobs already marked), saved, its outputs claimed (``claim``: refuses outputs
    another live run is producing, see ``claims.claim_outputs``), then indexed."""
    check_index_writable()
    run_id = new_run_id(plan.recipe)
    run_dir = Path(plan.artifact_root) / "runs" / run_id
    try:
        (run_dir / "logs").mkdir(parents=True, exist_ok=False)
    except OSError as exc:  # permission checks can pass for root where the filesystem still refuses
        raise RunError(f"cannot create run directory {shown(run_dir)}: {exc.strerror or exc}") from None
    steps = {
        job.name: StepRecord(
            state="reused" if job.reuse else "planned",
            artifact=job.output,
            log=None if job.reuse else run_dir / "logs" / f"{job.name}.log",
        )
        for job in plan.jobs
    }
    run = RunRecord(
        run_id=run_id,
        run_dir=run_dir,
        executor=plan.executor,
        profile=profile_snapshot,
        plan=plan,
        detached=detached,
        steps=steps,
    )
    save_run(run, indexed=False)
    try:
        claim(run)  # the record exists first: a claim always names a run that can be read
    except RunError:
        shutil.rmtree(run_dir, ignore_errors=True)  # refused: no trace of this launch
        raise
    _append_index(run)
    save_run(run)  # with the jobs another run completed meanwhile marked reused (then indexed as finished)
    return run


def mark_not_started(run: RunRecord, reason: str) -> list[str]:
    """A launch that died before some of its jobs were handed over: those (planned or waiting, with no job id) must
    not stay "planned" forever. Returns their names; a step a scheduler holds (it has a job id) is left as it is."""
    names = [n for n, r in run.steps.items() if r.state in ("planned", "pending") and r.job_id is None]
    for name in names:
        run.steps[name].state, run.steps[name].reason = "failed", reason
    save_run(run)
    return names


def save_run(run: RunRecord, indexed: bool = True) -> None:
    """Write the record; once it has ended (and ``indexed``: its launch line is in the run index), its outcome goes in
    the index too, so a listing reads one line for it (``run_index``)."""
    run.updated_at = _now()
    changed = indexed and ended_state(run) != run.indexed_outcome
    if changed:
        run.indexed_outcome = ended_state(run)
    atomic_write_text(Path(run.run_dir) / RUN_FILE, run.model_dump_json(indent=2) + "\n")
    if changed:
        append_outcome(index_path(), run)


def read_run(run_dir: Path) -> RunRecord:
    path = Path(run_dir) / RUN_FILE
    try:
        return RunRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"no run record at {shown(path)}") from None
    except OSError as exc:
        raise RunError(f"cannot read run record {shown(path)}: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, not a run record
        raise RunError(f"corrupt run record {shown(path)}: {str(exc).splitlines()[0]}") from None


def state_dir() -> Path:
    env = os.environ.get(STATE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "nemotron"


def index_path() -> Path:
    return state_dir() / "runs.jsonl"


def _append_index(run: RunRecord) -> None:
    directory = state_dir()
    line = json.dumps(
        {
            "run_id": run.run_id,
            "run_dir": str(run.run_dir),
            "target": run.plan.target,
            "executor": run.executor,
            "created_at": run.created_at.isoformat(),
            "scale": run.plan.scale,
            "profile": run.plan.profile,
        }
    )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # One O_APPEND write per line: concurrent launches never interleave inside a line.
        fd = os.open(index_path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise RunError(f"cannot index run {run.run_id} in {shown(directory)}: {exc.strerror or exc}") from None


def indexed_runs() -> list[dict[str, Any]]:
    """Index entries, oldest first (unreadable lines are skipped: the index is a convenience, records are truth)."""
    path = index_path()
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RunError(f"cannot read the run index {shown(path)}: {exc.strerror or exc}") from None
    return [entry for line in lines if (entry := _index_entry(line)) is not None]


def _index_entry(line: bytes) -> dict[str, Any] | None:
    """One line of the index, or None for anything but ``{"run_id": str, "run_dir": str, ...}`` (a torn write, a
    hand edit, another tool's bytes)."""
    try:
        entry = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("run_id", "run_dir")):
        return None
    return None if "outcome" in entry else entry  # a finished run's row (run_index), not a launch


def find_run(reference: str | None) -> RunRecord:
    """A run by id (from the index), by its directory, or the newest one when ``reference`` is None."""
    if reference is not None and (Path(reference) / RUN_FILE).is_file():
        return read_run(Path(reference))
    entries = indexed_runs()
    if reference is None:
        if not entries:
            raise RunError(f"no runs recorded yet in {shown(index_path())}")
        return read_run(Path(entries[-1]["run_dir"]))
    for entry in reversed(entries):
        if entry["run_id"] == reference:
            return read_run(Path(entry["run_dir"]))
    recent = ", ".join(e["run_id"] for e in entries[-5:]) or "none"
    raise RunError(f"unknown run {reference!r}: recent runs are {recent} (or pass a run directory)")
