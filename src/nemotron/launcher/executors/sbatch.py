"""Rendering sbatch scripts: one pure function whose keyword arguments are the schema (submitit style).

``render_sbatch(**params)`` turns parameters into a script an HPC user can read and re-submit by hand: ``#SBATCH``
lines, a ``set -euo pipefail`` body exporting the non-secret environment, sourcing secrets from a 0600 file with
tracing off, deriving ``MASTER_ADDR``/``MASTER_PORT`` from the allocation, then ``srun`` (with the container
runtime's flags) running the step's own CLI as one attempt (``sbatch_attempts``: the profile's signal is forwarded to
the step, the attempt's end is classified and recorded, and the job is requeued when the fault-tolerance policy says
so, up to ``max_attempts``). Every value is shell-quoted.
``sbatch_parameters`` maps a plan job + profile to those parameters; an unknown parameter is an error listing the
valid ones.
"""

from __future__ import annotations

import inspect
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nemotron.array import ARRAY_TASK_ENV
from nemotron.errors import STOP_EXIT_CODE, UserError
from nemotron.heartbeat import HANG_MARKER, PROGRESS_FILE
from nemotron.launcher.executors.sbatch_attempts import attempt_lines

# {run_id}, {code_dir}, {stage0_pretrain.training}: dotted names only, so never a brace expansion ({1..3}, {a,b})
PLACEHOLDER_RE = re.compile(r"\{[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\}")
CONTAINER_RUNTIMES = ("pyxis", "none", "docker")
# torch.distributed's env:// variables, set per task from Slurm's (the srun tasks are the ranks)
RANK_WRAPPER = (
    'export RANK="$SLURM_PROCID" LOCAL_RANK="$SLURM_LOCALID" WORLD_SIZE="$SLURM_NTASKS" '
    'LOCAL_WORLD_SIZE="$SLURM_NTASKS_PER_NODE"; exec "$@"'
)
SCRIPT_ENV = ("MASTER_ADDR", "MASTER_PORT", "NEMOTRON_ATTEMPT")  # set by the script itself (rendezvous, attempt)
ARRAY_TASK_LINE = f'export {ARRAY_TASK_ENV}="$SLURM_ARRAY_TASK_ID"'
RANK_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", *SCRIPT_ENV)


class SbatchParameterError(UserError):
    pass


def q(value: object) -> str:
    """``value`` quoted for the shell. A ``{placeholder}`` is bound at submit to a value that needs no quoting
    (``executors.base.bind``), so it alone does not make a word quoted: the submitted script reads
    ``#SBATCH --dependency=afterok:123``, as one written by hand would."""
    text = str(value)
    masked = PLACEHOLDER_RE.sub("x", text)
    return text if shlex.quote(masked) == masked else shlex.quote(text)


def render_sbatch(
    *,
    job_name: str,
    command: Sequence[str],
    log_file: str,
    nodes: int = 1,
    ntasks_per_node: int = 1,
    gpus_per_node: int = 0,
    cpus_per_task: int | None = None,
    mem: str | None = None,
    time: str | None = None,
    account: str | None = None,
    partition: str | None = None,
    exclusive: bool = False,
    qos: str | None = None,
    reservation: str | None = None,
    constraint: str | None = None,
    dependencies: Sequence[str] = (),
    corresponding: Sequence[str] = (),
    signal: str | None = None,
    max_attempts: int = 1,
    max_segments: int = 1,
    retry: Sequence[str] = (),
    stop_exit_code: int = STOP_EXIT_CODE,
    attempts_file: str | None = None,
    output_dir: str | None = None,
    sbatch_args: Sequence[str] = (),
    srun_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    secrets_file: str | None = None,
    workdir: str | None = None,
    pythonpath: str | None = None,
    container_runtime: str = "none",
    container_image: str | None = None,
    container_mounts: Sequence[str] = (),
    container_workdir: str | None = None,
    container_mount_home: bool = False,
    container_args: Sequence[str] = (),
    exit_marker: str | None = None,
    array: str | None = None,
    sweep_tasks: Mapping[int, Mapping[str, Any]] | None = None,
) -> str:
    """The text of one sbatch script (pure). ``dependencies`` are job ids (or ``{job}`` placeholders in a dry-run);
    ``corresponding``: ids of arrays whose task ``i`` this array's task ``i`` waits for (a sweep's upstream step);
    ``retry``: the failure classes the job is requeued after; ``output_dir``: the step's, where it reports progress;
    ``attempts_file``: the job's attempt record (default: beside the log); ``array``: a job array's ``--array``
    value (``0-3%2``): each task runs the step with its index in ``NEMOTRON_ARRAY_TASK`` and records its own
    attempts (``<attempts_file>.<index>``); ``sweep_tasks``: with ``array``, the tasks of a sweep (``launcher.sweeps``),
    each index -> its own ``args`` (flags after ``command``), ``output_dir``, ``attempts_file`` and ``exit_marker``:
    the script picks its task's by ``SLURM_ARRAY_TASK_ID``, so one script runs every configuration."""
    if container_runtime not in CONTAINER_RUNTIMES:
        raise SbatchParameterError(
            f"container runtime {container_runtime!r} is not one of {', '.join(CONTAINER_RUNTIMES)}"
        )
    if container_runtime == "pyxis" and signal and not signal.startswith("B:"):
        signal = f"B:{signal}"  # Slurm would signal every process of the step itself: see _signal_ranks
    directives = [
        f"--job-name={job_name}",
        *([f"--array={array}"] if array else []),
        *([f"--account={account}"] if account else []),
        *([f"--partition={partition}"] if partition else []),
        f"--nodes={nodes}",
        f"--ntasks-per-node={ntasks_per_node}",
        *([f"--gpus-per-node={gpus_per_node}"] if gpus_per_node else []),
        *([f"--cpus-per-task={cpus_per_task}"] if cpus_per_task else []),
        *([f"--mem={mem}"] if mem is not None else []),
        *([f"--time={time}"] if time else []),
        *(["--exclusive"] if exclusive else []),
        *([f"--qos={qos}"] if qos else []),
        *([f"--reservation={reservation}"] if reservation else []),
        *([f"--constraint={constraint}"] if constraint else []),
        f"--output={log_file}",
        f"--error={log_file}",
        "--open-mode=append",
        *(
            [f"--dependency={_dependency(dependencies, corresponding)}", "--kill-on-invalid-dep=yes"]
            if dependencies or corresponding
            else []
        ),  # fmt: skip
        *([f"--signal={signal}"] if signal else []),
        "--requeue",
        *sbatch_args,
    ]
    broken = next((d for d in directives if "\n" in d or "\r" in d), None)
    if broken is not None:  # a #SBATCH line ends at a line break: the rest would run as shell code
        raise SbatchParameterError(f"sbatch option {broken!r} contains a line break, which #SBATCH cannot carry")
    lines = ["#!/bin/bash", *(f"#SBATCH {q(d)}" for d in directives), "", "set -euo pipefail"]
    lines += _environment(env or {}, secrets_file, workdir, pythonpath, container_runtime)
    if array and sweep_tasks:
        lines += _sweep_task_lines(sweep_tasks)
    elif array:
        lines += ["# this array task's index: its part of the step (nemotron.array)", ARRAY_TASK_LINE]
    lines += [
        "",
        "# rendezvous of the ranks: the first node of the allocation, a port derived from the job id",
        'MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        "MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))",
        "export MASTER_ADDR MASTER_PORT",
        "",
    ]
    srun = ["srun", f"--nodes={nodes}", f"--ntasks-per-node={ntasks_per_node}", "--kill-on-bad-exit=1", *srun_args]
    shards = bool(array) and not sweep_tasks  # an array of one step's parts: each task told its index
    script_env = [*SCRIPT_ENV, *([ARRAY_TASK_ENV] if shards else [])]
    srun += _container_flags(container_runtime, container_image, container_mounts, container_workdir,
                             container_mount_home, container_args, [*(env or {}), *script_env])  # fmt: skip
    # --norc: bash sources ~/.bashrc when it believes sshd started it (SSH_CLIENT in a job submitted over ssh),
    # which would put the user's interactive PATH before the job's own
    step = [*srun, "bash", "--norc", "--noprofile", "-c", RANK_WRAPPER, "nemotron-rank"]
    if container_runtime == "docker":
        step += _docker_run(container_image, container_mounts, container_workdir, container_args, env or {},
                            secrets_file, [ARRAY_TASK_ENV] if shards else [])  # fmt: skip
    step += list(command)
    lines += attempt_lines(
        step,
        signal=signal,
        ranks_only=_signal_ranks(nodes) if container_runtime == "pyxis" else None,
        attempts_file=attempts_file or str(Path(log_file).parent / f"{job_name}.attempts.jsonl"),
        progress_file=f"{output_dir}/{PROGRESS_FILE}" if output_dir else "",
        hang_marker=f"{output_dir}/{HANG_MARKER}" if output_dir else "",
        max_attempts=max_attempts,
        max_segments=max_segments,
        retry=retry,
        stop_exit_code=stop_exit_code,
        exit_marker=exit_marker,
        per_task=shards,
        task_vars=bool(sweep_tasks),
    )
    return "\n".join(lines) + "\n"


def _dependency(after_ok: Sequence[str], after_corresponding: Sequence[str]) -> str:
    """``afterok:1:2,aftercorr:3``: every job of the first list, and the same task of each array of the second."""
    parts = [f"afterok:{':'.join(after_ok)}"] if after_ok else []
    return ",".join(parts + ([f"aftercorr:{':'.join(after_corresponding)}"] if after_corresponding else []))


def _sweep_task_lines(tasks: Mapping[int, Mapping[str, Any]]) -> list[str]:
    """The ``case`` that gives a sweep's task its own flags and files: every value quoted, none spliced as code."""
    lines = [
        "# this task of the sweep (nemotron.launcher.sweeps): its own flags, output, attempts record and exit marker",
        'case "$SLURM_ARRAY_TASK_ID" in',
    ]
    for index, task in tasks.items():
        output = task["output_dir"]
        lines += [
            f"  {int(index)})",
            f"    task_args=({' '.join(q(arg) for arg in task['args'])})",
            f"    progress_file={q(f'{output}/{PROGRESS_FILE}')} hang_marker={q(f'{output}/{HANG_MARKER}')}",
            f"    attempts_file={q(task['attempts_file'])} exit_marker={q(task['exit_marker'])} ;;",
        ]
    lines += ['  *) echo "task $SLURM_ARRAY_TASK_ID is not one of this sweep\'s" >&2; exit 1 ;;', "esac"]
    return lines


def source_secrets(secrets_file: str) -> list[str]:
    """Shell lines exporting a 0600 file's ``KEY=value`` lines, with tracing off so no value reaches a log: ``-x``
    would print the assignments, ``-v`` the file's lines as they are read (NeMo-Run's scripts run ``set -evx``)."""
    return ["{ set +vx; } 2>/dev/null", "set -a", f". {q(secrets_file)}", "set +a"]


def _environment(env, secrets_file, workdir, pythonpath, runtime) -> list[str]:
    lines = ["", "# environment (secrets are not written here: they come from a 0600 file)"]
    lines += [f"export {name}={q(value)}" for name, value in env.items()]
    if runtime == "pyxis":
        lines.append("export PYTHONNOUSERSITE=1")
    if secrets_file:
        lines += source_secrets(secrets_file)
    if workdir:
        lines.append(f"cd {q(workdir)}")
    if pythonpath:
        lines.append(f'export PYTHONPATH={q(pythonpath)}"${{PYTHONPATH:+:$PYTHONPATH}}"')
    return lines


def _container_flags(runtime, image, mounts, workdir, mount_home, extra, env_names) -> list[str]:
    if runtime != "pyxis":
        return []
    if not image:
        raise SbatchParameterError("container_runtime pyxis needs a container image (profile [container] image)")
    flags = [f"--container-image={image}"]
    if mounts:
        flags.append(f"--container-mounts={','.join(mounts)}")
    if workdir:
        flags.append(f"--container-workdir={workdir}")
    if not mount_home:
        flags.append("--no-container-mount-home")
    # pyxis mounts the image read-only, and without the home mounted $HOME lies in it: libraries caching under
    # ~/.cache (datasets in evaluation, matplotlib) then fail with EROFS. A writable root, discarded with the
    # container, as `docker run` gives (extra args may still say --container-readonly).
    flags.append("--container-writable")
    # pyxis lets the image's ENV win over the job's environment for the same name (docker's -e wins over it):
    # name the job's variables so the profile's [env] and the rendezvous above mean the same in every runtime.
    flags.append(f"--container-env={','.join(dict.fromkeys(env_names))}")
    return flags + list(extra)


def input_mounts(inputs: Sequence[str | Path], mounts: Sequence[str]) -> list[str]:
    """Read-only same-path mounts for input artifacts no same-path mount in ``mounts`` covers: a container sees only
    what is mounted, and an input given by path (``training.dataset_path=DIR``) may lie outside the artifact root."""
    covered = [Path(m.split(":")[0]) for m in mounts if len(m.split(":")) > 1 and m.split(":")[0] == m.split(":")[1]]
    extra: list[str] = []
    for path in dict.fromkeys(Path(p) for p in inputs):
        if not any(path == c or c in path.parents for c in covered):
            extra.append(f"{path}:{path}:ro")
    return extra


def _docker_run(image, mounts, workdir, extra, env, secrets_file, task_env=()) -> list[str]:
    if not image:
        raise SbatchParameterError("container_runtime docker needs a container image (profile [container] image)")
    args = ["docker", "run", "--rm", "--network=host", "--ipc=host"]
    for mount in mounts:
        args += ["-v", mount]
    if workdir:
        args += ["-w", workdir]
    # by name only: docker copies the values from the task's environment, so nothing secret is on a command line
    for name in [*env, *RANK_ENV, *task_env]:
        args += ["-e", name]
    if secrets_file:
        args += ["--env-file", secrets_file]
    return [*args, *extra, image]


# The step's tasks (the ranks) on this node: `scontrol listpids` numbers them (LOCALID); other processes of the step
# (pyxis' squashfuse, the ranks' children) show "-", and this helper step's own tasks carry its step id.
LIST_RANKS = (
    'scontrol listpids "$SLURM_JOB_ID" | awk -v self="$SLURM_STEP_ID" '
    "'$3 ~ /^[0-9]+$/ && $3 != self && $4 ~ /^[0-9]+$/ {print $1}' | xargs -r kill -\"$0\""
)


def _signal_ranks(nodes: int) -> list[str]:
    """pyxis may start the image through squashfuse, whose processes belong to the step: a signal to the whole step
    (srun's forwarding, or Slurm's own --signal without B:) kills them and leaves the ranks on a vanished root
    (SIGBUS). The batch shell gets the signal and passes it to the ranks alone, through a step beside theirs."""
    return [
        "# pyxis may run the image from squashfuse processes of the step: they must not get the signal, the ranks do",
        "signal_ranks() {",
        f'  srun --overlap --nodes={nodes} --ntasks-per-node=1 bash -c {q(LIST_RANKS)} "$1"',
        "}",
    ]


def render_secrets_cleanup(
    *,
    job_name: str,
    secrets_file: str,
    dependencies: Sequence[str],
    log_file: str,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
) -> str:
    """A one-minute job that removes a run's secrets file once every job of the run has ended, whatever the way.

    ``afterany`` waits through requeues (a requeued job is pending again, not ended), and never becomes invalid, so
    this job runs after completion, failure and cancellation alike.
    """
    directives = [
        f"--job-name={job_name}",
        *([f"--account={account}"] if account else []),
        *([f"--partition={partition}"] if partition else []),
        *([f"--qos={qos}"] if qos else []),
        "--nodes=1",
        "--ntasks=1",
        "--time=00:05:00",
        f"--output={log_file}",
        f"--dependency=afterany:{':'.join(dependencies)}",
        "--kill-on-invalid-dep=no",
        "--no-requeue",
    ]
    lines = ["#!/bin/bash", *(f"#SBATCH {q(d)}" for d in directives), ""]
    lines += ["# the run's secrets exist only while one of its jobs may still start", f"rm -f -- {q(secrets_file)}"]
    return "\n".join(lines) + "\n"


def sbatch_parameter_names() -> list[str]:
    return list(inspect.signature(render_sbatch).parameters)


def check_parameters(params: Mapping[str, object]) -> None:
    """Schema-as-signature: a parameter ``render_sbatch`` does not take is an error naming the valid ones."""
    valid = sbatch_parameter_names()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise SbatchParameterError(f"unknown sbatch parameter {unknown[0]!r}: valid parameters are {', '.join(valid)}")


def render(params: Mapping[str, object]) -> str:
    check_parameters(params)
    return render_sbatch(**params)  # type: ignore[arg-type]


def log_file_pattern(log_dir: Path, job_name: str) -> str:
    """Log file of a job, named by step and Slurm job id (``%j``); requeues of the same job append to it."""
    return str(Path(log_dir) / f"{job_name}.%j.log")
