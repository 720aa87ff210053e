"""The NeMo-Run executor: a plan handed to NeMo-Run as one ``run.Experiment``, to any of its backends (``[nemo_run]
backend``: slurm, docker, local, skypilot, dgxcloud, lepton).

One task per job to run — the step's own CLI, ``python -m <module> <flags>``, exactly what the other executors run —
added with the plan's dependencies, each with its own backend executor (``nemo_run_tasks.executor_fields``: the
job's resources, image, mounts and non-secret environment). ``render`` is NeMo-Run's dry-run of that experiment (in a
scratch NeMo-Run home, so nothing is left behind); ``submit`` builds the same experiment in NeMo-Run's home
(``$NEMORUN_HOME``, default ``~/.nemo_run``) and runs it, which dry-runs and launches what the dry-run made. The run
record keeps the experiment id and that home: ``status``, ``logs`` and ``cancel`` rebuild the experiment from them
in any shell (``Experiment.from_id``), and NeMo-Run's task states map onto ours (``STATES``).

Only the slurm backend chains jobs in the scheduler; for the others NeMo-Run launches a job once its dependencies
finished, in the launching process. A detached launch therefore needs a backend NeMo-Run can detach from (slurm,
skypilot, dgxcloud, lepton); docker and local runs stay attached. ``nemo_run`` is imported only here, inside the
methods: without the ``nemo-run`` extra, choosing this executor is one line saying how to install it.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

from nemotron.declaration import Resources
from nemotron.heartbeat import PROGRESS_FILE, read_progress
from nemotron.launcher.executors.base import (
    Executor,
    ExecutorError,
    explain_cancelled,
    secret_values,
    watch,
    write_env_file,
)
from nemotron.launcher.executors.docker import checked_image
from nemotron.launcher.executors.nemo_run_tasks import (
    SECRET_PATHS,
    build_executor,
    check_backend_sdk,
    executor_fields,
    nemo_run_options,
    secret_refusal,
    secrets_file,
    task_fields,
)
from nemotron.launcher.inputs import is_complete
from nemotron.launcher.options import AllocationDefaults
from nemotron.launcher.plan import Plan
from nemotron.launcher.profiles import Profile
from nemotron.launcher.resources import JobResources, machine_resources, scheduled_resources
from nemotron.launcher.runs import FINISHED_STATES, RunRecord, StepRecord, save_run

INSTALL_HINT = (
    "the nemo_run executor needs NeMo-Run, an optional extra: uv sync --extra nemo-run "
    "(pip: pip install 'nemotron-launch[nemo-run]')"
)
# torchx's AppState (NeMo-Run's task states) -> ours; UNKNOWN keeps the last state (a job sacct does not list yet)
STATES = {
    "UNSUBMITTED": "planned",
    "SUBMITTED": "pending",
    "PENDING": "pending",
    "RUNNING": "running",
    "SUCCEEDED": "completed",
    "FAILED": "failed",
    "CANCELLED": "cancelled",
}
DETACHABLE = ("slurm", "skypilot", "dgxcloud", "lepton")  # Experiment._DETACH_SUPPORTED_EXECUTORS, by backend
CANCEL_WAIT_S = 60.0


def installed() -> bool:
    try:
        return importlib.util.find_spec("nemo_run") is not None
    except ValueError:  # sys.modules["nemo_run"] is None: importing it is blocked
        return False


@contextmanager
def nemo_run_module():
    """``nemo_run``, with its console (rich, on stdout) sent to stderr: our stdout carries one JSON document."""
    with redirect_stdout(sys.stderr):
        import nemo_run

        from nemotron.launcher.executors.nemo_run_dgxcloud import read_secret_at_use

        read_secret_at_use()
        yield nemo_run


class NemoRunExecutor(Executor):
    name = "nemo_run"

    def __init__(self) -> None:
        if not installed():
            raise ExecutorError(INSTALL_HINT)

    @classmethod
    def job_resources(cls, declared: Resources, chosen: dict, profile: Profile) -> JobResources:
        options = nemo_run_options(profile)
        settings = options.backend_options()
        if options.backend == "local":
            return machine_resources(declared, chosen, settings.ntasks_per_node)
        if options.backend == "docker":
            return machine_resources(declared, chosen, 1)
        if options.backend == "slurm":
            return scheduled_resources(declared, chosen, settings)
        return scheduled_resources(declared, chosen, AllocationDefaults(gpus_per_node=settings.gpus_per_node))

    def artifact_root_is_here(self, profile: Profile) -> bool:
        options = nemo_run_options(profile)
        if options.backend == "slurm":
            return options.slurm.tunnel == "local"
        return options.backend in ("local", "docker")

    # ------------------------------------------------------------------------------------------------ render
    def prepare(self, plan: Plan, profile: Profile, run: RunRecord | None) -> dict[str, str]:
        """NeMo-Run's dry-run of the plan's experiment: per job, what the backend is given (an sbatch script, a
        container or workload spec), after a header naming its dependencies and how its secrets reach it. For a run,
        the docker backend's image is pinned by content id first (recorded in the run; ``schedule`` builds the same
        experiment from it)."""
        options = nemo_run_options(profile)
        backend = options.backend
        check_backend_sdk(backend)
        if run is not None:
            self.check(plan, profile)
            if backend == "docker":  # every job runs the image by content id, whatever the tag names meanwhile
                image, _note = checked_image(plan, profile)
                run.executor_data.update({"image": image.reference, "image_env": image.env()})
            plan, profile = _as_run_by(plan, profile, run)
        with tempfile.TemporaryDirectory(prefix="nemotron-nemo-run-") as home:
            fields = {job.name: executor_fields(plan, profile, job, "RUN_ID", home) for job in plan.jobs_to_run}
            with nemo_run_module() as run:
                exp = _experiment(run, plan, backend, fields, title="RUN_ID", base_dir=home)
                with exp:
                    exp.dryrun(log=False)
                texts = {job.id: str(job._dryrun_info) for job in exp.jobs}
            texts = {name: text.replace(home, "NEMORUN_HOME") for name, text in texts.items()}
        rendered = {}
        for job in plan.jobs_to_run:
            header = [f"# NeMo-Run task {job.name} on its {backend} backend"]
            if job.depends_on:
                header.append(f"# after: {', '.join(job.depends_on)}")
            if plan.secret_names:
                header.append(f"# secrets {', '.join(plan.secret_names)}: {SECRET_PATHS[backend] or 'refused'}")
            rendered[job.name] = "\n".join(header) + "\n" + texts[job.name].rstrip() + "\n"
        return rendered

    def check(self, plan: Plan, profile: Profile) -> None:
        options = nemo_run_options(profile)
        check_backend_sdk(options.backend)
        refusal = secret_refusal(plan, options)
        if refusal:
            raise ExecutorError(refusal)
        if options.backend != "lepton":  # Lepton's jobs read the workspace's secrets, not this shell's
            secret_values(plan)
        for job in plan.jobs_to_run:  # a missing image, an artifact root on no volume: one line, nothing submitted
            executor_fields(plan, profile, job, "RUN_ID", "NEMORUN_HOME")
        if options.backend == "slurm" and not profile.container.image:
            _check_rundir_name(plan)
        if options.backend == "docker":  # the image exists here and holds the plan's code, as for `docker`
            _image, note = checked_image(plan, profile)
            if note:
                print(f"note: {note}", file=sys.stderr)

    # ------------------------------------------------------------------------------------------------ submit
    def schedule(
        self, plan: Plan, profile: Profile, run: RunRecord, prepared: dict[str, str], detach: bool
    ) -> RunRecord:
        # NeMo-Run is handed an experiment, not text: the one ``prepare`` dry-ran, built again from the same plan
        plan, profile = _as_run_by(plan, profile, run)
        backend = nemo_run_options(profile).backend
        # Slurm saves sbatch's whole environment with each job: its jobs source the secrets from a 0600 file instead
        withheld = plan.secret_names if backend == "slurm" else []
        if withheld:
            path = write_env_file(secrets_file(plan, run.run_id), secret_values(plan))
            run.executor_data["secrets_file"] = str(path)
        with nemo_run_module() as nemo_run:
            from nemo_run.config import get_nemorun_home

            home = get_nemorun_home()
            fields = {job.name: executor_fields(plan, profile, job, run.run_id, home) for job in plan.jobs_to_run}
            exp = _experiment(nemo_run, plan, backend, fields, title=run.run_id, credentials=True)
            run.executor_data.update({"experiment_id": exp._id, "nemorun_home": home, "backend": backend})
            save_run(run)  # before anything starts: a killed launch still names its experiment
            try:
                with exp, _environment_without(withheld):
                    exp.run(detach=backend in DETACHABLE)
            except BaseException as exc:  # the backend refused (sbatch, the Docker engine, a cloud API): one line
                _cancel_launched(exp)
                _remove_secrets(run)
                if not isinstance(exc, Exception):
                    raise
                raise ExecutorError(f"NeMo-Run could not submit run {run.run_id}: {_last_line(exc)}") from None
        for job in exp.jobs:
            record = run.steps[job.id]
            record.state, record.job_id = "pending", _app_id(job.handle)
            print(f"submitted {job.id} through NeMo-Run ({backend}) as {record.job_id}", file=sys.stderr)
        save_run(run)
        self.status(run)
        return run if detach else watch(self, run)

    # ------------------------------------------------------------------------------------------------ watch
    def status(self, run: RunRecord) -> dict[str, StepRecord]:
        watched = [name for name, r in run.steps.items() if r.job_id and r.state not in FINISHED_STATES]
        if watched:
            with _experiment_of(run) as exp:
                states = exp.status(return_dict=True) or {}
            now = _dt.datetime.now(_dt.UTC)
            for name in watched:
                record, job = run.steps[name], run.plan.job(name)
                reported = str(getattr(states.get(name, {}).get("status"), "name", "UNKNOWN"))
                state = STATES.get(reported, record.state)
                record.reason = None if reported in STATES else f"NeMo-Run reports {reported}"
                if state == "completed" and not is_complete(job.output, job.artifact_type):
                    state, record.reason = "failed", f"no complete {job.artifact_type} artifact at {job.output}"
                record.state = state
                if state == "running" and record.started_at is None:
                    record.started_at = now
                if state in FINISHED_STATES and record.ended_at is None:
                    record.ended_at = now
                record.progress = read_progress(job.output / PROGRESS_FILE) if state == "running" else None
                record.log = _task_log(run, name) or record.log
            explain_cancelled(run)
            if run.finished:
                _remove_secrets(run)
            save_run(run)
        return dict(run.steps)

    def logs(self, run: RunRecord, job: str, follow: bool = False) -> Iterator[str]:
        record = run.steps[job]
        if record.job_id is None:
            return
        with _experiment_of(run) as exp:
            task = next(t for t in exp.jobs if t.id == job)
            app = exp._runner.describe(task.handle)
            role = app.roles[0].name if app and app.roles else job
            lines = exp._runner.log_lines(task.handle, role, k=0, should_tail=follow)
            for line in lines:
                yield line if line.endswith("\n") else line + "\n"

    def cancel(self, run: RunRecord) -> RunRecord:
        unfinished = [name for name, r in run.steps.items() if r.job_id and r.state not in FINISHED_STATES]
        if unfinished:
            with _experiment_of(run) as exp:
                for name in unfinished:
                    exp.cancel(name)
            deadline = time.monotonic() + CANCEL_WAIT_S
            while time.monotonic() < deadline and any(
                self.status(run)[name].state not in FINISHED_STATES for name in unfinished
            ):
                time.sleep(1.0)
        for record in run.steps.values():
            if record.state not in FINISHED_STATES:
                record.state, record.reason = "cancelled", "cancelled"
                record.ended_at = record.ended_at or _dt.datetime.now(_dt.UTC)
        _remove_secrets(run)
        save_run(run)
        return run


# ---------------------------------------------------------------------------------------------------- helpers
def _as_run_by(plan: Plan, profile: Profile, run: RunRecord) -> tuple[Plan, Profile]:
    """The plan and profile as ``run`` runs them: naming the image ``prepare`` pinned, if it pinned one."""
    image = run.executor_data.get("image")
    if image is None:
        return plan, profile
    pinned = profile.container.model_copy(update={"image": image})
    profile, plan = profile.model_copy(update={"container": pinned}), plan.model_copy(deep=True)
    for job in plan.jobs:
        job.env.update(run.executor_data["image_env"])  # the artifacts record the image they were made in
    return plan, profile


def _experiment(
    run: Any,
    plan: Plan,
    backend: str,
    fields: dict[str, dict],
    title: str,
    base_dir: str | None = None,
    credentials: bool = False,
) -> Any:
    """The plan as one experiment: a task per job to run, its dependencies those of the plan that also run."""
    exp = run.Experiment(
        title,
        base_dir=base_dir,
        log_level="WARNING",
        clean_mode=True,
        enable_goodbye_message=False,
        skip_status_at_exit=True,
        threadpool_workers=4,
    )
    with exp:  # Experiment.add needs the experiment entered
        for job in plan.jobs_to_run:
            upstream = [name for name in job.depends_on if name in fields]
            executor = build_executor(run, backend, fields[job.name], credentials)
            exp.add(run.Script(**task_fields(job)), executor=executor, name=job.name, dependencies=upstream or None)
    return exp


@contextmanager
def _experiment_of(run: RunRecord):
    """The run's experiment, rebuilt from NeMo-Run's home (which must be the one it was submitted from)."""
    data = run.executor_data
    if "experiment_id" not in data:
        raise ExecutorError(f"run {run.run_id} has no NeMo-Run experiment: it was never submitted")
    with nemo_run_module() as nemo_run:
        from nemo_run.config import get_nemorun_home

        if get_nemorun_home() != data["nemorun_home"]:
            raise ExecutorError(
                f"run {run.run_id} is a NeMo-Run experiment under {data['nemorun_home']}, this shell's NeMo-Run home "
                f"is {get_nemorun_home()}: export NEMORUN_HOME={data['nemorun_home']}"
            )
        exp_dir = Path(data["nemorun_home"]) / "experiments" / run.run_id / data["experiment_id"]
        if not exp_dir.is_dir():
            raise ExecutorError(f"NeMo-Run experiment {data['experiment_id']} of run {run.run_id} is gone ({exp_dir})")
        yield nemo_run.Experiment.from_id(data["experiment_id"])


def _check_rundir_name(plan: Plan) -> None:
    """NeMo-Run's Slurm backend, without a container, rewrites every ``/nemo_run`` in a job script to the job's
    directory (its in-container path): a home, artifact root or argument holding it would be garbled."""
    with nemo_run_module():
        from nemo_run.config import RUNDIR_NAME, get_nemorun_home

    marker = f"/{RUNDIR_NAME}"
    candidates = {"NEMORUN_HOME": get_nemorun_home(), "the artifact root": str(plan.artifact_root)}
    candidates |= {f"{job.name}'s command": shlex.join(job.command()) for job in plan.jobs_to_run}
    for what, text in candidates.items():
        if marker in text:
            raise ExecutorError(
                f"{what} contains {marker!r}, which NeMo-Run's slurm backend rewrites in job scripts when no "
                f"container runs them: choose a path without it ({text})"
            )


def _task_log(run: RunRecord, name: str) -> Path | None:
    """The newest log NeMo-Run keeps for a task in its experiment directory (``log-*``), when it is on this machine."""
    data = run.executor_data
    task_dir = Path(data["nemorun_home"]) / "experiments" / run.run_id / data["experiment_id"] / name
    found = sorted(task_dir.glob("log*"), key=lambda p: p.stat().st_mtime) if task_dir.is_dir() else []
    return found[-1] if found else None


@contextmanager
def _environment_without(names: list[str]):
    """This process's environment less ``names`` while NeMo-Run submits (its tunnel runs sbatch in it)."""
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _remove_secrets(run: RunRecord) -> None:
    """No job of the run can start again: its secrets file goes."""
    path = run.executor_data.pop("secrets_file", None)
    if path:
        Path(path).unlink(missing_ok=True)


def _cancel_launched(exp: Any) -> None:
    """All or nothing: what this launch submitted before the backend refused a job is cancelled."""
    for job in exp.jobs:
        if job.launched and job.handle:
            exp.cancel(job.id)


def _app_id(handle: str) -> str:
    """The backend's own id in a NeMo-Run handle (``slurm_tunnel://nemo_run/1234`` -> ``1234``)."""
    return handle.partition("://")[2].split("/")[1] if "://" in handle else handle


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return [line for line in text.splitlines() if line.strip()][-1].strip()
