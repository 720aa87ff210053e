"""People's view of a run (stderr): the per-step status table, shared by every executor and the CLI."""

from __future__ import annotations

import datetime as _dt
import sys
import time
from typing import TYPE_CHECKING

from nemotron.heartbeat import eta_seconds
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
    return _hms((end - record.started_at).total_seconds())


def _hms(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_text(record: StepRecord) -> str:
    """``120/400 loss 4.213 ETA 0:01:10`` for a running step that reports progress; '' otherwise."""
    progress = record.progress
    if record.state != "running" or not progress or progress.get("done") is None:
        return ""
    text = f"{progress['done']}/{progress['total']}" if progress.get("total") else str(progress["done"])
    if isinstance(progress.get("loss"), int | float):
        text += f" loss {progress['loss']:.3f}"
    eta = eta_seconds(progress)
    return text + (f" ETA {_hms(eta)}" if eta is not None else "")


def attempt_lines(run: RunRecord) -> list[str]:
    """Every attempt of the steps that needed more than one, or whose attempt failed, in words."""
    lines = []
    for name, record in run.steps.items():
        if len(record.attempts) > 1 or any(a.failure not in (None, "completed") for a in record.attempts):
            lines += [f"{name}: {attempt.describe()}" for attempt in record.attempts]
    return lines


def status_table(run: RunRecord) -> Table:
    from rich.markup import escape
    from rich.table import Table

    title = f"{run.run_id}  {run.plan.target}  [{run.executor}]  {run.state}  (under {run.plan.artifact_root})"
    table = Table(title=title, title_justify="left")
    # The attempt and progress columns only when a step has one; what people read in full (step, state and the
    # reason in words, job) is never wrapped, the artifact path folds instead.
    with_attempts = any(record.attempts for record in run.steps.values())
    with_progress = any(progress_text(record) for record in run.steps.values())
    with_tasks = any(record.tasks for record in run.steps.values())  # an array job: its tasks done/total
    swept = {job.name: job.sweep for job in run.plan.jobs if job.sweep is not None}  # a sweep's task: its values
    columns = ["step", *(["sweep"] if swept else []), "state", *(["attempt"] if with_attempts else []),
               "job (nodes)", "duration", *(["tasks"] if with_tasks else []),
               *(["progress"] if with_progress else []), "artifact", "metric"]  # fmt: skip
    for column in columns:
        no_wrap = column in ("step", "sweep", "state", "job (nodes)", "progress")
        table.add_column(column, overflow="fold", no_wrap=no_wrap)
    for name, record in run.steps.items():
        state = record.state + (f" ({record.reason})" if record.reason else "")
        metric = headline_metric(record.artifact) if record.state in ("completed", "reused") else ""
        style = STATE_STYLES.get(record.state, "")
        last = record.attempts[-1] if record.attempts else None
        cells = {
            "step": name,
            "sweep": escape(_values(swept[name].values)) if name in swept else "",  # a person's values: no markup
            "state": f"[{style}]{state}[/]" if style else state,
            "attempt": str(last.number) if last else "",
            "job (nodes)": (record.job_id or "") + (f" ({last.nodes})" if last and last.nodes else ""),
            "duration": duration(record),
            "tasks": record.tasks.text() if record.tasks else "",
            "progress": progress_text(record),
            "artifact": _short(record.artifact, run.plan.artifact_root),
            "metric": metric,
        }
        table.add_row(*(cells[column] for column in columns))
    return table


def _values(values: dict[str, str]) -> str:
    return " ".join(f"{k}={v if v.isprintable() else repr(v)}" for k, v in values.items())


def _short(path, root) -> str:
    """Artifact paths relative to the artifact root (named in the title); the JSON on stdout has them in full."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def print_status(run: RunRecord) -> None:
    console = stderr_console()
    console.print(status_table(run))
    for line in attempt_lines(run):
        console.print(line, markup=False)


class LiveView:
    """A run as it goes, on stderr: a live status table on a terminal; elsewhere (logs, pipes) one line per change of
    a step's state or attempt, and a running step's progress at most every ``PROGRESS_LINE_S``."""

    PROGRESS_LINE_S = 30.0

    def __init__(self, run: RunRecord):
        self.run = run
        self.live = None
        self.seen: dict[str, tuple] = {}
        self.progress_shown: dict[str, float] = {}

    def __enter__(self) -> LiveView:
        if sys.stderr.isatty():
            from rich.live import Live

            self.live = Live(status_table(self.run), console=stderr_console(), refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.refresh()
        if self.live is not None:
            self.live.__exit__(*exc)

    def refresh(self, run: RunRecord | None = None) -> None:
        self.run = run or self.run
        if self.live is not None:
            self.live.update(status_table(self.run))
            return
        now = time.monotonic()
        for name, record in self.run.steps.items():
            last = record.attempts[-1] if record.attempts else None
            key = (record.state, record.reason, last.number if last else None, record.tasks)
            progress = progress_text(record)
            if self.seen.get(name) != key:
                self.seen[name] = key
                self.progress_shown[name] = now
                job = f" job {record.job_id}" if record.job_id else ""
                attempt = f" attempt {last.number}" if last and (last.number > 1 or last.nodes) else ""
                nodes = f" on {last.nodes}" if last and last.nodes else ""
                detail = f" ({record.reason})" if record.reason else ""
                detail += f" tasks {record.tasks.text()}" if record.tasks else ""
                sys.stderr.write(f"[{self.run.run_id}] {name}{job}{attempt}{nodes}: {record.state}{detail}\n")
            elif progress and now - self.progress_shown.get(name, 0.0) >= self.PROGRESS_LINE_S:
                self.progress_shown[name] = now
                sys.stderr.write(f"[{self.run.run_id}] {name}: {progress}\n")
        sys.stderr.flush()


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
