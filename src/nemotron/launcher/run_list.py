"""Which runs: the filters of ``nemotron-launch runs`` and ``cancel``, and the runs they select, newest first.

The index is read backwards (``run_index``) and only as far as the filters need; a finished run is its outcome line,
a run still in flight is its record, brought up to date by its executor: every listed run of an executor at once
(``Executor.refresh``: one ``sacct``, or one ``squeue``, for all the Slurm runs listed). With ``--state`` and ``-n``
together a run in flight may turn out not to match once asked; the next ones are then read and asked in another
round, so a round trip to the scheduler is made per round, never per run.
"""

from __future__ import annotations

import datetime as _dt
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemotron.errors import UserError
from nemotron.launcher.run_index import IndexedRun, IndexScan, append_outcome, ended_state, parse_time, run_row

if TYPE_CHECKING:
    from nemotron.launcher.runs import RunRecord

LIST_STATES = ("planned", "running", "completed", "failed", "cancelled", "unknown")  # unknown: its record is gone
SINCE_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SINCE_FORMS = "a duration (30m, 12h, 2d, 1w) or a UTC date (2026-12-01, 2026-12-01T08:00)"
ORDER_SLACK = _dt.timedelta(minutes=10)  # launch lines are appended seconds after the run id's time, in any order


class FilterError(UserError):
    pass


@dataclass(frozen=True)
class RunFilter:
    states: frozenset[str] = frozenset()
    target: str | None = None
    since: _dt.datetime | None = None
    limit: int | None = None

    @classmethod
    def parse(cls, states: Sequence[str], target: str | None, since: str | None, limit: str | None) -> RunFilter:
        """The filters as typed; a bad value is one line naming it and the valid ones."""
        wanted = {s.strip() for text in states for s in text.split(",") if s.strip()}
        for state in sorted(wanted):
            if state not in LIST_STATES:
                raise FilterError(f"unknown run state {state!r} for --state: valid states are {', '.join(LIST_STATES)}")
        count = parse_count(limit) if limit is not None else None
        if target is not None:
            _resolved(target, strict=True)  # an unknown stage or step of a known recipe: one line naming the targets
        return cls(frozenset(wanted), target, parse_since(since) if since is not None else None, count)

    @property
    def empty(self) -> bool:
        return not self.states and self.target is None and self.since is None and self.limit is None

    def selects_launch(self, indexed: IndexedRun) -> bool:
        """What the launch line alone decides: target and age."""
        created = indexed.created_at
        if self.since is not None and (created is None or created < self.since):
            return False
        return self.target is None or _within(str(indexed.entry.get("target", "")), self.target)

    def past_since(self, indexed: IndexedRun) -> bool:
        """Older than ``since`` by more than the index's ordering slack: nothing further back can match."""
        created = indexed.created_at
        return self.since is not None and created is not None and created < self.since - ORDER_SLACK


def parse_count(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise FilterError(f"-n {text!r}: expected a number of runs, 1 or more")
    return int(text)


def parse_since(text: str, now: _dt.datetime | None = None) -> _dt.datetime:
    now = now or _dt.datetime.now(_dt.UTC)
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text)
    if match:
        try:
            return now - _dt.timedelta(seconds=int(match.group(1)) * SINCE_UNITS[match.group(2)])
        except OverflowError:  # before the year 1: every run
            return _dt.datetime.min.replace(tzinfo=_dt.UTC)
    moment = parse_time(text.strip()) if re.match(r"\d{4}-\d\d-\d\d", text.strip()) else None
    if moment is None:
        raise FilterError(f"--since {text!r}: expected {SINCE_FORMS}")
    return moment


@cache
def _resolved(target: str, strict: bool = False) -> tuple[str, frozenset[tuple[str, str]]] | None:
    """(recipe, its (stage, step) pairs) of a target, None when its recipe is not installed here (a run of a recipe
    since removed is still listed: its target is then compared as text)."""
    from nemotron.launcher.targets import recipe_modules, resolve_target

    if target.split(".")[0] not in recipe_modules():
        return None
    try:
        resolved = resolve_target(target)
    except UserError:
        if strict:
            raise
        return None
    return resolved.recipe.name, frozenset((stage.name, step.name) for stage, step in resolved.selected)


def _within(run_target: str, wanted: str) -> bool:
    """Whether a run's target lies within the ``wanted`` one: ``nano2`` takes in ``nano2.stage0`` (or its long name
    ``nano2.stage0_pretrain``) and ``nano2.stage0.training``, not the other way round."""
    mine, theirs = _resolved(run_target), _resolved(wanted)
    if mine is None or theirs is None:
        return run_target == wanted or run_target.startswith(wanted + ".")
    return mine[0] == theirs[0] and mine[1] <= theirs[1]


# ------------------------------------------------------------------------------------------------ selection
@dataclass
class Listed:
    """One selected run: its row (``run_index.run_row`` plus ``problem``) and its record when it was read."""

    row: dict[str, Any]
    record: RunRecord | None = None


@dataclass
class Selection:
    listed: list[Listed] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def select_runs(run_filter: RunFilter, index: Path) -> Selection:
    """The runs ``run_filter`` selects, newest first, runs in flight brought up to date."""
    scan = IndexScan(index)
    candidates = _candidates(scan, run_filter)
    selection = Selection()
    while run_filter.limit is None or len(selection.listed) < run_filter.limit:
        wanted = None if run_filter.limit is None else run_filter.limit - len(selection.listed)
        batch = list(islice(candidates, wanted))
        if not batch:
            break
        selection.warnings += _refresh([item.record for item in batch if item.record is not None])
        for item in batch:
            if item.record is not None:
                item.row = {**run_row(item.record), "problem": item.row.get("problem")}
            if not run_filter.states or item.row["state"] in run_filter.states:
                selection.listed.append(item)
    for item in selection.listed:
        if item.row["problem"] is None and not Path(item.row["run_dir"]).is_dir():
            item.row["problem"] = "run directory deleted"
    if warning := scan.warning():
        selection.warnings.insert(0, warning)
    return selection


def _candidates(scan: IndexScan, run_filter: RunFilter) -> Iterator[Listed]:
    """Runs that may match, newest first: finished ones as rows, decided here; the others with their records, to
    be asked about (``select_runs``)."""
    from nemotron.launcher.runs import RunError, index_path, read_run

    for indexed in scan:
        if run_filter.past_since(indexed):
            return
        if not run_filter.selects_launch(indexed):
            continue
        if indexed.outcome is not None:
            row = {**indexed.outcome, "problem": None}
            if not run_filter.states or row["state"] in run_filter.states:
                yield Listed(row)
            continue
        try:
            record = read_run(Path(indexed.entry["run_dir"]))
        except RunError as err:
            gone = not Path(indexed.entry["run_dir"]).exists()
            row = _row_without_record(indexed, "run directory deleted" if gone else str(err))
            if not run_filter.states or row["state"] in run_filter.states:
                yield Listed(row)
            continue
        if ended_state(record):  # indexed by a version that wrote no outcome lines, or its line was lost
            append_outcome(index_path(), record)
        yield Listed({"problem": None}, record)


def _row_without_record(indexed: IndexedRun, problem: str) -> dict[str, Any]:
    entry = indexed.entry
    return {
        "run_id": entry["run_id"],
        "target": entry.get("target"),
        "scale": entry.get("scale"),
        "executor": entry.get("executor"),
        "profile": entry.get("profile"),
        "state": "unknown",
        "created_at": entry.get("created_at"),
        **dict.fromkeys(("started_at", "ended_at", "metric_step", "metric", "failures")),
        "steps_done": None,
        "steps_total": None,
        "run_dir": entry["run_dir"],
        "problem": problem,
    }


def _refresh(records: list[RunRecord]) -> list[str]:
    """Every unfinished record brought up to date by its executor, all of an executor's runs in one call; an
    executor that cannot answer leaves its runs as last recorded, with one warning."""
    from nemotron.launcher.executors.base import get_executor

    warnings = []
    for name, runs in by_executor([record for record in records if not record.finished]).items():
        try:
            get_executor(name).refresh(runs)
        except UserError as err:
            warnings.append(f"warning: {len(runs)} {name} run(s) shown as last recorded: {err}")
    return warnings


def by_executor(runs: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    """``runs`` grouped by executor, for the calls an executor makes for all its runs at once."""
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(run.executor, []).append(run)
    return groups


def unfinished(selection: Selection) -> list[RunRecord]:
    return [item.record for item in selection.listed if item.record is not None and not item.record.finished]


def print_warnings(selection: Selection) -> None:
    for warning in selection.warnings:
        print(warning, file=sys.stderr)
