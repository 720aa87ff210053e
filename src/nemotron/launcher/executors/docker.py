"""The Docker executor: each job a ``docker run`` of the recipe's image on this machine's engine, in dependency order.

It is the local executor with every step's command wrapped in ``docker run`` (same runner, same per-step logs, same
detached mode): the container runs attached to the docker CLI, whose output goes to the step's log and whose exit
code is the step's; SIGTERM to the CLI is proxied into the container (``--init`` forwards it to the step, so
training can checkpoint and exit 75). Every container carries the labels ``nemotron.run=<run id>`` and
``nemotron.job=<stage.step>`` and is kept after it exits, so ``status``/``cancel`` find a run's containers from any
shell (``docker ps -a --filter label=nemotron.run=<id>``) and ``docker logs``/``inspect`` work for post-mortems.

The artifact root is mounted at the same path, so artifacts land on the host where the plan says. Secrets never
reach a command line or the container's configuration: ``--env-file``/``-e`` would show their values in
``docker inspect`` (Config.Env), so they go into a 0600 file in the run directory, bind-mounted read-only at
``/run/secrets/nemotron.env`` and sourced by ``sh`` just before the step starts; the file is removed when the run ends.

A job's text is its ``docker run`` line with a ``{run_id}`` placeholder, naming an image: the dry-run
the profile's tag, a run the image pinned by content id (``prepare`` with the run). As for the local
executor, the bound text is stored in the run record and the runner executes its words.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from nemotron.array import ARRAY_TASK_ENV
from nemotron.heartbeat import ATTEMPT_ENV
from nemotron.launcher.code_identity import (
    DOCKER_INSPECT,
    IMAGE_ID_ENV,
    PinnedImage,
    build_hint,
    check_image_code,
    parse_docker_inspect,
)
from nemotron.launcher.executors.array_runner import TASK_PLACEHOLDER
from nemotron.launcher.executors.base import ExecutorError, secret_values, write_env_file
from nemotron.launcher.executors.local import LocalExecutor, array_comment, job_command
from nemotron.launcher.inputs import is_complete
from nemotron.launcher.plan import Job, Plan
from nemotron.launcher.profiles import Profile
from nemotron.launcher.runs import FINISHED_STATES, RunRecord, StepRecord, save_run

RUN_LABEL = "nemotron.run"
JOB_LABEL = "nemotron.job"
SECRETS_FILE = "secrets.env"
SECRETS_IN_CONTAINER = "/run/secrets/nemotron.env"
STOP_TIMEOUT_S = 10
# Sources the secrets file, then becomes the step: `exec "$@"` keeps the step's own CLI as separate, visible words.
SOURCE_SECRETS = f'set -a; . {SECRETS_IN_CONTAINER}; set +a; exec "$@"'


def container_name(run_id: str, job_name: str) -> str:
    return f"nemotron-{run_id}-{job_name.replace('.', '-')}"


def docker_run_command(
    job: Job,
    plan: Plan,
    profile: Profile,
    image: str,
    run_id: str,
    run_dir: Path | str,
    user: str | None = None,
) -> list[str]:
    """The ``docker run`` words for one job. Pure: the same inputs give the same words (golden-tested)."""
    docker = profile.docker
    root = str(plan.artifact_root)
    # an array's tasks run at once: each its own container, named with its index (bound by the array runner)
    task = f"-{{{TASK_PLACEHOLDER}}}" if job.array else ""
    command = ["docker", "run", "--name", container_name(run_id, job.name) + task]
    command += ["--label", f"{RUN_LABEL}={run_id}", "--label", f"{JOB_LABEL}={job.name}", "--init"]
    if user:
        command += ["--user", user]  # files written on the mounted artifact root belong to whoever launched
    if docker.gpus:
        command += ["--gpus", docker.gpus]
    if docker.ipc:
        command += [f"--ipc={docker.ipc}"]
    if docker.shm_size:
        command += [f"--shm-size={docker.shm_size}"]
    for limit, value in docker.ulimits.items():
        command += ["--ulimit", f"{limit}={value}"]
    command += ["-v", f"{root}:{root}"]
    for mount in profile.container.mounts:
        command += ["-v", mount]
    identity = {IMAGE_ID_ENV: image}  # recorded by the artifacts the step writes: a run names its image's id
    for key, value in {**job.env, "NEMOTRON_RUN_ID": run_id, **identity}.items():
        command += ["-e", f"{key}={value}"]  # non-secret by construction: profiles name secrets, never hold them
    command += ["-e", ATTEMPT_ENV]  # by name: the runner sets it for each attempt of the step
    command += ["-e", ARRAY_TASK_ENV] if job.array else []  # and for each task of an array
    step = job_command(job, python="python")
    if plan.secret_names:
        command += ["-v", f"{Path(run_dir) / SECRETS_FILE}:{SECRETS_IN_CONTAINER}:ro"]
        step = ["sh", "-c", SOURCE_SECRETS, "nemotron-step", *step]
    return [*command, *docker.extra_args, image, *step]


def profile_image(profile: Profile) -> str:
    image = profile.container.image
    if not image:
        raise ExecutorError(
            f"profile {profile.name} sets no container.image: build one with `nemotron-launch build RECIPE` "
            "and set [container] image (or NEMOTRON_IMAGE)"
        )
    if image.endswith(".sqsh"):
        raise ExecutorError(
            f"profile {profile.name}: container.image {image} is an enroot squashfs, which Docker cannot run: "
            "use an image reference such as nemotron/nano2:latest"
        )
    return image


def require_docker() -> str:
    path = shutil.which("docker")
    if path is None:
        raise ExecutorError(
            "docker is not installed (or not on PATH): install Docker Engine (Debian: apt-get install docker.io)"
        )
    return path


def docker_cli(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """One docker CLI call (``DOCKER_HOST`` from the environment); failures are one line for people."""
    require_docker()
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ExecutorError(f"docker {args[0]} failed: {detail}")
    return result


def inspect_image(image: str) -> PinnedImage:
    """The image's content id (``sha256:...``) and code label, or a one-line error saying how to get the image."""
    result = docker_cli(*DOCKER_INSPECT, image, check=False)
    found = parse_docker_inspect(image, result.stdout) if result.returncode == 0 else None
    if found is None:
        if "Cannot connect" in result.stderr:
            raise ExecutorError(f"cannot reach the Docker engine: {result.stderr.strip().splitlines()[-1]}")
        raise ExecutorError(f"image {image} is not in the Docker engine: build it with `nemotron-launch build RECIPE`")
    return found


def checked_image(plan: Plan, profile: Profile) -> tuple[PinnedImage, str | None]:
    """The profile's image, pinned, once it is known to hold the code the plan fingerprints (else one line)."""
    image = inspect_image(profile_image(profile))
    return image, check_image_code(plan.code, image, build_hint(plan.recipe, plan.profile))


def run_containers(run_id: str) -> dict[str, dict[str, str]]:
    """The run's containers, by name: ``{"state": running|exited|..., "exit_code": "0"}``."""
    fmt = "{{.Names}}\t{{.State}}\t{{.Status}}"
    result = docker_cli("ps", "-a", "--filter", f"label={RUN_LABEL}={run_id}", "--format", fmt, check=False)
    found = {}
    for line in result.stdout.splitlines():
        name, state, status = (line.split("\t") + ["", ""])[:3]
        code = status.split("(")[1].split(")")[0] if state == "exited" and "(" in status else ""
        found[name] = {"state": state, "exit_code": code}
    return found


class DockerExecutor(LocalExecutor):
    name = "docker"

    def prepare(self, plan: Plan, profile: Profile, run: RunRecord | None) -> dict[str, str]:
        """The dry-run names the profile's image; a run, that image pinned by content id: every job of the run uses
        the same image even if the tag moves meanwhile."""
        if run is None:
            return _render(plan, profile, profile_image(profile))
        secret_values(plan)
        # Checked again here, not only in ``check``: a build in between may have moved the tag.
        image, _note = checked_image(plan, profile)
        run.executor_data["image"] = image.name
        run.executor_data["image_id"] = image.image_id
        return _render(plan, profile, image.image_id)

    def check(self, plan: Plan, profile: Profile) -> None:
        super().check(plan, profile)
        _image, note = checked_image(plan, profile)
        if note:
            print(f"note: {note}", file=sys.stderr)

    def prepare_retry(self, run: RunRecord, job: Job) -> None:
        """The last attempt's container holds the step's name: it goes before the next attempt's starts."""
        docker_cli("rm", "--force", container_name(run.run_id, job.name), check=False)

    def run_jobs(self, run: RunRecord) -> RunRecord:
        try:
            if run.plan.secret_names:  # read by the steps' containers (SOURCE_SECRETS), gone when the run ends
                values = {k: shlex.quote(v) for k, v in secret_values(run.plan).items()}
                write_env_file(Path(run.run_dir) / SECRETS_FILE, values)
            return super().run_jobs(run)
        finally:
            (Path(run.run_dir) / SECRETS_FILE).unlink(missing_ok=True)

    def status(self, run: RunRecord) -> dict[str, StepRecord]:
        steps = super().status(run)
        for name, record in steps.items():  # the container's name is how people find it (docker logs/inspect)
            if record.state not in ("planned", "pending", "reused") and record.job_id is not None:
                steps[name] = record.model_copy(update={"job_id": container_name(run.run_id, name)})
        if all(record.state in FINISHED_STATES for record in steps.values()):
            (Path(run.run_dir) / SECRETS_FILE).unlink(missing_ok=True)  # its runner was killed before its cleanup
        return steps

    def orphaned(self, run: RunRecord, name: str, record: StepRecord) -> StepRecord:
        """The runner is gone: the step's container is the truth (it stops with the runner's docker CLI)."""
        container = run_containers(run.run_id).get(container_name(run.run_id, name))
        if container is None or container["state"] not in ("running", "exited"):
            return super().orphaned(run, name, record)
        if container["state"] == "running":
            return record.model_copy(update={"state": "running", "reason": "its runner is gone; it is being stopped"})
        code, job = int(container["exit_code"] or -1), run.plan.job(name)
        if code == 0 and is_complete(job.output, job.artifact_type):
            return record.model_copy(update={"state": "completed", "exit_code": 0, "reason": None})
        return record.model_copy(update={"state": "cancelled", "exit_code": code, "reason": "stopped with its runner"})

    def cancel(self, run: RunRecord) -> RunRecord:
        """Stop the runner (so nothing new starts), then every still-running container of the run."""
        current = super().cancel(run)
        running = [name for name, c in run_containers(run.run_id).items() if c["state"] in ("running", "created")]
        if running:
            docker_cli("stop", "--time", str(STOP_TIMEOUT_S), *running, check=False, timeout=STOP_TIMEOUT_S + 60)
        for record in current.steps.values():
            if record.state not in FINISHED_STATES:
                record.state, record.reason = "cancelled", "cancelled"
        save_run(current)
        return current


def _render(plan: Plan, profile: Profile, image: str) -> dict[str, str]:
    """Each job's ``docker run`` text naming ``image``, the run's id as a placeholder (``bind``)."""
    rendered = {}
    for job in plan.jobs_to_run:
        # The run directory is the artifact root's (quoted with every other word) + the run id: only the id, which
        # is shell-safe by construction, is bound, so an artifact root with a space still works.
        run_dir = f"{plan.artifact_root}/runs/{{run_id}}"
        words = docker_run_command(job, plan, profile, image, "{run_id}", run_dir, _current_user())
        after = f"# after: {', '.join(job.depends_on)}\n" if job.depends_on else ""
        secrets = f"# {run_dir}/{SECRETS_FILE} (0600): {', '.join(plan.secret_names)} from your shell\n"
        notes = after + array_comment(job) + (secrets if plan.secret_names else "")
        rendered[job.name] = notes + shlex.join(words) + "\n"
    return rendered


def _current_user() -> str:
    return f"{os.getuid()}:{os.getgid()}"


if __name__ == "__main__":
    from nemotron.launcher.executors.local import main

    raise SystemExit(main(sys.argv[1:], DockerExecutor()))
