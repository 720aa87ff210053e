"""The NeMo-Run executor's profile table, ``[nemo_run]``: the NeMo-Run backend to hand the plan to, and that backend's
options in ``[nemo_run.<backend>]``. Field names follow NeMo-Run's own executor classes (``run.SlurmExecutor``,
``run.SkypilotExecutor``...), so its documentation reads across; what the plan decides per job (nodes, ranks, GPUs,
time, the image, the artifact root's mount, the environment) is not an option here.

Credentials are never values in a profile: ``client_secret_env`` names the environment variable holding DGX Cloud's,
and ``[nemo_run.lepton] secret_refs`` maps each of the profile's ``secrets`` to a secret stored in the Lepton
workspace.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from nemotron.launcher.options import AllocationDefaults, StrictModel

Backend = Literal["slurm", "docker", "local", "skypilot", "dgxcloud", "lepton"]
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class NemoRunSlurm(AllocationDefaults):
    """``run.SlurmExecutor``: sbatch through a tunnel (``local``: this machine is a login node; ``ssh``: one)."""

    account: str  # NeMo-Run requires one
    tunnel: Literal["local", "ssh"] = "local"
    host: str | None = None  # ssh tunnel: the login node
    user: str | None = None
    identity: str | None = None  # path of the private key
    job_dir: str | None = None  # ssh tunnel: NeMo-Run's experiments directory on the cluster
    qos: str | None = None
    constraint: str | None = None
    exclusive: bool | None = None
    srun_args: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ssh_needs_a_host(self) -> NemoRunSlurm:
        if self.tunnel == "ssh" and not (self.host and self.job_dir):
            raise ValueError("tunnel = 'ssh' needs host and job_dir (NeMo-Run's experiments directory there)")
        return self


class NemoRunDocker(StrictModel):
    """``run.DockerExecutor``: the recipe's image (``[container] image``) on this machine's Docker engine."""

    num_gpus: int | None = None  # None: CPU only
    shm_size: str | None = "8g"
    ipc_mode: str | None = "host"
    # "name:soft[:hard]", as NeMo-Run parses them (its docstring's "name=soft" fails inside it)
    ulimits: list[str] = Field(default_factory=lambda: ["memlock:-1", "stack:67108864"])
    network: str = "host"

    @field_validator("ulimits")
    @classmethod
    def _ulimit_format(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.fullmatch(r"[a-z]+:-?\d+(:-?\d+)?", item):
                raise ValueError(f"ulimit {item!r} is not name:soft[:hard], e.g. memlock:-1")
        return value


class NemoRunLocal(StrictModel):
    """``run.LocalExecutor``: subprocesses of NeMo-Run on this machine (torchrun for ``ntasks_per_node`` > 1)."""

    ntasks_per_node: int = Field(default=1, ge=1)


class NemoRunSkypilot(StrictModel):
    """``run.SkypilotExecutor`` (needs ``nemo_run[skypilot]``): ``infra = "k8s"`` (or ``"k8s/<context>"``) for a
    Kubernetes cluster, else a cloud. The artifact root is a SkyPilot storage mount (``artifact_storage``)."""

    infra: str | None = None
    cloud: str | None = None
    region: str | None = None
    gpus: str | None = None  # accelerator type, e.g. "H100"
    gpus_per_node: int | None = Field(default=None, ge=0)
    cpus: int | float | None = None
    memory: int | float | None = None
    disk_size: int | None = None
    use_spot: bool | None = None
    cluster_name: str | None = None
    setup: str | None = None
    artifact_storage: dict[str, Any] = Field(default_factory=dict)  # SkyPilot storage config for the artifact root
    file_mounts: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _infra_or_cloud(self) -> NemoRunSkypilot:
        if not (self.infra or self.cloud):
            raise ValueError("give infra (e.g. 'k8s') or cloud")
        if self.infra and (self.cloud or self.region):
            raise ValueError("infra replaces cloud and region: give one or the other")
        return self


class NemoRunDGXCloud(StrictModel):
    """``run.DGXCloudExecutor``: Run:ai on DGX Cloud; the artifact root lives on one of ``pvcs``."""

    base_url: str
    kube_apiserver_url: str
    client_id: str
    client_secret_env: str = Field(pattern=ENV_NAME_PATTERN)  # the environment variable holding the API secret
    project_name: str
    pvc_nemo_run_dir: str
    gpus_per_node: int | None = Field(default=None, ge=0)
    pvcs: list[dict[str, Any]] = Field(default_factory=list)
    distributed_framework: str = "PyTorch"


class NemoRunLepton(StrictModel):
    """``run.LeptonExecutor``: DGX Cloud Lepton; secrets are the workspace's (``secret_refs``)."""

    resource_shape: str
    node_group: str
    nemo_run_dir: str
    gpus_per_node: int | None = Field(default=None, ge=0)
    mounts: list[dict[str, Any]] = Field(default_factory=list)  # {"path", "mount_path", ...} as Lepton takes them
    secret_refs: dict[str, str] = Field(default_factory=dict)  # env var -> workspace secret name (default: same)
    node_reservation: str = ""

    @field_validator("mounts")
    @classmethod
    def _mounts_have_paths(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for mount in value:
            if not {"path", "mount_path"} <= set(mount):
                raise ValueError(f"mount {mount!r} needs path and mount_path")
        return value


class NemoRunOptions(StrictModel):
    backend: Backend
    retries: int = Field(default=0, ge=0)  # NeMo-Run's own retries of a failed task
    slurm: NemoRunSlurm | None = None
    docker: NemoRunDocker = Field(default_factory=NemoRunDocker)
    local: NemoRunLocal = Field(default_factory=NemoRunLocal)
    skypilot: NemoRunSkypilot | None = None
    dgxcloud: NemoRunDGXCloud | None = None
    lepton: NemoRunLepton | None = None

    @model_validator(mode="after")
    def _backend_table(self) -> NemoRunOptions:
        if getattr(self, self.backend) is None:
            required = [name for name, f in _BACKEND_MODELS[self.backend].model_fields.items() if f.is_required()]
            keys = f" (required: {', '.join(required)})" if required else ""
            raise ValueError(f"backend {self.backend!r} needs a [nemo_run.{self.backend}] table{keys}")
        return self

    def backend_options(self) -> StrictModel:
        return getattr(self, self.backend)


_BACKEND_MODELS: dict[str, type[StrictModel]] = {
    "slurm": NemoRunSlurm,
    "docker": NemoRunDocker,
    "local": NemoRunLocal,
    "skypilot": NemoRunSkypilot,
    "dgxcloud": NemoRunDGXCloud,
    "lepton": NemoRunLepton,
}
PROFILE_TABLES = {"nemo_run": (NemoRunOptions | None, None)}
