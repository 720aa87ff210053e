"""Plans: a target + a profile -> a validated DAG of jobs whose output paths are known before anything runs.

Each job is one step: its own CLI (only non-default values), resolved resources, input and output artifact paths,
environment. The output path is ``<artifact_root>/<recipe>/<stage>/<step>/<scale>-<fingerprint>``, the fingerprint
hashing the step's config, its inputs' fingerprints and the code version; so a whole DAG can be submitted at once,
an existing complete output is reused, and a change upstream re-runs everything downstream. The code version hashed
is the content of the recipe's and nemotron's Python sources (``source_hash``).

What data carries flows down the plan too, so a step that needs what its inputs lack is refused before anything runs
(an evaluation task asking for held-out items a user's corpus does not have). A step module may define
``provides(config) -> frozenset[str]``: names of what its artifact will carry (the artifact records them as
``provides``); a job's inputs carry what their producers provide plus what those were made from (``will_carry``).
That set is the third argument of the step's one ``validate(config, placement, carried)``, the function its ``main``
calls first with what its input artifacts record (``recorded_provides``); the job keeps it (``Job.carried``).
Planned inputs are known from their Configs, inputs on disk from their metadata and lineage. The names are the
recipe's: the launcher only passes them along.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import importlib
import importlib.util
import json
import os
import shlex
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from nemotron.artifact import shown
from nemotron.declaration import Input, Recipe, Stage, Step, check_input_fields
from nemotron.errors import UserError
from nemotron.launcher.code_identity import CODE_DIGEST_ENV, code_digest, package_digest
from nemotron.launcher.inputs import ArtifactRef, find_input, is_complete, load_given_input
from nemotron.launcher.overrides import Override, OverrideError, cli_flags, parse_override, parse_values
from nemotron.launcher.profiles import Profile
from nemotron.launcher.resources import JobResources, check_step_tables, resolve_resources
from nemotron.launcher.sweeps import (
    Sweep,
    SweepError,
    SweepTask,
    check_max_parallel,
    parse_sweeps,
    task_name,
    task_table,
)
from nemotron.launcher.targets import Target, TargetError, resolve_target
from nemotron.scale import SCALES, check_scale
from nemotron.step import GPUSpec, Placement, config_snapshot, validate_step, will_carry

ARTIFACT_ROOT_ENV = "NEMOTRON_ARTIFACT_ROOT"


class ArrayTasks(BaseModel):
    """A job that is a job array (``nemotron.array``): its step runs as ``count`` tasks, ``indices`` of them still to
    run (those without a completion marker, or all with ``--force``), at most ``max_parallel`` at once."""

    count: int
    indices: list[int]
    max_parallel: int

    def ranges(self) -> str:
        """``indices`` in Slurm's ``--array`` syntax (``0-2,5``)."""
        from nemotron.array import index_ranges

        return index_ranges(self.indices)


class Job(BaseModel):
    name: str  # "<stage>.<step>", unique in a plan
    stage: str
    step: str
    module: str
    args: list[str]  # the step's CLI flags, non-default values only
    config: dict[str, Any]  # the full validated Config, JSON-ready
    resources: JobResources
    inputs: dict[str, Path] = Field(default_factory=dict)  # input name -> artifact directory
    depends_on: list[str] = Field(default_factory=list)  # names of jobs in this plan
    output: Path
    artifact_type: str
    fingerprint: str
    env: dict[str, str] = Field(default_factory=dict)  # non-secret environment
    reuse: bool = False  # its output already exists, complete, for this fingerprint
    # What its input artifacts carry, as its step's validate was given it at plan time (derived from the inputs, so
    # not fingerprinted itself).
    carried: list[str] = Field(default_factory=list)
    # What its step's validate estimated for it (a training job on GPUs: layout, memory per GPU, cost), as
    # ``{"lines": [...], **as_dict()}``; None for a step that estimates nothing.
    estimate: dict[str, Any] | None = None
    array: ArrayTasks | None = None  # None: one task
    sweep: SweepTask | None = None  # a task of a sweep (``sweeps``): its group, index and values; None: not swept

    def command(self, python: str = "python") -> list[str]:
        return [python, "-m", self.module, *self.args]


class Plan(BaseModel):
    recipe: str
    target: str
    scale: str
    profile: str
    executor: str
    artifact_root: Path
    code_version: str
    code: dict[str, str] = Field(default_factory=dict)  # package -> digest of its sources (what is fingerprinted)
    secret_names: list[str] = Field(default_factory=list)  # forwarded from the submitting shell, never stored
    created_at: _dt.datetime = Field(default_factory=lambda: _dt.datetime.now(_dt.UTC))
    jobs: list[Job]  # topological order

    def job(self, name: str) -> Job:
        for job in self.jobs:
            if name in (job.name, job.step):
                return job
        raise KeyError(name)

    @property
    def jobs_to_run(self) -> list[Job]:
        return [job for job in self.jobs if not job.reuse]


def build_plan(
    target_text: str,
    profile: Profile,
    scale: str = "tiny",
    overrides: typing.Sequence[str] = (),
    force: bool = False,
    artifact_root: str | Path | None = None,
    files_here: bool = True,
    sweeps: typing.Sequence[str] = (),
    max_parallel: int | None = None,
) -> Plan:
    """Resolve and validate everything a launch needs; raises ``UserError`` subclasses (one line each).
    ``files_here``: the jobs' filesystem is this machine's (not a cluster's through SSH), so the paths a person
    named in overrides (sources, a tokenizer) are checked now rather than by the job. ``sweeps``: ``--sweep``
    options (``sweeps``); ``max_parallel``: tasks of an array or a sweep at once (default: the profile's)."""
    from nemotron._code_version import code_version

    check_max_parallel(max_parallel)
    target = resolve_target(target_text)
    check_scale(scale)
    check_step_tables(profile, target.recipe)
    parsed = [parse_override(text) for text in overrides]
    by_step = _assign_overrides(parsed, target)
    max_parallel = max_parallel or profile.arrays.max_parallel
    sweep = parse_sweeps(sweeps, target, parsed, max_parallel, _config_class)
    root = _artifact_root(artifact_root, profile)
    code = {pkg: source_hash(pkg) for pkg in _packages(target)}
    env = {**profile.job_env(), ARTIFACT_ROOT_ENV: str(root), CODE_DIGEST_ENV: code_digest(code)}
    planner = _Planner(target, profile, scale, root, code_version(), env, force, files_here)
    planner.sweep, planner.max_parallel = sweep, max_parallel
    planner.source_hashes = code
    jobs = planner.plan(by_step)
    return Plan(
        recipe=target.recipe.name,
        target=target.text,
        scale=scale,
        profile=profile.name,
        executor=profile.executor,
        artifact_root=root,
        code_version=planner.code_version,
        code=code,
        secret_names=profile.secret_names(),
        jobs=jobs,
    )


# Kernel interfaces, mounted on every Linux machine: nothing can be stored there whatever permission checks say
# (root passes them), so such a root is refused at plan time rather than failing at the first mkdir.
KERNEL_DIRS = (Path("/proc"), Path("/sys"))


def _artifact_root(given: str | Path | None, profile: Profile) -> Path:
    """``--artifact-root`` (a string, so that '' is not silently the current directory), else the profile's."""
    if given is not None and not str(given).strip():
        raise UserError("--artifact-root is empty: give the directory for artifacts, or leave it out for the profile's")
    root = Path(given if given is not None else profile.resolved_artifact_root()).expanduser().absolute()
    normal = Path(os.path.normpath(root))
    for kernel_dir in KERNEL_DIRS:
        if normal == kernel_dir or kernel_dir in normal.parents:
            raise UserError(
                f"artifact root {shown(root)} is under {kernel_dir}, a kernel interface that stores no files: "
                "give a directory on a disk"
            )
    return root


def _assign_overrides(parsed: list[Override], target: Target) -> dict[tuple[str, str], list[Override]]:
    by_step: dict[tuple[str, str], list[Override]] = {}
    for override in parsed:
        matches = [
            (stage, step)
            for stage, step in target.selected
            if step.name == override.step and override.stage in (None, stage.name, stage.alias)
        ]
        if not matches:
            selected = ", ".join(f"{st.alias}.{sp.name}" for st, sp in target.selected)
            raise OverrideError(
                f"override {override.text!r} names no step of target {target.text}: its steps are {selected}"
            )
        for stage, step in matches:
            by_step.setdefault((stage.name, step.name), []).append(override)
    return by_step


class _Planner:
    """Walks the recipe in order; steps outside the target only resolve their existing outputs as inputs."""

    def __init__(self, target, profile, scale, root, code_version, env, force, files_here=True):
        self.target, self.profile, self.scale, self.root = target, profile, scale, root
        self.code_version, self.env, self.force, self.files_here = code_version, env, force, files_here
        self.outputs: dict[tuple[str, str], ArtifactRef] = {}
        self.provides: dict[str, frozenset[str]] = {}  # planned job -> what its artifact will carry
        self.source_hashes: dict[str, str] = {}
        self.sweep: Sweep | None = None
        self.max_parallel = profile.arrays.max_parallel
        self.task_outputs: dict[tuple[str, str], list[ArtifactRef]] = {}  # a step planned per sweep task: by task

    def plan(self, by_step: dict[tuple[str, str], list[Override]]) -> list[Job]:
        jobs: list[Job] = []
        last = max(self._order(st, sp) for st, sp in self.target.selected)
        for stage in self.target.recipe.stages:
            for step in stage.steps:
                if self._order(stage, step) > last:
                    break
                if self.target.includes(stage.name, step.name):
                    overrides = by_step.get((stage.name, step.name), [])
                    if self._per_task(stage, step, overrides):
                        jobs += self._tasks(stage, step, overrides)
                        continue
                    job = self._job(stage, step, overrides)
                    jobs.append(job)
                    ref = ArtifactRef(job.output, job.fingerprint, job.name, provides=self.provides[job.name])
                    self.outputs[(stage.name, step.name)] = ref
                else:
                    self._resolve_existing(stage, step)
        return jobs

    def _per_task(self, stage: Stage, step: Step, overrides: list[Override]) -> bool:
        """Whether the step is planned once per sweep task: it is the swept one, or reads one that is (an input a
        person gave by path or name is not the sweep's)."""
        if self.sweep is None:
            return False
        if (self.sweep.stage, self.sweep.step) == (stage.name, step.name):
            return True
        given = {o.field for o in overrides}
        return any(
            (spec.stage or stage.name, spec.step) in self.task_outputs
            for spec in step.inputs
            if not given & {spec.path_field, spec.artifact_field}
        )

    def _tasks(self, stage: Stage, step: Step, overrides: list[Override]) -> list[Job]:
        """The step's job for each sweep task: the swept step with that task's values, a downstream one reading
        that task's outputs; each its own Config, fingerprint and output."""
        sweep, where = self.sweep, f"{stage.name}.{step.name}"
        swept = (sweep.stage, sweep.step) == (stage.name, step.name)
        jobs: list[Job] = []
        for index, values in enumerate(sweep.tasks):
            for producer, refs in self.task_outputs.items():  # what task ``index`` of an upstream group made
                self.outputs[producer] = refs[index]
            job = self._job(stage, step, [*overrides, *(values if swept else ())])
            if job.array is not None:
                raise SweepError(
                    f"{where} runs as an array of {job.array.count} tasks already and cannot be planned per sweep "
                    f"task: sweep a step that runs as one task, or give it shards=1"
                )
            same = next((other for other in jobs if other.output == job.output), None)
            if same is not None:
                raise SweepError(
                    f"sweep tasks {same.sweep.index} and {index} of {where} are the same configuration "
                    f"({_values_text(same.sweep.values)} and {_values_text(sweep.values(index))}): give distinct values"
                )
            task = SweepTask(
                group=where, index=index, count=len(sweep.tasks), values=sweep.values(index),
                max_parallel=self.max_parallel,
            )  # fmt: skip
            jobs.append(job.model_copy(update={"name": task_name(where, index), "sweep": task}))
        refs = [ArtifactRef(job.output, job.fingerprint, job.name, provides=self.provides[where]) for job in jobs]
        self.task_outputs[(stage.name, step.name)] = refs
        return jobs

    def _order(self, stage: Stage, step: Step) -> tuple[int, int]:
        return self.target.recipe.stages.index(stage), stage.steps.index(step)

    # ----------------------------------------------------------------------------------------------- one job
    def _job(self, stage: Stage, step: Step, overrides: list[Override]) -> Job:
        config_cls = _config_class(step)
        where = f"{stage.name}.{step.name}"
        for override in overrides:
            if override.field == "output_dir":
                raise OverrideError(f"{override.text!r}: output_dir is planned by the launcher; use --artifact-root")
        values: dict[str, Any] = {"scale": self.scale} | parse_values(config_cls, overrides, where)
        inputs = {spec.name: ref for spec in step.inputs if (ref := self._input(stage, step, spec, values))}
        for spec in step.inputs:
            values.pop(spec.artifact_field, None)  # a tracked name was resolved to its path by _input
            if spec.name in inputs:
                values[spec.path_field] = inputs[spec.name].path
        fingerprint = self._fingerprint(step, values, inputs)
        output = self.root / self.target.recipe.name / stage.name / step.name / f"{self.scale}-{fingerprint}"
        config = _instantiate(config_cls, {**values, "output_dir": output}, where)
        resources = resolve_resources(stage, step, self.profile, self.scale)
        carried = frozenset().union(*(ref.carried() for ref in inputs.values()))
        estimate = _validate(step, config, self._placement(resources), carried, where)
        self._check_segments(estimate, resources, where)
        self.provides[where] = _provided(step, config, carried)
        reuse = not self.force and is_complete(output, step.artifact_type)
        array = self._array(step, config, output, reuse)
        return Job(
            name=where,
            stage=stage.name,
            step=step.name,
            module=step.module,
            args=cli_flags(config),
            config=config_snapshot(config),
            resources=resources,
            inputs={name: ref.path for name, ref in inputs.items()},
            depends_on=[ref.job for ref in inputs.values() if ref.job is not None],
            output=output,
            artifact_type=step.artifact_type,
            fingerprint=fingerprint,
            env={**self.env, **self.profile.fault_tolerance.job_env(step.name), **_array_env(array, self.force)},
            reuse=reuse,
            array=array,
            carried=sorted(carried),
            estimate={"lines": estimate.lines(), **estimate.as_dict()} if estimate is not None else None,
        )

    def _array(self, step: Step, config: Any, output: Path, reuse: bool) -> ArrayTasks | None:
        """The job's array, if its step runs as several tasks: all of them with --force, else those without a
        completion marker where the launcher sees the outputs (through SSH: all, and the done ones return at once).
        All markers there but no artifact (the last task died writing it): task 0 again, which writes it."""
        from nemotron.array import array_tasks, missing_tasks

        count = array_tasks(importlib.import_module(step.module), config)
        if count <= 1:
            return None
        todo = list(range(count)) if self.force or reuse or not self.files_here else missing_tasks(output, count)
        return ArrayTasks(count=count, indices=todo or [0], max_parallel=self.max_parallel)

    def _placement(self, resources: JobResources) -> Placement:
        """The job's placement at plan time: its ranks, whether its files are here, its GPUs as the profile states."""
        return job_placement(resources, self.files_here, gpu_spec(self.profile, resources))

    def _check_segments(self, estimate: Any, resources: JobResources, where: str) -> None:
        """A run that needs more time-limit segments than the profile allows is refused now, not in week three."""
        segments, limit = getattr(estimate, "segments", None), self.profile.fault_tolerance.max_segments
        if segments is not None and segments > limit:
            raise OverrideError(
                f"{where} needs about {segments} time-limit segments of {resources.time} ({estimate.cost.text()}), "
                f"more than fault_tolerance.max_segments = {limit}: give it more nodes, a longer time limit or "
                "fewer --train-iters, or raise max_segments in the profile"
            )

    def _input(self, stage: Stage, step: Step, spec: Input, values: dict[str, Any]) -> ArtifactRef | None:
        producer = (spec.stage or stage.name, spec.step)
        given_path, given_name = values.get(spec.path_field), values.get(spec.artifact_field)
        if given_path is not None or given_name is not None:
            producer_step = self.target.recipe.stage(producer[0]).step(producer[1])
            return load_given_input(given_path, given_name, producer_step.artifact_type, self.root)
        if producer in self.outputs:
            ref = self.outputs[producer]
            return None if spec.optional and not ref.made_from_plan else ref
        if spec.optional:
            return None
        raise TargetError(
            f"{stage.name}.{step.name} needs a {spec.name} artifact from {producer[0]}.{producer[1]} and none was "
            f"found under {self.root}: run {self.target.recipe.name}.{producer[0]} first or pass "
            f"{step.name}.{spec.path_field}=DIR"
        )

    def _resolve_existing(self, stage: Stage, step: Step) -> None:
        """An upstream step outside the target: its planned output if complete, else its newest matching one."""
        made_from: list[Path] | None = None
        try:
            values: dict[str, Any] = {"scale": self.scale}
            inputs = {spec.name: self.outputs[(spec.stage or stage.name, spec.step)] for spec in step.inputs}
            made_from = [ref.path for ref in inputs.values()]
            for spec in step.inputs:
                values[spec.path_field] = inputs[spec.name].path
            fingerprint = self._fingerprint(step, values, inputs)
            planned = self.root / self.target.recipe.name / stage.name / step.name / f"{self.scale}-{fingerprint}"
            if is_complete(planned, step.artifact_type):
                self.outputs[(stage.name, step.name)] = ArtifactRef(planned, fingerprint, None)
                return
        except KeyError:  # one of its own inputs is missing: it cannot be the planned one
            pass
        step_dir = self.root / self.target.recipe.name / stage.name / step.name
        found = find_input(step_dir, step.artifact_type, self.scale, made_from)
        if found is not None:
            self.outputs[(stage.name, step.name)] = found

    def _fingerprint(self, step: Step, values: dict[str, Any], inputs: dict[str, ArtifactRef]) -> str:
        wired = {f for spec in step.inputs for f in (spec.path_field, spec.artifact_field)}
        document = {
            "module": step.module,
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in sorted(values.items()) if k not in wired},
            "inputs": {name: ref.fingerprint for name, ref in sorted(inputs.items())},
            # The code is identified by the content of its sources, not by the git commit: a commit that touches only
            # docs or tests must not invalidate every artifact, and an uncommitted edit of a step must.
            "code": self.source_hashes,
        }
        return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _packages(target: Target) -> list[str]:
    return sorted({"nemotron"} | {step.module.split(".")[0] for stage in target.recipe.stages for step in stage.steps})


@functools.cache
def source_hash(package: str) -> str:
    """A digest of every ``.py`` file of a top-level package (path and content), ~100 files in a few ms; the same
    digest ``nemotron-launch build`` records for the copy in an image (``code_identity``)."""
    return package_digest(package)


def _config_class(step: Step) -> type:
    try:
        module = importlib.import_module(step.module)
    except ModuleNotFoundError as exc:
        if exc.name and step.module.startswith(exc.name):
            raise TargetError(f"step module {step.module} does not exist (is the recipe installed?)") from None
        raise
    config_cls = getattr(module, "Config", None)
    if config_cls is None:
        raise TargetError(f"step module {step.module} defines no Config dataclass")
    check_input_fields(step, config_cls, step.module)  # every declared input has a Config field to land in
    return config_cls


def _instantiate(config_cls: type, values: dict[str, Any], where: str) -> Any:
    """Build the Config, so its own checks (``__post_init__``) run before anything is submitted."""
    try:
        return config_cls(**values)
    except UserError as exc:
        raise OverrideError(f"invalid config for {where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise OverrideError(f"invalid config for {where}: {exc}") from None


def gpu_spec(profile: Profile, resources: JobResources) -> GPUSpec | None:
    """What the job's GPUs are, as the profile's ``[gpu]`` table says (None for a job without GPUs)."""
    gpu = profile.gpu
    return GPUSpec(gpu.memory_gb, gpu.peak_tflops, gpu.mfu) if resources.gpus_per_node > 0 else None


def default_estimates(profile: Profile, recipe: Recipe) -> dict[str, dict[str, Any]]:
    """What each step of ``recipe`` estimates for itself on ``profile`` at every scale with its default Config (a
    training job: layout, memory per GPU, cost), as ``profiles NAME`` shows it: ``{job: {scale: estimate}}``, an
    estimate being the dry-run's ``{"lines": [...], ...}`` or ``{"error": one line}`` for a job that cannot start."""
    found: dict[str, dict[str, Any]] = {}
    for stage in recipe.stages:
        for step in stage.steps:
            where = f"{stage.name}.{step.name}"
            for scale in SCALES:
                resources = resolve_resources(stage, step, profile, scale)
                placement = job_placement(resources, False, gpu_spec(profile, resources))
                try:
                    config = _instantiate(_config_class(step), {"scale": scale}, where)
                    estimate = _validate(step, config, placement, frozenset(), where)
                except UserError as err:
                    found.setdefault(where, {})[scale] = {"error": str(err)}
                    continue
                if estimate is not None:
                    found.setdefault(where, {})[scale] = {"lines": estimate.lines(), **estimate.as_dict()}
    return found


def job_placement(resources: JobResources, files_here: bool = True, gpu: GPUSpec | None = None) -> Placement:
    """The ``Placement`` a job's step sees at start: nodes x ranks per node, and the GPUs Slurm gives each node; at
    plan time also what those GPUs are (``gpu``) and the job's time limit.

    0 GPUs is "not known" rather than "none": a local or docker run takes whatever devices its machine has.
    """
    return Placement(
        world_size=resources.nodes * resources.nproc_per_node,
        gpus_per_node=resources.gpus_per_node or None,
        files_here=files_here,
        gpu=gpu,
        time_limit_s=resources.time_limit_s,
    )


def _validate(step: Step, config: Any, placement: Placement, carried: frozenset[str], where: str) -> Any:
    """The step's own ``validate(config, placement, carried)`` — the function its ``main`` calls first — with the job's
    placement and what its inputs will carry: a batch that does not divide over the planned ranks, or a task whose data
    the planned dataset lacks, fails here, not after Slurm allocated them. Returns what it estimated for the job (an
    ``estimate`` with ``lines()``, ``as_dict()`` and ``segments``: a training job's), or None."""
    try:
        checked = validate_step(importlib.import_module(step.module), config, placement, carried)
        return getattr(checked, "estimate", None)
    except UserError as exc:
        raise OverrideError(f"invalid config for {where}: {exc}") from None


def _array_env(array: ArrayTasks | None, force: bool) -> dict[str, str]:
    """What an array job's tasks are told besides their index: how many tasks there are, and to redo their part."""
    from nemotron.array import ARRAY_COUNT_ENV, ARRAY_REDO_ENV

    if array is None:
        return {}
    return {ARRAY_COUNT_ENV: str(array.count), **({ARRAY_REDO_ENV: "1"} if force else {})}


def _values_text(values: dict[str, str]) -> str:
    return " ".join(f"{name}={value!r}" for name, value in values.items())


def _provided(step: Step, config: Any, carried: frozenset[str]) -> frozenset[str]:
    """What the job's artifact will carry for the jobs downstream: what its inputs carry and its step ``provides``."""
    return will_carry(importlib.import_module(step.module), config, carried)


def describe(plan: Plan) -> str:
    """The plan for people: one block per job (stderr)."""
    lines = [
        f"plan {plan.target}: {len(plan.jobs)} job(s), {len(plan.jobs_to_run)} to run, scale {plan.scale}, "
        f"profile {plan.profile} ({plan.executor}), artifacts under {plan.artifact_root}"
    ]
    for job in plan.jobs:
        r = job.resources
        where = f"{r.nodes} node(s) x {r.nproc_per_node} proc, {r.resource_class}" + (
            f", {r.gpus_per_node} GPU/node" if r.gpus_per_node else ""
        )
        lines.append(f"  {job.name}  [{'reuse' if job.reuse else 'run'}]  {where}, time {r.time}")
        lines.append(f"    $ {shlex.join(job.command())}")
        if job.array is not None:
            a = job.array
            todo = f"{len(a.indices)} of {a.count} task(s) to run ({a.ranges()})"
            lines.append(f"    array: {todo}, {a.max_parallel} at once")
        if job.sweep is not None:
            lines.append(f"    sweep task {job.sweep.index} of {job.sweep.group}: {_values_text(job.sweep.values)}")
        if job.depends_on:
            lines.append(f"    after: {', '.join(job.depends_on)}")
        lines += [f"    {line}" for line in (job.estimate or {}).get("lines", [])]
    lines += task_table(plan)
    priced = [job.estimate["cost"] for job in plan.jobs_to_run if job.estimate and job.estimate.get("cost")]
    if priced:
        gpu_hours, wall = sum(c["gpu_hours"] for c in priced), sum(c["wall_hours"] for c in priced)
        lines.append(f"  total: {gpu_hours:,.0f} GPU-hours; {wall / 24:,.1f} days of training jobs one after another")
    return "\n".join(lines)
