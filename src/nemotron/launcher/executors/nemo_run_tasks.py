"""A plan in NeMo-Run's terms: one ``run.Script`` task per job (the step's own CLI) and, per job, the keyword
arguments of the backend's NeMo-Run executor class (``run.SlurmExecutor``, ``run.SkypilotExecutor``...).

``executor_fields`` is pure: plan + profile -> plain values, so what a job asks of a backend can be shown (and
tested) even where the backend's SDK is not installed (SkyPilot's executor cannot be constructed without it).
Secrets never become a field: a backend that can carry them without writing their values into a spec gets what
it needs to do so (``secret_fields``); one that cannot is refused at submit, naming the secret and the backend.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from nemotron.errors import UserError
from nemotron.launcher.executors.base import ExecutorError
from nemotron.launcher.executors.nemo_run_options import NemoRunOptions
from nemotron.launcher.executors.sbatch import source_secrets
from nemotron.launcher.plan import Job, Plan
from nemotron.launcher.profiles import Profile, ProfileError

SECRETS_FILE = "secrets.env"
EXECUTOR_CLASSES = {
    "slurm": "SlurmExecutor",
    "docker": "DockerExecutor",
    "local": "LocalExecutor",
    "skypilot": "SkypilotExecutor",
    "dgxcloud": "DGXCloudExecutor",
    "lepton": "LeptonExecutor",
}
# How each backend gets the profile's secrets to a job without their values in a script or spec; None: it cannot.
SECRET_PATHS = {
    "local": "the job inherits them from this process (torchx's local scheduler copies its environment)",
    "slurm": "the job script sources a 0600 file in the run directory; sbatch runs without them in its environment",
    "lepton": "the job's environment references secrets stored in the Lepton workspace ([nemo_run.lepton] secret_refs)",
    "docker": None,
    "skypilot": None,
    "dgxcloud": None,
}


# Backends whose NeMo-Run executor imports an SDK that is not one of NeMo-Run's own dependencies:
# backend -> (the module it imports, the package that provides it)
BACKEND_SDKS = {"skypilot": ("sky", "skypilot"), "lepton": ("leptonai", "leptonai")}


class MissingPackageError(UserError):
    """An optional package a chosen backend needs is not installed: one line, exit 2, at --dry-run and at submit
    (not an ``ExecutorError``, which a dry-run shows as a note and goes on)."""


def check_backend_sdk(backend: str) -> None:
    if backend not in BACKEND_SDKS:
        return
    module, package = BACKEND_SDKS[backend]
    try:
        found = importlib.util.find_spec(module) is not None
    except ValueError:  # sys.modules[module] is None: importing it is blocked
        found = False
    if not found:
        raise MissingPackageError(
            f"NeMo-Run's {backend} backend needs the {package} package (Python module {module!r}), which is not "
            f"installed here: uv pip install {package} (or pip install {package}) in this environment"
        )


def nemo_run_options(profile: Profile) -> NemoRunOptions:
    options = profile.nemo_run
    if options is None:
        raise ProfileError(
            f"profile {profile.name}: executor nemo_run needs a [nemo_run] table naming its backend "
            f"(backend = one of {', '.join(EXECUTOR_CLASSES)})"
        )
    return options


def task_fields(job: Job) -> dict[str, Any]:
    """``run.Script`` keyword arguments: ``python -m <step module> <its flags>``, the command every executor runs."""
    return {"path": job.module, "args": list(job.args), "entrypoint": "python", "m": True}


def secret_refusal(plan: Plan, options: NemoRunOptions) -> str | None:
    """Why this plan's secrets cannot reach its jobs on this backend (one line), or None if they can."""
    if not plan.secret_names:
        return None
    backend, secret = options.backend, plan.secret_names[0]
    if backend == "slurm" and options.slurm.tunnel == "ssh":
        return (
            f"secret {secret}: NeMo-Run's slurm backend through an ssh tunnel has no way to pass a secret without "
            "writing its value into the job script; use tunnel = 'local' on the login node, or drop it from secrets"
        )
    if SECRET_PATHS[backend] is None:
        return (
            f"secret {secret}: NeMo-Run's {backend} backend has no way to pass a secret without writing its value "
            "into the job's spec; drop it from the profile's secrets or use a backend that has one (slurm, lepton)"
        )
    return None


def executor_fields(plan: Plan, profile: Profile, job: Job, run_id: str, nemorun_home: str) -> dict[str, Any]:
    """The keyword arguments of the backend's NeMo-Run executor for one job: its resources, image, mounts (the
    artifact root always), non-secret environment, and where secrets come from (names and references only)."""
    options = nemo_run_options(profile)
    common = {"env_vars": {**job.env, "NEMOTRON_RUN_ID": run_id}, "retries": options.retries}
    backend_fields = _BACKEND_FIELDS[options.backend]
    return {**common, **backend_fields(plan, profile, job, options.backend_options(), nemorun_home, run_id)}


def secrets_file(plan: Plan, run_id: str) -> Path:
    """Where a run's secrets wait for its Slurm jobs (0600; removed once the run has ended)."""
    return Path(plan.artifact_root) / "runs" / run_id / SECRETS_FILE


def _slurm_fields(plan: Plan, profile: Profile, job: Job, settings: Any, nemorun_home: str, run_id: str) -> dict:
    res, root, image = job.resources, str(plan.artifact_root), profile.container.image
    # With a local tunnel NeMo-Run writes the sbatch scripts under its own experiments directory, the only one its
    # sbatch call finds them in.
    tunnel: dict[str, Any] = {"kind": "local", "job_dir": f"{nemorun_home}/experiments"}
    if settings.tunnel == "ssh":
        user = settings.user or os.environ.get("USER", "")
        tunnel = {"kind": "ssh", "host": settings.host, "user": user, "job_dir": settings.job_dir}
        tunnel |= {"identity": settings.identity} if settings.identity else {}
    container = {"container_image": image, "container_mounts": [*profile.container.mounts, f"{root}:{root}"]}
    return {
        "account": settings.account,
        "partition": res.partition,
        "nodes": res.nodes,
        "ntasks_per_node": res.nproc_per_node if res.distributed else 1,
        "gpus_per_node": res.gpus_per_node or None,
        "cpus_per_task": res.cpus_per_task,
        "mem": res.mem,
        "time": res.time,
        "qos": settings.qos,
        "constraint": settings.constraint,
        "exclusive": settings.exclusive,
        "srun_args": settings.srun_args or None,
        # A failed job's dependents are cancelled, not left pending forever (DependencyNeverSatisfied).
        "additional_parameters": {"kill_on_invalid_dep": "yes"},
        "poll_estimated_start_time": False,
        "tunnel": tunnel,
        **(container if image else {}),
        # sbatch would save values from its environment with the job (slurmctld's state, job_env accounting)
        **({"setup_lines": "\n".join(source_secrets(str(secrets_file(plan, run_id))))} if plan.secret_names else {}),
    }


def _machine_fields(job: Job) -> dict[str, Any]:
    nproc = job.resources.nproc_per_node if job.resources.distributed else 1
    return {"ntasks_per_node": nproc, **({"launcher": "torchrun"} if nproc > 1 else {})}


def _local_fields(plan: Plan, profile: Profile, job: Job, settings: Any, nemorun_home: str, run_id: str) -> dict:
    return _machine_fields(job)


def _docker_fields(plan: Plan, profile: Profile, job: Job, settings: Any, nemorun_home: str, run_id: str) -> dict:
    root = str(plan.artifact_root)
    return {
        **_machine_fields(job),
        "container_image": _required_image(profile, "docker"),
        "num_gpus": settings.num_gpus,
        "shm_size": settings.shm_size,
        "ipc_mode": settings.ipc_mode,
        "ulimits": list(settings.ulimits),
        "network": settings.network,
        "volumes": [f"{root}:{root}", *profile.container.mounts],
        # files written on the mounted artifact root belong to whoever launched
        "additional_kwargs": {"user": f"{os.getuid()}:{os.getgid()}"},
    }


def _skypilot_fields(plan: Plan, profile: Profile, job: Job, settings: Any, nemorun_home: str, run_id: str) -> dict:
    res, root = job.resources, str(plan.artifact_root)
    where = {"infra": settings.infra} if settings.infra else {"cloud": settings.cloud, "region": settings.region}
    return {
        **where,
        "container_image": _required_image(profile, "skypilot"),
        "num_nodes": res.nodes,
        "gpus": settings.gpus,
        "gpus_per_node": res.gpus_per_node or None,
        "torchrun_nproc_per_node": res.nproc_per_node,
        "cpus": settings.cpus,
        "memory": settings.memory,
        "disk_size": settings.disk_size,
        "use_spot": settings.use_spot,
        "cluster_name": settings.cluster_name,
        "setup": settings.setup,
        "file_mounts": dict(settings.file_mounts) or None,
        "storage_mounts": {root: dict(settings.artifact_storage)} if settings.artifact_storage else None,
    }


def _ranks(job: Job) -> dict[str, Any]:
    res = job.resources
    return {"nodes": res.nodes, "gpus_per_node": res.gpus_per_node, "nprocs_per_node": res.nproc_per_node}


def _dgxcloud_fields(plan: Plan, profile: Profile, job: Job, settings: Any, nemorun_home: str, run_id: str) -> dict:
    _check_mounted(str(plan.artifact_root), [p.get("path", "") for p in settings.pvcs], "[nemo_run.dgxcloud] pvcs")
    return {
        **_ranks(job),
        "base_url": settings.base_url,
        "kube_apiserver_url": settings.kube_apiserver_url,
        "client_id": settings.client_id,
        "client_secret": f"${settings.client_secret_env}",  # a reference: read only to ask for a token
        "project_name": settings.project_name,
        "container_image": _required_image(profile, "dgxcloud"),
        "pvc_nemo_run_dir": settings.pvc_nemo_run_dir,
        "pvcs": [dict(p) for p in settings.pvcs],
        "distributed_framework": settings.distributed_framework,
    }


def _lepton_fields(plan: Plan, profile: Profile, job: Job, settings: Any, nemorun_home: str, run_id: str) -> dict:
    _check_mounted(str(plan.artifact_root), [m["mount_path"] for m in settings.mounts], "[nemo_run.lepton] mounts")
    return {
        **_ranks(job),
        "container_image": _required_image(profile, "lepton"),
        "nemo_run_dir": settings.nemo_run_dir,
        "resource_shape": settings.resource_shape,
        "node_group": settings.node_group,
        "node_reservation": settings.node_reservation,
        "mounts": [dict(m) for m in settings.mounts],
        "secret_vars": {name: settings.secret_refs.get(name, name) for name in plan.secret_names},
    }


_BACKEND_FIELDS = {
    "slurm": _slurm_fields,
    "docker": _docker_fields,
    "local": _local_fields,
    "skypilot": _skypilot_fields,
    "dgxcloud": _dgxcloud_fields,
    "lepton": _lepton_fields,
}


def build_executor(run: Any, backend: str, fields: dict[str, Any], credentials: bool = False) -> Any:
    """The NeMo-Run executor object for ``fields`` (``run`` is the imported ``nemo_run`` module); ``credentials``:
    submitting, so the variable a backend logs in with must be set in this shell (its value stays there)."""
    fields = dict(fields)
    if backend == "slurm":
        tunnel = dict(fields.pop("tunnel"))
        kind = tunnel.pop("kind")
        fields["tunnel"] = run.LocalTunnel(job_dir=tunnel["job_dir"]) if kind == "local" else run.SSHTunnel(**tunnel)
    # The code is in the image (docker, cloud) or on the shared filesystem (slurm, local): nothing to ship;
    # NeMo-Run's SkyPilot executor only takes its git archive packager.
    packager = run.GitArchivePackager() if backend == "skypilot" else run.Packager()
    if backend == "dgxcloud" and credentials:  # the value stays in this shell (nemo_run_dgxcloud)
        name = fields["client_secret"].removeprefix("$")
        if not os.environ.get(name):
            raise ExecutorError(f"{name} is not set in this shell: NeMo-Run's dgxcloud backend logs in with it")
    return getattr(run, EXECUTOR_CLASSES[backend])(packager=packager, **fields)


def _required_image(profile: Profile, backend: str) -> str:
    if not profile.container.image:
        raise ExecutorError(
            f"profile {profile.name}: NeMo-Run's {backend} backend runs the recipe's container: set [container] image"
        )
    return profile.container.image


def _check_mounted(root: str, mount_paths: list[str], where: str) -> None:
    """The artifact root must be on a volume every job mounts: the jobs' inputs and outputs live there."""
    if not any(p and Path(root).is_relative_to(p) for p in mount_paths):
        shown = ", ".join(p for p in mount_paths if p) or "none"
        raise ExecutorError(f"artifact root {root} is on no volume of {where}: {shown}; mount it or move the root")
