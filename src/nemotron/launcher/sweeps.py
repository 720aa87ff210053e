"""Sweeps: ``--sweep STEP.FIELD=v1,v2,...`` (repeatable) plans the cross product of the values as tasks of one array.

A sweep is expanded here, at plan time, and nowhere else: the swept step becomes one ordinary job per task
(``<stage>.<step>.<index>``), each with the task's values as overrides, so each has its own Config, fingerprint and
output directory; reuse, ``--force``, claims, lineage and ``status`` then work per task with nothing new. Every step
of the target downstream of the swept one is expanded the same way, task ``i`` reading task ``i``'s output. A job's
``sweep`` (``SweepTask``) names its group — the swept or downstream step the tasks belong to — so an executor can
run a group as one array (Slurm ``--array``, ``aftercorr`` on the upstream group) or as capped processes; executors
only render what the plan says.

Checked before anything is planned, each refusal one line naming the bad value and what is valid: an empty value
list, a duplicate field, a field the step lacks (the override parser's nearest-field message), a step not in the
target (or in several of its stages), a list-valued field (its items are comma-separated too), a field also given as
an override, ``--max-parallel`` below 1. A value of the wrong type is refused by the step's own parser, like any
override.
"""

from __future__ import annotations

import dataclasses
import itertools
import typing
from collections.abc import Sequence

from pydantic import BaseModel

from nemotron.launcher.overrides import Override, OverrideError, check_field, parse_override

EXAMPLE = "e.g. --sweep training.lr=1e-3,3e-3"


class SweepError(OverrideError):
    pass


class SweepTask(BaseModel):
    """One task of a sweep: which group (array) it belongs to, its index, and its values (``STEP.FIELD`` -> value as
    typed) for people; its Config holds them parsed."""

    group: str  # "<stage>.<step>": the array this task is part of
    index: int
    count: int
    values: dict[str, str]
    max_parallel: int


@dataclasses.dataclass(frozen=True)
class Sweep:
    """The parsed ``--sweep`` options of a launch: the swept step, and each task's overrides of it."""

    stage: str  # the swept step's stage (its name)
    step: str
    fields: tuple[str, ...]  # "STEP.FIELD" as typed, in order
    tasks: tuple[tuple[Override, ...], ...]  # the cross product, first field slowest
    max_parallel: int

    def values(self, index: int) -> dict[str, str]:
        return {name: override.value for name, override in zip(self.fields, self.tasks[index], strict=True)}


def check_max_parallel(max_parallel: int | None) -> None:
    if max_parallel is not None and max_parallel < 1:
        raise SweepError(f"--max-parallel {max_parallel}: give how many tasks may run at once, at least 1")


def parse_sweeps(
    texts: Sequence[str], target, overrides: Sequence[Override], max_parallel: int, config_class
) -> Sweep | None:
    """The ``--sweep`` options against the target's steps (``targets.Target``) and the plain ``overrides``;
    ``config_class(step)``: the step's Config (``plan._config_class``)."""
    if not texts:
        return None
    parsed: list[tuple[Override, list[str]]] = []
    seen: set[str] = set()
    for text in texts:
        try:
            override = parse_override(text)
        except OverrideError:
            raise SweepError(f"invalid --sweep {text!r}: expected STEP.FIELD=v1,v2,... ({EXAMPLE})") from None
        values = [value.strip() for value in override.value.split(",")]
        if not override.value.strip() or not all(values):
            raise SweepError(f"--sweep {text!r} has an empty value: give comma-separated values, {EXAMPLE}")
        if override.field in seen:
            raise SweepError(f"--sweep {text!r}: {override.field} is swept twice; give all its values in one --sweep")
        seen.add(override.field)
        parsed.append((override, values))
    stage, step = _one_step([override for override, _ in parsed], target)
    config_cls = config_class(step)
    where = f"{stage.name}.{step.name}"
    hints = typing.get_type_hints(config_cls)
    for override, _ in parsed:
        check_field(config_cls, override.field, where)
        if typing.get_origin(hints[override.field]) in (list, tuple) or _list_option(hints[override.field]):
            raise SweepError(
                f"--sweep {override.text!r}: {override.field} is a list (its items are comma-separated too); "
                "sweep a scalar field"
            )
        for plain in overrides:
            if plain.field == override.field and plain.step == step.name and plain.stage in (None, *_names(stage)):
                raise SweepError(f"{where}.{override.field} is both overridden ({plain.text!r}) and swept: give one")
    product = itertools.product(*([dataclasses.replace(o, value=v) for v in values] for o, values in parsed))
    fields = tuple(_key(override.text) for override, _ in parsed)
    return Sweep(stage.name, step.name, fields, tuple(product), max_parallel)


def _key(text: str) -> str:
    return text.partition("=")[0].strip()


def _names(stage) -> tuple[str, str]:
    return stage.name, stage.alias


def _one_step(overrides: list[Override], target):
    """The one (stage, step) of the target every sweep names: a sweep is one array per step."""
    found = []
    for override in overrides:
        matches = [
            (stage, step)
            for stage, step in target.selected
            if step.name == override.step and override.stage in (None, *_names(stage))
        ]
        if not matches:
            selected = ", ".join(f"{st.alias}.{sp.name}" for st, sp in target.selected)
            raise SweepError(
                f"--sweep {override.text!r} names no step of target {target.text}: its steps are {selected}"
            )
        if len(matches) > 1:
            stages = ", ".join(f"{st.alias}.{sp.name}" for st, sp in matches)
            raise SweepError(
                f"--sweep {override.text!r} names {len(matches)} steps of target {target.text} ({stages}): "
                f"name one, e.g. {matches[0][0].alias}.{_key(override.text)}"
            )
        found.append(matches[0])
    if len({(stage.name, step.name) for stage, step in found}) > 1:
        names = ", ".join(dict.fromkeys(f"{stage.alias}.{step.name}" for stage, step in found))
        raise SweepError(f"--sweep options name several steps ({names}): a sweep varies fields of one step")
    return found[0]


def _list_option(annotation) -> bool:
    """An optional list (``list[str] | None``): its values are comma-separated lists too."""
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    return bool(options) and typing.get_origin(options[0]) in (list, tuple)


def task_name(group: str, index: int) -> str:
    return f"{group}.{index}"


def groups(jobs: Sequence) -> list[tuple[str, list]]:
    """Jobs in plan order as units an executor starts: a sweep's group (its tasks, contiguous in a plan) or one job."""
    units: list[tuple[str, list]] = []
    for job in jobs:
        group = job.sweep.group if job.sweep is not None else None
        if group is not None and units and units[-1][0] == group:
            units[-1][1].append(job)
        else:
            units.append((group or job.name, [job]))
    return units


def task_table(plan) -> list[str]:
    """What ``describe`` shows of each sweep group: task index, the values, state (run/reuse) and output dir."""
    lines: list[str] = []
    for name, jobs in groups(plan.jobs):
        if jobs[0].sweep is None:
            continue
        first = jobs[0].sweep
        to_run = sum(not job.reuse for job in jobs)
        lines.append(f"  sweep {name}: {first.count} task(s), {to_run} to run, {first.max_parallel} at once")
        fields = list(first.values)
        rows = [["task", *fields, "state", "output"]]
        for job in jobs:
            values = [_printable(job.sweep.values[field]) for field in fields]
            rows.append([str(job.sweep.index), *values, "reuse" if job.reuse else "run", _short(job.output, plan)])
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines += [
            "    " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
        ]
    return lines


def _printable(value: str) -> str:
    return value if value.isprintable() else repr(value)


def _short(path, plan) -> str:
    try:
        return str(path.relative_to(plan.artifact_root))
    except ValueError:
        return str(path)
