"""Resolved resources of one job at one scale: the recipe's defaults for the scale, then what the executor adds
(a scheduler's allocation defaults, this machine's processes), then the profile's ``[steps...]`` tables
(``profile_step_values``). Each executor translates them (``Executor.job_resources``) with one of the two
translations here: ``scheduled_resources`` for a scheduler that allocates nodes and GPUs, ``machine_resources`` for
this machine."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel

from nemotron.declaration import Recipe, ResourceClass, Resources, Stage, Step
from nemotron.launcher.executors.registry import executor_class
from nemotron.launcher.options import AllocationDefaults
from nemotron.launcher.profiles import Profile, ProfileError
from nemotron.scale import SCALES


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

    @property
    def time_limit_s(self) -> int:
        return time_seconds(self.time)


def time_seconds(text: str) -> int:
    """Seconds of a Slurm time (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``)."""
    days, _, clock = text.rpartition("-")
    parts = [int(part) for part in clock.split(":")]
    if days:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = (parts + [0, 0])[:3]
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    else:  # MM or MM:SS
        hours, minutes, seconds = 0, parts[0], (parts[1] if len(parts) == 2 else 0)
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


def resolve_resources(stage: Stage, step: Step, profile: Profile, scale: str) -> JobResources:
    declared, chosen = step.resources.at(scale), profile_step_values(profile, stage, step, scale)
    return executor_class(profile.executor).job_resources(declared, chosen, profile)


def scheduled_resources(declared: Resources, chosen: dict[str, Any], defaults: AllocationDefaults) -> JobResources:
    """A scheduler's allocation (Slurm, a Kubernetes cluster...): the cluster's node shape and defaults over the
    recipe's, the ``[steps...]`` values over both; a distributed step runs one rank per GPU it is given."""
    gpu = declared.resource_class == "gpu"
    nodes = declared.nodes
    gpus = declared.gpus_per_node if gpu else 0
    if gpu and defaults.gpus_per_node is not None:  # what the cluster's nodes have; a 1-GPU step keeps asking for 1
        gpus = defaults.gpus_per_node if declared.distributed else min(gpus, defaults.gpus_per_node)
    if declared.distributed and defaults.nodes is not None:
        nodes = defaults.nodes
    nodes, gpus = chosen.get("nodes", nodes), chosen.get("gpus_per_node", gpus)
    return JobResources(
        resource_class=declared.resource_class,
        distributed=declared.distributed,
        nodes=nodes if declared.distributed else 1,
        gpus_per_node=gpus,
        nproc_per_node=chosen.get("nproc_per_node", gpus if declared.distributed and gpus > 0 else 1),
        cpus_per_task=chosen.get("cpus_per_task", defaults.cpus_per_task),
        mem=chosen.get("mem", defaults.mem),
        time=chosen.get("time", defaults.time or declared.time),
        partition=chosen.get("partition", defaults.partitions.get(declared.resource_class)),
    )


def machine_resources(declared: Resources, chosen: dict[str, Any], nproc_per_node: int) -> JobResources:
    """This machine (subprocesses, containers on its engine): no GPUs are allocated (the step takes whatever
    devices the machine or the container has); a distributed step runs ``nproc_per_node`` processes."""
    return JobResources(
        resource_class=declared.resource_class,
        distributed=declared.distributed,
        nodes=chosen.get("nodes", declared.nodes) if declared.distributed else 1,
        gpus_per_node=0,
        nproc_per_node=chosen.get("nproc_per_node", nproc_per_node if declared.distributed else 1),
        cpus_per_task=chosen.get("cpus_per_task"),
        mem=chosen.get("mem"),
        time=chosen.get("time", declared.time),
        partition=chosen.get("partition"),
    )


def profile_step_values(profile: Profile, stage: Stage, step: Step, scale: str) -> dict[str, Any]:
    """What the profile's ``[steps...]`` tables set for one step at one scale.

    The most specific value wins: a table's ``scale.<scale>`` over any table's values for every scale, then
    ``[steps."<stage>.<step>"]`` (alias or name) over the bare ``[steps.<step>]`` — so ``[steps.training.scale.tiny]``
    keeps every stage's tiny run a smoke test even where ``[steps."stage0.training"]`` asks for 8 nodes.
    """
    keys = (step.name, f"{stage.alias}.{step.name}", f"{stage.name}.{step.name}")
    tables = [profile.steps[key] for key in dict.fromkeys(keys) if key in profile.steps]
    values: dict[str, Any] = {}
    for layer in [*tables, *(t.scale[scale] for t in tables if scale in t.scale)]:
        values.update(layer.model_dump(exclude_none=True, exclude={"scale"}))
    return values


def check_step_tables(profile: Profile, recipe: Recipe) -> None:
    """Every ``[steps.<key>]`` names a step (``training``) or a stage's step (``stage0.training``) of the recipe."""
    valid = {step.name for stage in recipe.stages for step in stage.steps}
    for stage in recipe.stages:
        for step in stage.steps:
            spellings = list(dict.fromkeys((f"{stage.alias}.{step.name}", f"{stage.name}.{step.name}")))
            valid.update(spellings)
            both = [key for key in spellings if key in profile.steps]
            if len(both) > 1:
                raise ProfileError(f'profile {profile.name}: [steps."{both[0]}"] and [steps."{both[1]}"] are one step')
    for key in profile.steps:
        if key not in valid:
            close = difflib.get_close_matches(key, sorted(valid), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid steps are {', '.join(sorted(valid))}"
            shown = f'"{key}"' if "." in key else key
            raise ProfileError(f"profile {profile.name}: [steps.{shown}] names no step of {recipe.name}: {hint}")


def profile_allocations(profile: Profile) -> tuple[dict[str, Any], list[str]]:
    """What ``profiles NAME`` shows: recipe -> ``<stage>.<step>`` -> scale -> resources (JSON), and the same compactly
    for people. A recipe the profile's ``[steps...]`` tables do not fit is skipped with a note (an error if none fits).
    """
    from nemotron.launcher.targets import load_recipe, recipe_modules

    document: dict[str, Any] = {}
    lines: list[str] = []
    errors: list[ProfileError] = []
    for name in recipe_modules():
        recipe = load_recipe(name)
        try:
            check_step_tables(profile, recipe)
        except ProfileError as err:
            errors.append(err)
            continue
        document[name] = {}
        lines.append(f"{name} on {profile.name} (nodes x GPUs per node, time limit):")
        for stage in recipe.stages:
            for step in stage.steps:
                per_scale = {scale: resolve_resources(stage, step, profile, scale) for scale in SCALES}
                document[name][f"{stage.name}.{step.name}"] = {s: r.model_dump() for s, r in per_scale.items()}
                lines.append(f"  {f'{stage.alias}.{step.name}':<22} {per_scale_text(per_scale)}")
    if errors and not document:
        raise errors[0]
    return document, lines + [f"note: {err}" for err in errors]


def per_scale_text(per_scale: dict[str, Any]) -> str:
    """Allocations by scale for people, equal ones grouped: ``tiny 1x8 GPU 00:30:00 · small/medium/full 8x8 GPU
    04:00:00`` (nodes x GPUs per node, time limit; ``1 node 02:00:00`` without GPUs)."""
    groups: dict[str, list[str]] = {}
    for scale, r in per_scale.items():
        text = f"{r.nodes}x{r.gpus_per_node} GPU {r.time}" if r.gpus_per_node else f"{r.nodes} node {r.time}"
        groups.setdefault(text, []).append(scale)
    return " · ".join(f"{'/'.join(scales)} {text}" for text, scales in groups.items())
