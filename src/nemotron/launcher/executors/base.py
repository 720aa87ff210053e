"""The executor interface: the same five verbs over the same plan for every backend (``registry.EXECUTORS``).

Dry-run is the first half of submit (torchx style): ``render`` is pure (plan + profile -> the text of every job:
a shell command, a ``docker run`` line, an sbatch script) and ``submit`` runs or submits exactly what ``render``
returned, its placeholders bound. What exists only once a run does is written ``{name}`` in that text: ``{run_id}``,
slurm's ``{code_dir}`` on an SSH host and ``{stage.step}`` for an upstream job's id; ``submit``
fills them in with ``bind`` and changes nothing else (an executor that names the run's pinned image renders with
it; the dry-run names the profile's).
State lives in the run record (``runs.RunRecord``): ``submit`` fills per-step job ids and states and saves the record
(``runs.save_run``); ``status``/``logs``/``cancel`` take a record read back from disk, from any shell.

Contract for implementations (registered in ``registry.EXECUTORS`` with the module of their options):
- ``job_resources(declared, chosen, profile) -> JobResources`` (a classmethod, used at plan time): the step's
  allocation in this backend's terms, from the recipe's defaults, the profile's ``[steps...]`` values and this
  executor's own profile tables; no other module branches on an executor's name.
- ``render(plan, profile) -> {job name: text}`` for the jobs to run (``plan.jobs_to_run``); no I/O, no secrets:
  secret values are read from the submitting environment only inside ``submit`` (``secret_values``) and reach jobs
  through a 0600 file (``write_env_file``), never a command line or script.
- ``submit(plan, profile, run, detach=False) -> RunRecord``: all or nothing — if any job cannot be started/submitted,
  undo what this call started and raise a ``UserError`` (one line). With ``detach=False`` it may follow the run to
  its end (local runs it; slurm/docker watch it) and returns the final record; with ``detach=True`` it returns as
  soon as everything is started/submitted.
- ``status(run) -> {job name: StepRecord}`` with current states (reused jobs stay "reused").
- ``logs(run, job, follow) -> iterator of text chunks`` of that job's log; with ``follow`` until the job finishes.
- ``cancel(run) -> RunRecord``: stop every job of the run that has not finished; mark them "cancelled".
- ``refresh(runs)`` and ``cancel_runs(runs)``: ``status`` and ``cancel`` for many runs at once (``runs``, ``cancel
  --state running``); the defaults go run by run, a scheduler's backend makes one call for all of them.
Job names are ``<stage>.<step>`` (``plan.jobs[i].name``); ``plan.job("training")`` also finds a job by step name.
``job.depends_on`` names upstream jobs of the plan, reused ones included: chain only on those in ``jobs_to_run``
(a reused job's output already exists). ``job.resources.nproc_per_node`` is the number of ranks per node (one per
GPU on GPU steps); ``job.env`` is the non-secret environment (``NEMOTRON_ARTIFACT_ROOT`` included).
"""

from __future__ import annotations

import abc
import os
import re
import shlex
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from nemotron.declaration import Resources
from nemotron.errors import UserError
from nemotron.launcher.executors.registry import EXECUTORS, executor_class
from nemotron.launcher.plan import Plan
from nemotron.launcher.profiles import Profile
from nemotron.launcher.resources import JobResources
from nemotron.launcher.runs import RunRecord, StepRecord


class ExecutorError(UserError):
    pass


class Executor(abc.ABC):
    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if overridden := sorted({"render", "submit"} & set(vars(cls))):
            raise TypeError(
                f"{cls.__name__} overrides {', '.join(overridden)}: an executor implements prepare and schedule, so "
                "what it submits is what its dry-run shows"
            )

    @classmethod
    @abc.abstractmethod
    def job_resources(cls, declared: Resources, chosen: dict[str, Any], profile: Profile) -> JobResources:
        """One job's resources in this backend's terms: the recipe's ``declared`` allocation at the plan's scale, the
        values the profile's ``[steps...]`` tables ``chosen`` for it, and this executor's own options in ``profile``
        (``resources.scheduled_resources`` / ``machine_resources``)."""

    # A run is prepare, then schedule: ``render`` (the dry-run) and ``submit`` both take their text from ``prepare``,
    # and only ``schedule`` starts anything, binding no more than the placeholders for what exists once a run does
    # ({run_id}, upstream job ids). So no executor can run text its dry-run did not show; neither is overridden.
    @abc.abstractmethod
    def prepare(self, plan: Plan, profile: Profile, run: RunRecord | None) -> dict[str, str]:
        """The text of each job to run, keyed by job name, placeholders unbound. With no ``run`` (a dry-run) it is
        pure; for a ``run`` it first fixes what the run's jobs use, in ``run.executor_data`` (the image pinned by
        content id, the code shipped to the cluster), and names that."""

    @abc.abstractmethod
    def schedule(
        self, plan: Plan, profile: Profile, run: RunRecord, prepared: dict[str, str], detach: bool
    ) -> RunRecord:
        """Run or submit ``prepared`` (``prepare``'s text for ``run``) in dependency order; record job ids and states
        in ``run``. A failure undoes what it began before raising."""

    def render(self, plan: Plan, profile: Profile) -> dict[str, str]:
        """Dry-run: the text of each job to run, keyed by job name."""
        return self.prepare(plan, profile, None)

    def submit(self, plan: Plan, profile: Profile, run: RunRecord, detach: bool = False) -> RunRecord:
        """Run or submit ``plan.jobs_to_run``: what the dry-run shows, prepared for ``run``, then scheduled."""
        return self.schedule(plan, profile, run, self.prepare(plan, profile, run), detach)

    @abc.abstractmethod
    def status(self, run: RunRecord) -> dict[str, StepRecord]:
        """Current state of every job of the run."""

    @abc.abstractmethod
    def logs(self, run: RunRecord, job: str, follow: bool = False) -> Iterator[str]:
        """The log of one job; with ``follow``, keep yielding until the job has finished."""

    @abc.abstractmethod
    def cancel(self, run: RunRecord) -> RunRecord:
        """Stop every unfinished job of the run and mark it cancelled."""

    def refresh(self, runs: Sequence[RunRecord]) -> None:
        """Bring the steps of several runs of this executor up to date in place (``nemotron-launch runs``). A backend
        with a scheduler asks it once for all of them; by default, ``status`` run by run."""
        for run in runs:
            run.steps = self.status(run)

    def cancel_runs(self, runs: Sequence[RunRecord]) -> list[RunRecord]:
        """``cancel`` for several runs of this executor (a scheduler's cancel command once per batch of job ids)."""
        return [self.cancel(run) for run in runs]

    def check(self, plan: Plan, profile: Profile) -> None:
        """Before a run is recorded: raise a ``UserError`` if this plan cannot be started here (a secret missing from
        this shell, a missing binary...). Overrides call this first, unless their backend holds the secrets."""
        secret_values(plan)

    def artifact_root_is_here(self, profile: Profile) -> bool:
        """Whether this machine writes the artifact root (checked before a run is recorded); a remote submission
        (a login node through SSH, a cloud's volume) writes it elsewhere."""
        return True


def get_executor(name: str) -> Executor:
    """The executor for ``name`` (``registry.EXECUTORS``), imported lazily (the CLI stays light)."""
    module_name = EXECUTORS[name][0].partition(":")[0] if name in EXECUTORS else None
    try:
        return executor_class(name)()
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ExecutorError(f"the {name} executor is not available in this installation ({module_name})") from None
        raise


# ------------------------------------------------------------------------------------- helpers for backends
def still_producing(run: RunRecord, job_name: str) -> bool:
    """Whether ``run``'s job may still write its output, as its executor tells (what a claim on an output needs)."""
    from nemotron.launcher.run_states import FINISHED_STATES

    record = get_executor(run.executor).status(run).get(job_name)
    return record is not None and record.state not in FINISHED_STATES


def bind(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each ``{name}`` of ``values`` replaced by its value, in one pass: nothing else in it is touched
    (``${VAR}``, awk's ``{print}``, a placeholder's value that itself looks like one).

    Placeholders sit inside shell text that was quoted around them (``'--job-name={run_id}.x'``), so a value is
    bound only if it needs no quoting itself (``shlex.quote(value) == value``); else one line naming both. A value
    whose placeholder the text does not hold is not looked at."""
    if not values:
        return text

    def value(match: re.Match) -> str:
        name = match.group(1)
        if shlex.quote(values[name]) != values[name]:
            raise ExecutorError(
                f"cannot fill in {{{name}}} with {values[name]!r}: it would need shell quoting "
                "(a space, a quote or another special character)"
            )
        return values[name]

    names = "|".join(re.escape(name) for name in values)
    return re.sub(rf"\{{({names})\}}", value, text)


def secret_values(plan: Plan) -> dict[str, str]:
    """Values of the plan's secrets from the submitting environment; a missing one is the user's error."""
    missing = [name for name in plan.secret_names if not os.environ.get(name)]
    if missing:
        raise ExecutorError(
            f"secret {missing[0]} is not set in this shell: export it before submitting "
            f"(profile {plan.profile} forwards {', '.join(plan.secret_names)})"
        )
    return {name: os.environ[name] for name in plan.secret_names}


def write_env_file(path: Path, values: dict[str, str]) -> Path:
    """``KEY=value`` lines in a file only its owner can read (created 0600, never world-readable in between)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        for key, value in values.items():
            f.write(f"{key}={value}\n")
    os.chmod(path, 0o600)
    return path


def log_tail(path: Path | None, lines: int = 20) -> str:
    """The last ``lines`` lines of a log ('' if there is none yet)."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def watch(executor: Executor, run: RunRecord, poll_start_s: float = 1.0, poll_max_s: float = 15.0) -> RunRecord:
    """Poll ``executor.status`` until the run has finished, showing it live on stderr (``report.LiveView``); the
    polls back off from ``poll_start_s`` to ``poll_max_s`` (one scheduler call each)."""
    from nemotron.launcher.report import LiveView

    delay = poll_start_s
    with LiveView(run) as view:
        while True:
            run.steps = executor.status(run)
            view.refresh(run)
            if run.finished:
                return run
            time.sleep(delay)
            delay = min(delay * 1.5, poll_max_s)


def explain_cancelled(run: RunRecord) -> None:
    """A job cancelled because an upstream one failed (or was cancelled) says which."""
    for job in run.plan.jobs:
        record = run.steps.get(job.name)
        if record is None or record.state != "cancelled":
            continue
        failed = [d for d in job.depends_on if run.steps[d].state in ("failed", "timeout", "unknown")]
        upstream = [d for d in job.depends_on if run.steps[d].state == "cancelled"]
        if failed:
            record.reason = f"upstream {failed[0]} {run.steps[failed[0]].state}"
        elif upstream and record.reason in (None, "cancelled"):
            record.reason = f"upstream {upstream[0]} cancelled"


def follow_file(path: Path, finished: Callable[[], bool], poll_s: float = 0.5) -> Iterator[str]:
    """Yield a (shared-filesystem) file's content as it grows, until ``finished()`` and nothing more is written.

    Reads the file only; ``finished`` is the caller's (cheap, back-off-friendly) way of knowing the job ended.
    """
    position = 0
    while True:
        done = finished()  # checked before reading, so the last chunk written before the end is never missed
        try:
            with open(path, "rb") as f:
                f.seek(position)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            position += len(chunk)
            yield chunk.decode(errors="replace")
        elif done:
            return
        else:
            time.sleep(poll_s)
