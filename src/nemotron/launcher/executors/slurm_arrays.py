"""A Slurm job array's tasks, from one scheduler call per array, folded into one step state with ``done/total``.

``sacct -X -j ID`` lists an array's tasks as ``ID_3`` once they started and its pending ones in one line
(``ID_[4-7%2]``); ``squeue -r`` lists one line per task, finished ones for ``MinJobAge``. Tasks the scheduler no
longer knows are told by their completion markers (``nemotron.array``). The step is running while a task runs or
waits, completed when every task did, failed (naming the failed indices) when a task did not complete.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from nemotron.array import TASKS_DIR
from nemotron.launcher.executors.slurm_state import ACCOUNTING_DISABLED, STATE_MAP
from nemotron.launcher.plan import Job
from nemotron.launcher.runs import TaskCounts

TASK_RE = re.compile(r"^(\d+)_(\d+|\[[^\]]*\])$")
Runner = Callable[[Sequence[str]], object]


def query_array(array_id: str, run_command: Runner, accounting: bool | None) -> dict[int, str]:
    """Slurm's state of each task of the array ``array_id`` it still knows (index -> e.g. ``RUNNING``)."""
    states: dict[int, str] = {}
    if accounting is not False:
        sacct = run_command(["sacct", "-X", "-n", "-P", "-j", array_id, "--format=JobID,State"])
        if sacct.returncode == 0 and ACCOUNTING_DISABLED not in sacct.stdout + sacct.stderr:
            states = _parse(sacct.stdout, array_id)
    # the queue knows tasks slurmctld has not handed to accounting yet, and is the only source without it
    squeue = run_command(["squeue", "-h", "-r", "--states=all", "-j", array_id, "-o", "%i|%T"])
    if squeue.returncode == 0:
        states.update(_parse(squeue.stdout, array_id))
    return states


def _parse(text: str, array_id: str) -> dict[int, str]:
    states: dict[int, str] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        match = TASK_RE.match(fields[0]) if len(fields) >= 2 else None
        if match is None or match.group(1) != array_id:
            continue
        state = fields[1].split()[0] if fields[1] else "UNKNOWN"  # "CANCELLED by 0"
        for index in _indices(match.group(2)):
            states[index] = state
    return states


def _indices(text: str) -> list[int]:
    """``3`` or ``[4-7,9%2]`` -> the task indices it names."""
    if text.isdigit():
        return [int(text)]
    found: list[int] = []
    for part in text.strip("[]").split("%")[0].split(","):
        low, _, high = part.partition("-")
        if low.isdigit():
            found += list(range(int(low), int(high) + 1)) if high.isdigit() else [int(low)]
    return found


def array_state(shell, job: Job, array_id: str, accounting: bool | None) -> tuple[str, str | None, TaskCounts]:
    """``fold`` of what Slurm says of the array's tasks (markers are listed only for tasks it no longer knows)."""
    states = query_array(array_id, shell.run, accounting)
    forgotten = [i for i in job.array.indices if i not in states]
    return fold(job, states, read_markers(shell, job) if forgotten else set())


def fold(job: Job, states: dict[int, str], done_markers: set[int]) -> tuple[str, str | None, TaskCounts]:
    """The step's state, a reason in words and its task counts, from its planned tasks' Slurm states (a task Slurm
    forgot counts as done if its marker exists, else as failed)."""
    array = job.array
    mapped = {i: STATE_MAP.get(states[i], ("unknown", None))[0] if i in states else None for i in array.indices}
    done = array.count - len(array.indices)
    done += sum(1 for i, s in mapped.items() if s == "completed" or (s is None and i in done_markers))
    failed = sorted(i for i, s in mapped.items() if s in ("failed", "timeout", "cancelled", "unknown", "preempted"))
    failed += sorted(i for i, s in mapped.items() if s is None and i not in done_markers)
    counts = TaskCounts(done=done, total=array.count, failed=sorted(failed))
    active = [s for s in mapped.values() if s in ("running", "pending")]
    if "running" in active:
        return "running", None, counts
    if active:
        ran = any(s not in ("pending",) and s is not None for s in mapped.values())
        return ("running" if ran else "pending"), None, counts
    if failed:
        cancelled = all(mapped[i] == "cancelled" for i in failed)
        state = "cancelled" if cancelled else "failed"
        return state, f"task(s) {','.join(map(str, failed))} of {array.count} did not complete", counts
    return "completed", None, counts


def read_markers(shell, job: Job) -> set[int]:
    """The completion markers of the job's tasks, in one listing through the run's shell."""
    listed = shell.run(["ls", "-1", "--", f"{job.output}/{TASKS_DIR}"])
    if listed.returncode != 0:
        return set()
    return {int(name.split(".")[0]) for name in listed.stdout.split() if name.split(".")[0].isdigit()}
