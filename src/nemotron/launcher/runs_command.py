"""``nemotron-launch runs`` and ``nemotron-launch cancel`` over several runs: what the CLI does with a selection.

``runs``: a table on a terminal (stderr, like every table of this CLI), one JSON document ``{"runs": [row, ...]}`` on
stdout when stdout is not one. ``cancel`` by filter asks on a terminal and wants ``--yes`` elsewhere; every run's jobs
are cancelled by their executor in one batch (``Executor.cancel_runs``: one ``scancel`` per batch of job ids).
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from collections.abc import Sequence
from typing import Any

from nemotron.errors import UserError
from nemotron.launcher.run_list import (
    FilterError,
    RunFilter,
    Selection,
    by_executor,
    print_warnings,
    select_runs,
    unfinished,
)

IN_FLIGHT = frozenset({"planned", "running"})


def list_runs(run_filter: RunFilter) -> int:
    from nemotron.launcher.runs import index_path

    selection = select_runs(run_filter, index_path())
    print_warnings(selection)
    rows = [item.row for item in selection.listed]
    if sys.stdout.isatty():
        from nemotron.launcher.report import stderr_console

        stderr_console().print(runs_table(rows))
    else:
        sys.stdout.write(json.dumps({"runs": rows}) + "\n")
        sys.stdout.flush()
    return 0


def cancel_selected(run_filter: RunFilter, yes: bool) -> tuple[list, int]:
    """The runs in flight ``run_filter`` selects, cancelled once confirmed: (their records, exit code)."""
    if not run_filter.states:
        run_filter = RunFilter(IN_FLIGHT, run_filter.target, run_filter.since, run_filter.limit)
    from nemotron.launcher.runs import index_path

    selection = select_runs(run_filter, index_path())
    print_warnings(selection)
    runs = unfinished(selection)
    if not runs:
        print("no run in flight matches", file=sys.stderr)
        return [], 0
    if not _confirmed(selection, runs, yes):
        print("nothing cancelled", file=sys.stderr)
        return [], 1
    return cancel_runs(runs), 0


def cancel_runs(runs: Sequence) -> list:
    """Every run's unfinished jobs cancelled, all the runs of an executor in one batch."""
    from nemotron.launcher.executors.base import get_executor

    done = []
    for name, group in by_executor(runs).items():
        done += get_executor(name).cancel_runs(group)
    for run in done:
        print(f"{run.run_id}: {run.state}", file=sys.stderr)
    return done


def _confirmed(selection: Selection, runs: list, yes: bool) -> bool:
    from nemotron.launcher.runs import FINISHED_STATES

    jobs = sum(1 for run in runs for r in run.steps.values() if r.job_id and r.state not in FINISHED_STATES)
    what = f"{len(runs)} run{'s' if len(runs) != 1 else ''} ({jobs} unfinished job{'s' if jobs != 1 else ''})"
    if yes:
        return True
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise FilterError(f"the filter selects {what}: add --yes to cancel them (no terminal to ask)")
    from nemotron.launcher.report import stderr_console

    stderr_console().print(runs_table([item.row for item in selection.listed if item.record in runs]))
    try:
        return input(f"cancel these {what}? [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def check_cancel_arguments(references: Sequence[str], run_filter: RunFilter) -> None:
    if references and not run_filter.empty:
        raise UserError("cancel takes run ids or a filter (--state, --target, --since, -n), not both")
    if not references and run_filter.empty:
        raise UserError("cancel needs run ids, or a filter: --state, --target, --since or -n (with --yes)")


# ------------------------------------------------------------------------------------------------ the table
def runs_table(rows: list[dict[str, Any]]):
    from rich.table import Table

    from nemotron.launcher.report import STATE_STYLES

    title = f"{len(rows)} run{'s' if len(rows) != 1 else ''}, newest first (times UTC)"
    table = Table(title=title, title_justify="left")
    for column in ("run", "target", "profile", "state", "started", "took", "steps", "metric", "failures"):
        table.add_column(column, overflow="fold", no_wrap=column in ("run", "state", "started", "took", "steps"))
    now = _dt.datetime.now(_dt.UTC)
    for row in rows:
        style = STATE_STYLES.get(row["state"], "")
        steps = f"{row['steps_done']}/{row['steps_total']}" if row.get("steps_total") is not None else ""
        metric = f"{row['metric_step'].rpartition('.')[2]} {row['metric']}" if row.get("metric") else ""
        profile = row.get("profile") or ""
        if row.get("executor") and row["executor"] != profile:  # the profile's name usually says it
            profile += f" ({row['executor']})"
        table.add_row(
            row["run_id"],
            " ".join(filter(None, (row.get("target"), row.get("scale")))),
            profile,
            f"[{style}]{row['state']}[/]" if style else row["state"],
            _minute(row.get("created_at")),
            _duration(row, now),
            steps,
            metric,
            "; ".join(filter(None, (row.get("failures"), row.get("problem")))),
        )
    return table


def _minute(text: str | None) -> str:
    from nemotron.launcher.run_index import parse_time

    moment = parse_time(text)
    return f"{moment.astimezone(_dt.UTC):%m-%d %H:%M}" if moment else ""


def _duration(row: dict[str, Any], now: _dt.datetime) -> str:
    from nemotron.launcher.report import _hms
    from nemotron.launcher.run_index import parse_time

    start = parse_time(row.get("started_at"))
    if start is None:
        return ""
    end = parse_time(row.get("ended_at")) or (now if row["state"] in IN_FLIGHT else None)
    return _hms((end - start).total_seconds()) if end else ""
