"""Job arrays: one step run as N independent tasks (Slurm ``--array``, capped processes locally and in Docker).

The contract between a step and the launcher, light on both sides (no torch, no pyarrow):

- A step module that runs as an array defines ``array_tasks(config) -> int``: how many tasks its job is (1: not an
  array). The launcher plans one job for the step, with the task indices still to run.
- Each task runs the step's ordinary command line; its index comes from the environment (``ARRAY_TASK_ENV``, which
  the sbatch script sets from ``SLURM_ARRAY_TASK_ID`` and the local and docker runners set themselves), and so does
  the number of tasks the launcher planned (``ARRAY_COUNT_ENV``).
- A task records its completion as ``<output>/.tasks/<index>.done``, written last and atomically. A rerun plans only
  the tasks without one, ``status`` counts them (``done/total``), and a task that finds its own marker does nothing
  (``--force`` sets ``ARRAY_REDO_ENV`` so every task redoes its part).
- The step's artifact (``metadata.json``) is written by whichever task completes the last missing part, so the job
  is complete exactly when every task is; the launcher's ``is_complete`` needs nothing new.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

ARRAY_TASK_ENV = "NEMOTRON_ARRAY_TASK"
ARRAY_COUNT_ENV = "NEMOTRON_ARRAY_TASKS"
ARRAY_REDO_ENV = "NEMOTRON_ARRAY_REDO"
TASKS_DIR = ".tasks"


def array_task() -> int | None:
    """This process's task index, or None when the step does not run as an array task."""
    value = os.environ.get(ARRAY_TASK_ENV, "").strip()
    return int(value) if value.isdigit() else None


def array_count(own: int) -> int:
    """How many tasks this process's array has: what the launcher planned (``ARRAY_COUNT_ENV``, so a job planned
    where the step could not count its inputs agrees with its plan), else the step's ``own`` reckoning."""
    value = os.environ.get(ARRAY_COUNT_ENV, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else own


def redo_requested() -> bool:
    """Whether the launch was ``--force``: a task redoes its part even when its marker says it is done."""
    return os.environ.get(ARRAY_REDO_ENV) == "1"


def array_tasks(module: ModuleType, config: Any) -> int:
    """How many tasks a step module's job is, for ``config`` (1 for a step that does not define ``array_tasks``)."""
    count = getattr(module, "array_tasks", None)
    return int(count(config)) if count is not None else 1


def marker(output: Path, index: int) -> Path:
    return Path(output) / TASKS_DIR / f"{index}.done"


def mark_done(output: Path, index: int) -> None:
    """Record task ``index`` of the array writing ``output`` as complete (atomically: a reader never sees half)."""
    from nemotron.fsutil import atomic_write_text

    path = marker(output, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, f"{index}\n")


def done_tasks(output: Path, count: int) -> list[int]:
    """The indices of ``range(count)`` whose task has completed (one directory listing, not ``count`` stats: a
    shared filesystem answers a listing of thousands of markers faster than thousands of lookups)."""
    try:
        names = {entry.name for entry in os.scandir(Path(output) / TASKS_DIR)}
    except OSError:
        return []
    return [i for i in range(count) if f"{i}.done" in names]


def missing_tasks(output: Path, count: int) -> list[int]:
    done = set(done_tasks(output, count))
    return [i for i in range(count) if i not in done]


def index_ranges(indices: Iterable[int]) -> str:
    """Indices in Slurm's ``--array`` syntax, runs folded into ranges: ``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    ordered = sorted(set(indices))
    parts: list[str] = []
    start = prev = None
    for i in ordered:
        if prev is not None and i == prev + 1:
            prev = i
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = i
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(parts)
