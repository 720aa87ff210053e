"""The vocabulary of a recipe declaration: stages, steps, how artifacts wire into configs, default resources.

Part of the recipe author's kit (``docs/adding-a-recipe.md``): a recipe module (``nemotron/recipes/<recipe>/recipe.py``)
builds one ``Recipe`` from these frozen dataclasses and nothing else. It must stay light (no torch, no pydantic)
because the launcher imports it to plan, and a step module is only named by its dotted path here, never imported,
until the plan validates its Config. The one declaration is read twice: by the launcher's planner (a DAG of jobs)
and by the in-process stage chaining (``nemotron.stage``), so both wire the same inputs into the same Config fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from nemotron.errors import UserError
from nemotron.scale import SCALES

ResourceClass = Literal["cpu", "gpu"]
SCALED_FIELDS = ("nodes", "gpus_per_node", "time")  # what may differ from one scale to another


@dataclass(frozen=True)
class Resources:
    """What one step asks for by default; a profile's ``[steps.<step>]`` tables override any of it.

    The fields are the allocation at every scale; ``scales`` changes some of them at one scale, e.g.
    ``scales={"tiny": {"time": "00:30:00"}}``. ``at(scale)`` is the allocation at that scale.
    """

    resource_class: ResourceClass = "cpu"
    nodes: int = 1
    gpus_per_node: int = 0
    time: str = "01:00:00"
    # A distributed step runs one process per GPU (torchrun locally, one srun task per GPU on Slurm).
    distributed: bool = False
    scales: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for scale, changes in self.scales.items():
            if scale not in SCALES:
                raise ValueError(f"Resources scales: {scale!r} is not a scale ({', '.join(SCALES)})")
            unknown = set(changes) - set(SCALED_FIELDS)
            if unknown:
                raise ValueError(f"Resources scales[{scale!r}]: {sorted(unknown)} may not vary by scale")

    def at(self, scale: str) -> Resources:
        return dataclasses.replace(self, **self.scales.get(scale, {}), scales={})


@dataclass(frozen=True)
class Input:
    """An input artifact of a step, wired into the step's Config as ``<name>_path`` (and ``<name>_artifact``).

    ``step`` names the producing step; ``stage`` is None for the same stage, or another stage's name (e.g. stage1's
    training starts from stage0's checkpoint through ``Input("init_checkpoint", "training", stage="stage0_pretrain")``).
    ``optional`` inputs are wired when their producer is planned or found, and left unset otherwise.
    """

    name: str
    step: str
    stage: str | None = None
    optional: bool = False

    @property
    def path_field(self) -> str:
        return f"{self.name}_path"

    @property
    def artifact_field(self) -> str:
        return f"{self.name}_artifact"


@dataclass(frozen=True)
class Step:
    name: str
    module: str  # dotted path of the step module, run as ``python -m <module>``
    artifact_type: str  # the Artifact subclass the step writes (checked when reusing an output)
    inputs: tuple[Input, ...] = ()
    resources: Resources = field(default_factory=Resources)
    option: str = ""  # the stage module's field (and flag prefix) holding this step's Config; "" = the step's name

    @property
    def stage_option(self) -> str:
        return self.option or self.name


class DeclarationError(UserError):
    pass


def check_input_fields(step: Step, config_cls: type, where: str) -> None:
    """Every declared input must land somewhere: the step's Config has its ``<input>_path`` field. A declaration that
    names an input its Config cannot take would otherwise be dropped silently (and the step run without it)."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    for spec in step.inputs:
        if spec.path_field not in fields:
            raise DeclarationError(
                f"{where} declares input {spec.name!r} (from {spec.stage or 'this stage'}.{spec.step}), but its Config "
                f"{config_cls.__module__}.{config_cls.__qualname__} has no {spec.path_field} field: add the field or "
                "remove the input"
            )


@dataclass(frozen=True)
class Stage:
    name: str  # package name, e.g. "stage0_pretrain"
    alias: str  # short target name, e.g. "stage0"
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        names = [s.name for s in self.steps]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"stage {self.name}: steps must be one or more distinct names, got {names}")
        for position, step in enumerate(self.steps):  # in order: a step's same-stage inputs come from earlier steps
            for spec in step.inputs:
                if spec.stage is None and spec.step not in names[:position]:
                    raise ValueError(
                        f"stage {self.name}: step {step.name} takes {spec.name!r} from {spec.step}, which is not "
                        f"an earlier step of the stage ({', '.join(names[:position]) or 'none'})"
                    )

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)


@dataclass(frozen=True)
class Recipe:
    name: str
    package: str  # dotted package holding the stages, e.g. "nemotron.recipes.nano2"
    stages: tuple[Stage, ...]
    description: str = ""

    def stage(self, name_or_alias: str) -> Stage | None:
        return next((s for s in self.stages if name_or_alias in (s.name, s.alias)), None)


# One node at every scale (a cluster profile spreads a step over more, per scale); tiny is a smoke test.
SMOKE_TEST = {"tiny": {"time": "00:30:00"}}
CPU = Resources("cpu", time="02:00:00", scales=SMOKE_TEST)
GPU_TRAINING = Resources(
    "gpu",
    nodes=1,
    gpus_per_node=8,
    time="04:00:00",
    distributed=True,
    scales={**SMOKE_TEST, "small": {"time": "02:00:00"}},
)
GPU_EVALUATION = Resources("gpu", nodes=1, gpus_per_node=1, time="01:00:00", scales=SMOKE_TEST)


def three_step_stage(
    package: str,
    name: str,
    alias: str,
    init_from: str | None = None,
    training: Resources = GPU_TRAINING,
    dataset_type: str = "Dataset",
) -> Stage:
    """The data_curation -> training -> evaluation stage most recipe stages are (a stage of any other shape is a
    ``Stage`` of its own ``Step``s: the planner and ``nemotron.stage`` take any number of steps).

    ``init_from`` names an earlier stage whose checkpoint seeds this stage's training (``init_checkpoint_path``) and
    is also given to data_curation (``checkpoint_path``: a later stage tokenizes with the model's own vocabulary);
    that stage's evaluation Results, when planned or found, become this stage's evaluation baseline (``baseline_path``:
    compared with, and recorded so the last Results' lineage reaches every artifact of the recipe).
    ``dataset_type`` is the Artifact subclass data_curation writes (e.g. ``PreferenceDataset`` for alignment).
    Adding a stage to a recipe is then one call: data, not code.
    """
    training_inputs = [Input("dataset", "data_curation")]
    curation_inputs: tuple[Input, ...] = ()
    evaluation_inputs = [Input("checkpoint", "training")]
    if init_from is not None:
        training_inputs.append(Input("init_checkpoint", "training", stage=init_from))
        curation_inputs = (Input("checkpoint", "training", stage=init_from),)
        evaluation_inputs.append(Input("baseline", "evaluation", stage=init_from, optional=True))
    return Stage(
        name=name,
        alias=alias,
        steps=(
            Step("data_curation", f"{package}.{name}.data_curation", dataset_type, curation_inputs, CPU, "data"),
            Step("training", f"{package}.{name}.training", "Checkpoint", tuple(training_inputs), training, "train"),
            Step(
                "evaluation",
                f"{package}.{name}.evaluation",
                "Results",
                tuple(evaluation_inputs),
                GPU_EVALUATION,
                "eval",
            ),
        ),
    )
