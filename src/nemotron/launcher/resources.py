"""Resolved resources of one job: the recipe's defaults, then the profile's defaults, then ``[steps.<step>]``."""

from __future__ import annotations

from pydantic import BaseModel

from nemotron.launcher.declaration import ResourceClass, Step
from nemotron.launcher.profiles import Profile


class JobResources(BaseModel):
    resource_class: ResourceClass
    distributed: bool  # one process per GPU (or per ``nproc_per_node`` without GPUs)
    nodes: int
    gpus_per_node: int
    nproc_per_node: int  # processes per node: torchrun locally, srun tasks per node on Slurm
    cpus_per_task: int | None = None
    mem: str | None = None
    time: str
    partition: str | None = None


def resolve_resources(step: Step, profile: Profile) -> JobResources:
    declared, slurm, override = step.resources, profile.slurm, profile.steps.get(step.name)
    gpu = declared.resource_class == "gpu"
    nodes = declared.nodes
    gpus = declared.gpus_per_node if gpu else 0
    if gpu and slurm.gpus_per_node is not None:  # what the cluster's nodes have; a 1-GPU step keeps asking for 1
        gpus = slurm.gpus_per_node if declared.distributed else min(gpus, slurm.gpus_per_node)
    if declared.distributed and slurm.nodes is not None:
        nodes = slurm.nodes
    if override is not None:
        nodes = override.nodes or nodes
        gpus = override.gpus_per_node if override.gpus_per_node is not None else gpus
    if profile.executor != "slurm":  # local/docker take devices from the profile ([local], [docker] gpus)
        gpus = 0
    nproc = 1
    if declared.distributed:
        nproc = gpus if profile.executor == "slurm" and gpus > 0 else profile.local.nproc_per_node
    pick = _picker(override)
    return JobResources(
        resource_class=declared.resource_class,
        distributed=declared.distributed,
        nodes=nodes if declared.distributed else 1,
        gpus_per_node=gpus,
        nproc_per_node=pick("nproc_per_node", nproc),
        cpus_per_task=pick("cpus_per_task", slurm.cpus_per_task),
        mem=pick("mem", slurm.mem),
        time=pick("time", slurm.time or declared.time),
        partition=pick("partition", slurm.partitions.get(declared.resource_class)),
    )


def _picker(override):
    def pick(name: str, fallback):
        value = getattr(override, name, None) if override is not None else None
        return fallback if value is None else value

    return pick
