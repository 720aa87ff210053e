"""The run index (``$NEMOTRON_STATE_DIR/runs.jsonl``) as a cheap list of runs: read newest first, only as far as a
listing needs, and a finished run's outcome read from one line instead of its record and its artifacts.

Two kinds of lines, each appended with one ``O_APPEND`` write (concurrent writers never interleave inside a line):

- a **launch** line, written by ``runs.create_run``: ``{"run_id", "run_dir", "target", "executor", "created_at",
  "scale", "profile"}``;
- an **outcome** line, appended once a run is seen ended (``runs.save_run``, or a listing that found an ended
  record without one): ``{"run_id", "run_dir", "outcome": ROW}``, ROW being ``run_row`` of the ended record. An
  ended run's row no longer changes; should it go on after all (a local step retried after a failure), a line with
  ``"outcome": null`` says so. The newest outcome line of a run wins.

So ``nemotron-launch runs`` over 1,000 finished runs reads this file and stats their directories, and reads the
records (and asks the scheduler) only for runs still in flight. Unreadable lines (a torn write, a hand edit, another
tool's bytes) are skipped and counted: the index is a convenience, the records are the truth.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemotron.launcher.run_states import SUCCESS_STATES

if TYPE_CHECKING:
    from nemotron.launcher.runs import RunRecord

BLOCK_BYTES = 64 * 1024
FAILED_STEP_STATES = ("failed", "timeout", "unknown")
ENDED = ("completed", "failed", "cancelled")


@dataclass
class IndexedRun:
    """One run as the index knows it: its launch line, and the row of its newest outcome line if it has one."""

    entry: dict[str, Any]
    outcome: dict[str, Any] | None = None

    @property
    def run_id(self) -> str:
        return self.entry["run_id"]

    @property
    def created_at(self) -> _dt.datetime | None:
        return parse_time(self.entry.get("created_at"))


@dataclass
class IndexScan:
    """Iterating yields the indexed runs newest first, reading the file backwards block by block (a listing of the
    last 50 runs reads the end of the file only); ``skipped`` holds the byte offsets of unreadable lines met."""

    path: Path
    skipped: list[int] = field(default_factory=list)

    def __iter__(self) -> Iterator[IndexedRun]:
        outcomes: dict[str, dict[str, Any]] = {}
        for offset, line in _lines_newest_first(self.path):
            entry = _entry(line)
            if entry is None:
                self.skipped.append(offset)
            elif "outcome" in entry:
                if entry["outcome"] is None or isinstance(entry["outcome"], dict):  # newest first: the first one wins
                    outcomes.setdefault(entry["run_id"], entry["outcome"])
            else:
                yield IndexedRun(entry, outcomes.pop(entry["run_id"], None))

    def warning(self) -> str | None:
        """One line about the unreadable lines skipped so far, or None."""
        if not self.skipped:
            return None
        count = len(self.skipped)
        where = ", ".join(str(offset) for offset in sorted(self.skipped)[:5]) + (", ..." if count > 5 else "")
        lines = "line" if count == 1 else "lines"
        return f"warning: skipped {count} unreadable {lines} of the run index {self.path} (at byte {where})"


def _lines_newest_first(path: Path) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line) from the end of the file to its start; nothing if the file does not exist."""
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below: a generator may stop early)
    except FileNotFoundError:
        return
    with f:
        position = f.seek(0, os.SEEK_END)
        partial = b""  # the start of a line whose beginning is in the block before
        while position > 0:
            size = min(BLOCK_BYTES, position)
            position -= size
            f.seek(position)
            block = f.read(size) + partial
            lines = block.split(b"\n")
            partial = lines.pop(0)
            end = position + len(block)
            for line in reversed(lines):
                end -= len(line) + 1
                if line.strip():
                    yield end + 1, line
        if partial.strip():
            yield 0, partial


def _entry(line: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("run_id", "run_dir")):
        return None
    return entry


def parse_time(text: Any) -> _dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=_dt.UTC)


# ------------------------------------------------------------------------------------------------ rows
def run_row(run: RunRecord) -> dict[str, Any]:
    """What a list of runs shows of one run (the outcome line of a finished run holds exactly this)."""
    steps = run.steps.values()
    started = min((s.started_at for s in steps if s.started_at), default=None)
    ended = max((s.ended_at for s in steps if s.ended_at), default=None) if run.finished else None
    metric_step, metric = last_metric(run)
    return {
        "run_id": run.run_id,
        "target": run.plan.target,
        "scale": run.plan.scale,
        "executor": run.executor,
        "profile": run.plan.profile,
        "state": run.state,
        "created_at": run.created_at.isoformat(),
        "started_at": started.isoformat() if started else None,
        "ended_at": ended.isoformat() if ended else None,
        "steps_done": sum(s.state in SUCCESS_STATES for s in steps),
        "steps_total": len(run.steps),
        "metric_step": metric_step,
        "metric": metric,
        "failures": failures_in_words(run),
        "run_dir": str(run.run_dir),
    }


def last_metric(run: RunRecord) -> tuple[str | None, str | None]:
    """The headline metric of the last finished step (plan order) that has one: (its step, ``name=value``)."""
    from nemotron.launcher.inputs import headline_metric

    for job in reversed(run.plan.jobs):
        record = run.steps.get(job.name)
        if record is not None and record.state in SUCCESS_STATES and (metric := headline_metric(record.artifact)):
            return job.name, metric
    return None, None


def failures_in_words(run: RunRecord) -> str | None:
    """``stage0.training failed: exit code 3; ...`` for each step that failed, timed out or was lost; None if none."""
    words = []
    for name, record in run.steps.items():
        if record.state in FAILED_STEP_STATES:
            why = record.reason or (f"exit code {record.exit_code}" if record.exit_code is not None else None)
            words.append(f"{name} {record.state}" + (f": {why}" if why else ""))
    return "; ".join(words) or None


def ended_state(run: RunRecord) -> str | None:
    """The run's state once it has ended for good, else None (between two local steps a run is ``finished``, yet
    ``running``)."""
    return run.state if run.finished and run.state in ENDED else None


def append_outcome(index: Path, run: RunRecord) -> None:
    """Index the row of an ended run, or that a run indexed as ended goes on (best effort: without the line a listing
    reads the record instead)."""
    row = run_row(run) if ended_state(run) else None
    line = json.dumps({"run_id": run.run_id, "run_dir": str(run.run_dir), "outcome": row})
    try:
        index.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(index, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
    except OSError:
        pass
