"""The Slurm executor: the whole DAG submitted at once as sbatch jobs chained with ``afterok``.

``render`` is the dry-run: one sbatch script per job (``_scripts``), with what exists only once submitted as
placeholders (``base.bind``): ``{run_id}``, ``{code_dir}`` when the code is shipped over SSH, and the ids of upstream
jobs as ``{stage.step}``. ``submit`` ships the code first when the profile names an SSH host, asks the cluster whether
every job can start (``slurm_preflight``: ``sbatch --test-only`` and the partition limits) before anything is queued,
writes the secrets to a 0600 file on the cluster, then renders the same scripts naming the run's pinned image and runs
``sbatch --parsable`` job by job in topological order, each script with its placeholders bound (its upstream ids are
those sbatch has just answered), so what runs is what the dry-run showed; if any sbatch fails, it cancels what this
launch submitted and raises sbatch's own error as one line. The secrets file lives only while a job of the run may
still start: a small job chained ``afterany`` on all of them removes it, and so do ``cancel`` and a status that sees
the run finished.
``status`` makes one scheduler call for all of a run's unfinished jobs and reads what their batch scripts recorded
(attempts, ``sbatch_attempts``) and their steps report (progress) from the shared filesystem; a job requeued after a
node failure is kept off the failed nodes (``ExcNodeList``) while it is pending. ``logs`` reads the log files,
asking the scheduler at most every ``FOLLOW_SCHEDULER_S`` while following; ``cancel`` scancels the run's jobs and
waits until none is left in the queue.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from nemotron.array import index_ranges
from nemotron.declaration import Resources
from nemotron.launcher.code_identity import PinnedImage, build_hint, check_image_code, pin_image, resolve_squashfs
from nemotron.launcher.executors.base import Executor, ExecutorError, bind, secret_values, watch
from nemotron.launcher.executors.sbatch import input_mounts, render, render_secrets_cleanup
from nemotron.launcher.executors.slurm_options import SSHOptions
from nemotron.launcher.executors.slurm_preflight import preflight, sbatch_message
from nemotron.launcher.executors.slurm_state import query_jobs
from nemotron.launcher.executors.slurm_status import update_run, watched_jobs
from nemotron.launcher.failures import attempts_file
from nemotron.launcher.plan import Job, Plan
from nemotron.launcher.profiles import Profile
from nemotron.launcher.remote import REPO_ROOT, LocalShell, SSHShell, shell_for, ship_code
from nemotron.launcher.resources import JobResources, scheduled_resources
from nemotron.launcher.runs import FINISHED_STATES, RunRecord, StepRecord, save_run
from nemotron.launcher.sweeps import groups

FOLLOW_SCHEDULER_S = 30.0
CANCEL_WAIT_S = 30.0
SCANCEL_BATCH = 1000  # job ids per scancel: one call for a whole queue, well within any command line
SECRETS_FILE = "secrets.env"
CLEANUP_JOB = "secrets-cleanup"


def sbatch_parameters(
    plan: Plan,
    profile: Profile,
    job: Job,
    run_id: str,
    run_dir: str,
    dependencies: list[str],
    code_dir: str,
    image: PinnedImage | None = None,
    corresponding: list[str] | None = None,
    tasks: list[Job] | None = None,
) -> dict:
    """The ``render_sbatch`` keyword arguments for one job of a plan on a profile; ``image``: the run's pinned
    image (scripts name it, not the profile's tag or symlink), None for the profile's as written. ``tasks``: the
    jobs of a sweep's group (``job`` the first), one array whose task ``i`` waits for task ``i`` of each array in
    ``corresponding``."""
    slurm, res, faults = profile.slurm, job.resources, profile.fault_tolerance
    runtime = slurm.container_runtime
    mounts = [*profile.container.mounts, f"{plan.artifact_root}:{plan.artifact_root}"]
    mounts += input_mounts([path for task in tasks or [job] for path in task.inputs.values()], mounts)
    in_container = runtime in ("pyxis", "docker")
    array, name = job.array, job.sweep.group if tasks else job.name
    return {
        "job_name": f"{run_id}.{name}",
        "command": job.command("python")[:3] if tasks else job.command("python"),  # a sweep's flags: per task
        # an array's tasks: one log each, named by the array's id and the task's index
        "log_file": f"{run_dir}/logs/{name}.{'%A_%a' if array or tasks else '%j'}.log",
        "array": _array(job, tasks),
        "sweep_tasks": {task.sweep.index: _sweep_task(task, run_dir) for task in tasks} if tasks else None,
        "corresponding": corresponding or [],
        "nodes": res.nodes,
        "ntasks_per_node": res.nproc_per_node if res.distributed else 1,
        "gpus_per_node": res.gpus_per_node,
        "cpus_per_task": res.cpus_per_task,
        "mem": res.mem,
        "time": res.time,
        "account": slurm.account,
        "partition": res.partition,
        "exclusive": slurm.exclusive,
        "qos": slurm.qos,
        "reservation": slurm.reservation,
        "constraint": slurm.constraint,
        "dependencies": dependencies,
        "signal": slurm.signal,
        "max_attempts": faults.max_attempts,
        "max_segments": faults.max_segments,
        "retry": faults.retried_classes(),
        "stop_exit_code": faults.stop_exit_code,
        "attempts_file": attempts_file(run_dir, job.name),
        # an array's tasks report progress in their own parts, a sweep's in their own outputs
        "output_dir": None if array or tasks else str(job.output),
        "sbatch_args": slurm.sbatch_args,
        "srun_args": slurm.srun_args,
        "env": {**job.env, "NEMOTRON_RUN_ID": run_id, **(image.env() if image else {})},
        "secrets_file": f"{run_dir}/{SECRETS_FILE}" if plan.secret_names else None,
        "workdir": None if in_container else code_dir,
        "pythonpath": None if in_container else f"{code_dir}/src",
        "container_runtime": runtime,
        "container_image": image.reference if image else profile.container.image,
        "container_mounts": mounts if in_container else [],
        "container_workdir": slurm.pyxis.workdir if runtime == "pyxis" else None,
        "container_mount_home": slurm.pyxis.mount_home,
        "container_args": slurm.pyxis.extra_args if runtime == "pyxis" else profile.docker.extra_args,
        "exit_marker": None if array or tasks else f"{run_dir}/logs/{job.name}.exit",  # tasks: their own markers
    }


def _array(job: Job, tasks: list[Job] | None) -> str | None:
    """``--array``: the shards of an array job still to run, or a sweep's tasks to run, and how many at once."""
    if tasks:
        return f"{index_ranges(task.sweep.index for task in tasks)}%{job.sweep.max_parallel}"
    return f"{job.array.ranges()}%{job.array.max_parallel}" if job.array else None


def _sweep_task(task: Job, run_dir: str) -> dict:
    """What a sweep's task has of its own in the array script: its flags, and where its files are (by its job's
    name, so ``status`` and ``logs`` find them as a job's)."""
    return {
        "args": task.args,
        "output_dir": str(task.output),
        "attempts_file": attempts_file(run_dir, task.name),
        "exit_marker": f"{run_dir}/logs/{task.name}.exit",
    }


class SlurmExecutor(Executor):
    name = "slurm"

    @classmethod
    def job_resources(cls, declared: Resources, chosen: dict, profile: Profile) -> JobResources:
        return scheduled_resources(declared, chosen, profile.slurm)

    def artifact_root_is_here(self, profile: Profile) -> bool:
        return profile.ssh is None  # through SSH, the artifact root is the cluster's

    def prepare(self, plan: Plan, profile: Profile, run: RunRecord | None) -> dict[str, str]:
        """Every job's sbatch script. The dry-run names the profile's image as it is here; a run, the image resolved
        once for the whole run (and checked again: a build may have moved it since ``check``), so a rebuild while its
        jobs wait in the queue changes nothing for them; submitting through SSH, the code is shipped first."""
        if run is None:
            return _scripts(plan, profile, _squashfs_here(profile))
        secret_values(plan)
        shell = shell_for(profile.ssh, plan.secret_names)
        image, _note = _pinned_image(plan, profile, shell)
        code_dir = str(REPO_ROOT)
        if isinstance(shell, SSHShell):
            code_dir, sent = ship_code(shell, profile.ssh.remote_dir)
            print(f"code {'shipped to' if sent else 'already on'} {shell.host}:{code_dir}", file=sys.stderr)
        run.executor_data.update({"ssh": profile.ssh.model_dump() if profile.ssh else None, "code_dir": code_dir})
        if image is not None:
            run.executor_data.update({"image": image.reference, "image_id": image.image_id})
        return _scripts(plan, profile, image)

    def check(self, plan: Plan, profile: Profile) -> None:
        """Before the run is recorded: the cluster itself checks every job (``slurm_preflight``)."""
        super().check(plan, profile)
        shell = shell_for(profile.ssh, plan.secret_names)
        image, note = _pinned_image(plan, profile, shell)  # a stale image: refused before anything
        if note:
            print(f"note: {note}", file=sys.stderr)
        # unchained: the upstream jobs do not exist yet (and the placeholders left are words sbatch only passes on)
        jobs, scripts = _parameters(plan, profile, image, chained=False), _scripts(plan, profile, image, chained=False)
        preflight(shell.run, {name: (params, scripts[name]) for name, params in jobs.items()})

    # ------------------------------------------------------------------------------------------------ submit
    def schedule(
        self, plan: Plan, profile: Profile, run: RunRecord, prepared: dict[str, str], detach: bool
    ) -> RunRecord:
        secrets = secret_values(plan)
        shell = shell_for(profile.ssh, plan.secret_names)  # the values reach the jobs through the 0600 file only
        code_dir = run.executor_data["code_dir"]
        run_dir = str(run.run_dir)
        if secrets:
            shell.write_file(f"{run_dir}/{SECRETS_FILE}", "".join(f"{k}={v}\n" for k, v in secrets.items()), True)
            run.executor_data["secrets_file"] = f"{run_dir}/{SECRETS_FILE}"
        # job (or sweep group) name -> its Slurm id: the value of its {stage.step} placeholder
        submitted: dict[str, str] = {}
        try:
            for name, jobs in groups(plan.jobs_to_run):
                script = bind(prepared[name], {"run_id": run.run_id, "code_dir": code_dir, **submitted})
                job_id = _sbatch(shell, f"{run_dir}/sbatch/{name}.sbatch", script, name)
                submitted[name] = job_id
                for job in jobs:
                    record = run.steps[job.name]
                    # an array's log: its first task's; a sweep's task is addressed as ARRAY_INDEX, its log too
                    task = f"_{job.array.indices[0]}" if job.array else f"_{job.sweep.index}" if job.sweep else ""
                    record.job_id = f"{job_id}_{job.sweep.index}" if job.sweep else job_id
                    record.state, record.log = "pending", Path(f"{run_dir}/logs/{name}.{job_id}{task}.log")
                what = f"{len(jobs)} tasks of an array" if jobs[0].sweep else "Slurm job"
                print(f"submitted {name} as {what} {job_id}", file=sys.stderr)
            if secrets:
                cleanup = bind(prepared[CLEANUP_JOB], {"run_id": run.run_id, **submitted})
                script_path = f"{run_dir}/sbatch/{CLEANUP_JOB}.sbatch"
                run.executor_data["cleanup_job"] = _sbatch(shell, script_path, cleanup, CLEANUP_JOB)
        except BaseException:  # a refusal, a bug, Ctrl-C: nothing of a half-submitted run stays queued
            self._undo(shell, run, submitted)
            raise
        save_run(run)
        return run if detach else self.follow(run)

    def _undo(self, shell: LocalShell | SSHShell, run: RunRecord, submitted: dict[str, str]) -> None:
        if submitted:
            shell.run(["scancel", *submitted.values()])
            _wait_gone(shell, list(submitted.values()))
        for name, record in run.steps.items():  # cancelled before they could start: they never had a job
            if record.job_id is not None and record.state == "pending":
                record.job_id, record.state, record.log = None, "planned", run.log_path(name)
        _remove_secrets(shell, run)

    # ------------------------------------------------------------------------------------------------ watch
    def status(self, run: RunRecord) -> dict[str, StepRecord]:
        self.refresh([run])
        return dict(run.steps)

    def refresh(self, runs: Sequence[RunRecord]) -> None:
        """The unfinished jobs of all ``runs`` in one scheduler call per cluster, however many (``slurm_status``)."""
        for shell, group in _by_cluster(runs):
            # an array's tasks, and a sweep's, are asked for apart (``slurm_arrays``): its id alone names one of them
            ids = [i for run in group for name, i in watched_jobs(run).items() if not _is_array(run.plan.job(name))]
            accounting = False if any(r.executor_data.get("accounting") is False for r in group) else None
            found, accounting = query_jobs(ids, shell.run, accounting)
            for run in group:
                update_run(shell, run, found)
                run.executor_data["accounting"] = accounting if ids else run.executor_data.get("accounting")
            _remove_secrets(shell, *(run for run in group if run.finished))
            for run in group:
                save_run(run)

    def follow(self, run: RunRecord) -> RunRecord:
        """Watch the run to its end (attached launch); Ctrl-C asks whether to cancel it."""
        try:
            watch(self, run)
            _show_failures(run)
            return run
        except KeyboardInterrupt:
            if _ask(f"\ncancel run {run.run_id} (its jobs keep running on the cluster otherwise)? [y/N] "):
                return self.cancel(run)
            print(f"left running: nemotron-launch status {run.run_id} / cancel {run.run_id}", file=sys.stderr)
            return run

    def logs(self, run: RunRecord, job: str, follow: bool = False) -> Iterator[str]:
        shell, record = _shell(run), run.steps[job]
        if record.log is None:
            return
        if not follow:
            yield shell.read_file(str(record.log)).decode(errors="replace")
            return
        offset, last_check = 0, time.monotonic()
        while True:
            finished = bool(shell.read_file(f"{run.run_dir}/logs/{job}.exit"))
            if not finished and time.monotonic() - last_check > FOLLOW_SCHEDULER_S:  # killed before its marker
                finished, last_check = self.status(run)[job].state in FINISHED_STATES, time.monotonic()
            chunk = shell.read_file(str(record.log), offset)
            if chunk:
                offset += len(chunk)
                yield chunk.decode(errors="replace")
            elif finished:
                return
            else:
                time.sleep(1.0)

    def cancel(self, run: RunRecord) -> RunRecord:
        return self.cancel_runs([run])[0]

    def cancel_runs(self, runs: Sequence[RunRecord]) -> list[RunRecord]:
        """The unfinished jobs of all ``runs`` (and their secrets' cleanup jobs) in one ``scancel`` per
        ``SCANCEL_BATCH`` ids per cluster; then waits until none is left in the queue."""
        for shell, group in _by_cluster(runs):
            jobs = {run.run_id: watched_jobs(run) for run in group}
            job_ids = [job_id for watched in jobs.values() for job_id in watched.values()]
            files, cleanup = _take_secrets(group)
            to_cancel = job_ids + cleanup
            for start in range(0, len(to_cancel), SCANCEL_BATCH):
                done = shell.run(["scancel", *to_cancel[start : start + SCANCEL_BATCH]])
                if done.returncode != 0:
                    raise ExecutorError(f"scancel failed: {sbatch_message(done.stderr)}")
            if job_ids:
                _wait_gone(shell, job_ids)
            if files:
                shell.run(["rm", "-f", "--", *files])
            now = _dt.datetime.now(_dt.UTC)
            for run in group:
                for name in jobs[run.run_id]:
                    record = run.steps[name]
                    record.state, record.reason = "cancelled", "cancelled"
                    record.ended_at = record.ended_at or now
                save_run(run)
        return list(runs)


# ---------------------------------------------------------------------------------------------------- helpers
def _scripts(plan: Plan, profile: Profile, image: PinnedImage | None, chained: bool = True) -> dict[str, str]:
    """Every job's sbatch script naming ``image`` (and, with secrets, the cleanup job's), before submission: what
    exists only then is a placeholder for ``bind`` (``_parameters``). ``render`` shows them, ``submit`` binds them."""
    scripts = {name: render(params) for name, params in _parameters(plan, profile, image, chained).items()}
    if plan.secret_names and scripts and chained:
        run_dir = f"{plan.artifact_root}/runs/{{run_id}}"
        scripts[CLEANUP_JOB] = _cleanup_script("{run_id}", run_dir, profile, [f"{{{name}}}" for name in scripts])
    return scripts


def _parameters(plan: Plan, profile: Profile, image: PinnedImage | None, chained: bool) -> dict[str, dict]:
    """Each job's sbatch parameters with the run id, the code dir on an SSH host (known once the code is shipped)
    and the ids of its upstream jobs to run (a reused one's output exists already) as ``{placeholders}``."""
    run_dir = f"{plan.artifact_root}/runs/{{run_id}}"  # runs.new_run's directory for the run
    code_dir = "{code_dir}" if profile.ssh is not None else str(REPO_ROOT)
    to_run = {job.name: job for job in plan.jobs_to_run}
    parameters = {}
    for name, jobs in groups(plan.jobs_to_run):
        upstream = [to_run[d] for d in dict.fromkeys(d for job in jobs for d in job.depends_on) if d in to_run]
        upstream = upstream if chained else []
        after_ok = [f"{{{job.name}}}" for job in upstream if job.sweep is None]
        # a sweep's upstream step is an array too: task i waits for its task i alone (aftercorr), not every task.
        # Where a task here has no task there (its upstream output was reused), Slurm's aftercorr is not documented
        # for the missing task: this array then waits for all of that one (afterok), which always resolves.
        arrays = list(dict.fromkeys(job.sweep.group for job in upstream if job.sweep is not None))
        own = [{to_run[d].sweep.group for d in job.depends_on if d in to_run and to_run[d].sweep} for job in jobs]
        after_corr = [f"{{{g}}}" for g in arrays if all(g in groups_of_task for groups_of_task in own)]
        after_ok += [f"{{{g}}}" for g in arrays if f"{{{g}}}" not in after_corr]
        parameters[name] = sbatch_parameters(
            plan, profile, jobs[0], "{run_id}", run_dir, after_ok, code_dir, image, after_corr,
            jobs if jobs[0].sweep else None,
        )  # fmt: skip
    return parameters


def _is_array(job: Job) -> bool:
    return job.array is not None or job.sweep is not None


def _pinned_image(plan: Plan, profile: Profile, shell) -> tuple[PinnedImage | None, str | None]:
    """The run's image, pinned, and a note if it cannot be checked; raises if it holds other code than the plan's."""
    hint = build_hint(plan.recipe, plan.profile)
    image = pin_image(profile.slurm.container_runtime, profile.container.image, shell, hint)
    return image, (check_image_code(plan.code, image, hint) if image else None)


def _squashfs_here(profile: Profile) -> PinnedImage | None:
    """Dry-run: the squashfs a pyxis profile's path points at now, when it exists on this machine; else None (the
    profile's path is shown: a dry-run asks nothing of a cluster or an engine, and works before any build)."""
    image = profile.container.image
    if profile.slurm.container_runtime != "pyxis" or profile.ssh is not None or not image or not Path(image).exists():
        return None
    return resolve_squashfs(image, LocalShell())


def _sbatch(shell: LocalShell | SSHShell, script_path: str, script: str, what: str) -> str:
    """Write the script beside the run, submit it, return its job id (or a one-line error naming ``what``)."""
    shell.write_file(script_path, script)
    done = shell.run(["sbatch", "--parsable", script_path])
    if done.returncode != 0 or not done.stdout.strip():
        raise ExecutorError(f"sbatch rejected {what}: {sbatch_message(done.stderr or done.stdout)}")
    return done.stdout.strip().split(";")[0]


def _cleanup_script(run_id: str, run_dir: str, profile: Profile, dependencies: list[str]) -> str:
    return render_secrets_cleanup(
        job_name=f"{run_id}.{CLEANUP_JOB}",
        secrets_file=f"{run_dir}/{SECRETS_FILE}",
        dependencies=dependencies,
        log_file=f"{run_dir}/logs/{CLEANUP_JOB}.%j.log",
        account=profile.slurm.account,
        partition=profile.slurm.partitions.get("cpu"),
        qos=profile.slurm.qos,
    )


def _remove_secrets(shell: LocalShell | SSHShell, *runs: RunRecord) -> None:
    """No job of ``runs`` can start again: their secrets go (a cleanup job still queued has nothing to do), in one
    ``rm`` and one ``scancel`` for all of them."""
    files, cleanup = _take_secrets(runs)
    if files:
        shell.run(["rm", "-f", "--", *files])
    if cleanup:
        shell.run(["scancel", *cleanup])


def _take_secrets(runs: Iterable[RunRecord]) -> tuple[list[str], list[str]]:
    """The secrets files of ``runs`` (their records forget them) and the cleanup jobs that would remove them."""
    files, cleanup = [], []
    for run in runs:
        path = run.executor_data.pop("secrets_file", None)
        if path:
            files.append(path)
            cleanup += [run.executor_data["cleanup_job"]] if run.executor_data.get("cleanup_job") else []
    return files, cleanup


def _by_cluster(runs: Iterable[RunRecord]) -> list[tuple[LocalShell | SSHShell, list[RunRecord]]]:
    """``runs`` grouped by where their Slurm commands run (this machine, or one SSH host), with its shell."""
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(json.dumps(run.executor_data.get("ssh"), sort_keys=True), []).append(run)
    return [(_shell(group[0]), group) for group in groups.values()]


def _shell(run: RunRecord) -> LocalShell | SSHShell:
    ssh = run.executor_data.get("ssh")
    return shell_for(SSHOptions.model_validate(ssh) if ssh else None, run.plan.secret_names)


def _wait_gone(shell: LocalShell | SSHShell, job_ids: list[str]) -> None:
    """Until squeue lists none of ``job_ids`` as pending or running (scancel is asynchronous)."""
    deadline = time.monotonic() + CANCEL_WAIT_S
    while time.monotonic() < deadline:
        listed = shell.run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i"])
        if listed.returncode == 0 and not listed.stdout.split():
            return
        time.sleep(0.5)


def _show_failures(run: RunRecord) -> None:
    from nemotron.launcher.executors.base import log_tail
    from nemotron.launcher.report import print_failure

    for name, record in run.steps.items():
        if record.state in ("failed", "timeout"):
            print_failure(run, name, log_tail(record.log))


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        return False
