"""People's view of a run (stderr): the per-step status table, shared by every executor and the CLI."""

from __future__ import annotations

import datetime as _dt
import sys
from typing import TYPE_CHECKING

from nemotron.launcher.inputs import headline_metric

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from nemotron.launcher.runs import RunRecord, StepRecord

STATE_STYLES = {
    "completed": "green",
    "reused": "cyan",
    "running": "yellow",
    "pending": "blue",
    "failed": "bold red",
    "timeout": "bold red",
    "cancelled": "magenta",
    "preempted": "magenta",
    "unknown": "red",
    "planned": "dim",
}


def stderr_console() -> Console:
    from rich.console import Console

    # Logs and pipes get a wide fixed width: paths wrapped at 80 columns are unreadable and uncopyable.
    return Console(stderr=True, highlight=False, soft_wrap=False, width=None if sys.stderr.isatty() else 160)


def duration(record: StepRecord, now: _dt.datetime | None = None) -> str:
    if record.started_at is None:
        return ""
    end = record.ended_at or now or _dt.datetime.now(_dt.UTC)
    seconds = max(0, int((end - record.started_at).total_seconds()))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def status_table(run: RunRecord) -> Table:
    from rich.table import Table

    title = f"{run.run_id}  {run.plan.target}  [{run.executor}]  {run.state}  (under {run.plan.artifact_root})"
    table = Table(title=title, title_justify="left")
    for column in ("step", "state", "job id", "duration", "artifact", "metric"):
        table.add_column(column, overflow="fold")
    for name, record in run.steps.items():
        state = record.state + (f" ({record.reason})" if record.reason else "")
        metric = headline_metric(record.artifact) if record.state in ("completed", "reused") else ""
        style = STATE_STYLES.get(record.state, "")
        table.add_row(
            name,
            f"[{style}]{state}[/]" if style else state,
            record.job_id or "",
            duration(record),
            _short(record.artifact, run.plan.artifact_root),
            metric,
        )
    return table


def _short(path, root) -> str:
    """Artifact paths relative to the artifact root (named in the title); the JSON on stdout has them in full."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def print_status(run: RunRecord) -> None:
    stderr_console().print(status_table(run))


def print_failure(run: RunRecord, job_name: str, tail: str) -> None:
    """The failing step and the tail of its log, so the cause is on screen without opening a file."""
    record = run.steps[job_name]
    out = sys.stderr
    out.write(f"\nstep {job_name} failed ({_exit_text(record.exit_code, record.reason)}); log: {record.log}\n")
    if tail:
        out.write("---- last lines of its log ----\n" + tail + "\n-------------------------------\n")
    out.flush()


def _exit_text(code: int | None, reason: str | None) -> str:
    if code is not None and code < 0:  # subprocess reports death by signal N as -N
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    text = f"exit code {code}" if code is not None else "no exit code"
    return f"{text}: {reason}" if reason else text
