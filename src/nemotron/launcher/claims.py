"""One producer per output directory: a run claims the outputs it will write before any of its jobs starts.

Two identical launches into one artifact root plan the same output directories (same fingerprints). The first to
claim them runs; the second is refused with one line naming the first run (``status``/``cancel`` it, or rerun once
it ended: its complete outputs are then reused). A claim is a small file beside the output directory,
``<step dir>/.<output name>.claim`` holding the claiming run's id and directory, created with ``O_CREAT|O_EXCL``:
atomic on local disks and on NFS (v3 and later) and Lustre, where ``flock`` may be unavailable or node-local.

A launch that dies before handing its jobs over releases their claims itself (``abandon``). Otherwise a claim is
never released explicitly (a killed launcher could not): it is stale once the claiming run's executor says the job
has ended (or its record is gone), and the next claimant replaces it. The launcher passes that liveness check in,
so run records and claims never import the executors that produce them. Replacing goes through a rename to a
unique name, which only one claimant can win; two launches that both found the same stale claim at the same instant
could in theory both take it over, the one window this file protocol leaves open.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from nemotron.launcher.inputs import is_complete
from nemotron.launcher.plan import Job
from nemotron.launcher.runs import RunError, RunRecord, mark_not_started, read_run


def claim_path(job: Job) -> Path:
    output = Path(job.output)
    return output.parent / f".{output.name}.claim"


def claim_outputs(run: RunRecord, still_producing: Callable[[RunRecord, str], bool]) -> None:
    """Claim the output of every job ``run`` will run; on a live claim of another run, raise naming that run.
    ``still_producing(holder, job)``: whether the holding run's job may still write the output (its executor's
    status; see ``executors.base.still_producing``) — a claim whose job ended is stale and taken over.

    An output another run completed between planning and claiming is reused, not produced a second time.
    """
    for job in run.plan.jobs_to_run:
        _claim(claim_path(job), run, job.name, still_producing)
        if is_complete(job.output, job.artifact_type):
            job.reuse = True
            run.steps[job.name] = run.steps[job.name].model_copy(update={"state": "reused", "log": None})


def abandon(run: RunRecord, reason: str) -> None:
    """A submit that died (a refusal, a bug's traceback, Ctrl-C) before handing some jobs over: those are recorded
    failed with ``reason`` and their claims go, so the next launch of the same target is not refused by a run that
    never started. Jobs a scheduler already holds keep their claims."""
    for name in mark_not_started(run, reason):
        path = claim_path(run.plan.job(name))
        try:
            holder = json.loads(path.read_text(encoding="utf-8")).get("run_id")
        except (OSError, ValueError, AttributeError):
            continue  # gone, or not a claim this run could have written
        if holder == run.run_id:
            path.unlink(missing_ok=True)


def _claim(path: Path, run: RunRecord, job_name: str, still_producing: Callable[[RunRecord, str], bool]) -> None:
    document = json.dumps({"run_id": run.run_id, "run_dir": str(run.run_dir), "job": job_name}) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    for _attempt in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _live_holder(path, job_name, still_producing)
            if holder is not None:
                raise RunError(
                    f"{job_name} is already being produced by run {holder} into the same output: follow it with "
                    f"`nemotron-launch status {holder}` (its complete outputs are reused by a later launch) "
                    f"or cancel it"
                ) from None
            _retire(path)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(document)
        return
    raise RunError(f"could not claim the output of {job_name} ({path}): other launches keep replacing the claim")


def _live_holder(path: Path, job_name: str, still_producing: Callable[[RunRecord, str], bool]) -> str | None:
    """The id of the run holding the claim if that run may still produce the output, else None (stale)."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        run = read_run(Path(holder["run_dir"]))
    except (OSError, ValueError, KeyError, TypeError, RunError):
        return None  # unreadable claim, or its run record is gone
    if job_name not in run.steps:
        return None
    return run.run_id if still_producing(run, job_name) else None


def _retire(path: Path) -> None:
    """Move a stale claim out of the way; only one of several claimants racing here succeeds, the others retry."""
    retired = path.with_name(f"{path.name}.stale-{secrets.token_hex(4)}")
    try:
        os.rename(path, retired)
    except FileNotFoundError:
        return
    retired.unlink(missing_ok=True)
