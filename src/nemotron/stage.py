"""A recipe stage in one process: its steps in order, each step's artifact wired into the next by the declaration.

A stage module (``python -m nemotron.recipes.<recipe>.<stage>``) is ``StageConfig, main = stage_module(__package__)``:
its StageConfig — top-level ``scale``, ``seed`` and ``output_root`` (``StageOptions``) plus one field per step holding
that step's Config, named by the declaration's ``Step.stage_option`` (``data``, ``train``, ``eval`` for a three-step
stage) — and a ``main`` that runs ``chain_steps``.
The wiring is not written here: the recipe's declaration (``nemotron.declaration``) says which artifact feeds which
``<input>_path`` field, the same declaration the launcher plans from. A stage that starts from an earlier stage's
checkpoint (``init_checkpoint_path``/``_artifact``, else that stage's JSON on stdin) gives it to every step that
declares an input from that stage's training, and compares its evaluation with that checkpoint's Results.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from nemotron.artifact import Artifact, load_typed, recorded_provides
from nemotron.declaration import Recipe, Stage, Step, check_input_fields
from nemotron.scale import Scale
from nemotron.step import Placement, is_rank_zero, record_step, resolve_output_dir, validate_step, will_carry

BASELINE_INPUT = "baseline"  # an evaluation's Results of the model the stage started from (``three_step_stage``)


@dataclass
class StageOptions:
    """The options every stage module has; its StageConfig adds one field per step."""

    scale: Scale = "tiny"
    seed: int = 1234
    output_root: Path | None = None
    """Directory for every step's output (DIR/<step>)."""


@dataclass
class LaterStageOptions(StageOptions):
    """A stage that starts from an earlier stage's checkpoint."""

    init_checkpoint_path: Path | None = None
    """The earlier stage's Checkpoint directory (else --init-checkpoint-artifact, else its JSON on stdin)."""
    init_checkpoint_artifact: str | None = None


def declared_stage(package: str) -> tuple[Recipe, str]:
    """The recipe declaring the stage whose package is ``package`` (``<recipe package>.<stage>``), read from the
    recipe's own ``recipe.py`` (a recipe reads its declaration, never the launcher), and the stage's name."""
    recipe_package, _, stage_name = package.rpartition(".")
    recipe = importlib.import_module(f"{recipe_package}.recipe").RECIPE
    if recipe.stage(stage_name) is None:
        raise LookupError(f"{recipe_package}.recipe declares no stage {stage_name}")
    return recipe, stage_name


def stage_module(package: str) -> tuple[type, Callable[[Any], dict[str, Artifact]]]:
    """What a stage module (``<recipe>/<stage>/__main__.py``) is, from its recipe's declaration: its ``StageConfig``
    (``StageOptions``, or ``LaterStageOptions`` for a stage that starts from an earlier one, plus one field per step
    holding that step's Config, named by ``Step.stage_option``) and its ``main`` (``chain_steps``)."""
    recipe, stage_name = declared_stage(package)
    declared = recipe.stage(stage_name)
    later = any(spec.stage for step in declared.steps for spec in step.inputs)
    fields = []
    for step in declared.steps:
        step_config_cls = importlib.import_module(step.module).Config
        fields.append((step.stage_option, step_config_cls, dataclasses.field(default_factory=step_config_cls)))
    base = LaterStageOptions if later else StageOptions
    config_cls = dataclasses.make_dataclass("StageConfig", fields, bases=(base,))
    steps = " -> ".join(step.name for step in declared.steps)
    config_cls.__doc__ = f"{recipe.name} {declared.alias} ({declared.name}): {steps}"

    def main(stage: Any) -> dict[str, Artifact]:
        """The stage's artifacts, by step name."""
        return chain_steps(stage, recipe, stage_name)

    return config_cls, main


def step_config(stage: Any, config: Any, step: str, **wiring: Any) -> Any:
    """``config`` with the stage's scale/seed (unless set for this step), its output dir, and input artifact paths."""
    defaults = type(config)()
    inherited = [name for name in ("scale", "seed") if getattr(config, name) == getattr(defaults, name)]
    updates: dict[str, Any] = {name: getattr(stage, name) for name in inherited}
    if config.output_dir is None and stage.output_root is not None:
        updates["output_dir"] = Path(stage.output_root).expanduser().resolve() / step
    return dataclasses.replace(config, **updates, **wiring)


def wire(config: Any, step: Step, artifacts: Mapping[tuple[str | None, str], Path]) -> Any:
    """``config`` with each declared input found in ``artifacts`` (keyed by producing (stage, step); None = this
    stage) set as its ``<input>_path``; a path given wins over a tracked name, which is cleared."""
    fields = {f.name for f in dataclasses.fields(config)}
    updates: dict[str, Any] = {}
    for spec in step.inputs:
        path = artifacts.get((spec.stage, spec.step))
        if path is not None:
            updates[spec.path_field] = Path(path)
            if spec.artifact_field in fields:
                updates[spec.artifact_field] = None
    return dataclasses.replace(config, **updates)


def chain_steps(stage: Any, recipe: Recipe, stage_name: str) -> dict[str, Artifact]:
    """Every step of the recipe's stage ``stage_name`` in order, in this process; the artifacts by step name.

    A later stage (one whose steps declare inputs from another stage) starts from ``stage.init_checkpoint_path`` /
    ``_artifact`` (else the earlier stage's JSON on stdin): that Checkpoint feeds every input declared from the
    earlier stage's training, and its Results (given, or piped beside it) are the evaluation's ``baseline``, settled
    before the first step runs.
    """
    declared = recipe.stage(stage_name)
    modules = {step.name: importlib.import_module(step.module) for step in declared.steps}
    configs = {}
    for step in declared.steps:
        config = getattr(stage, step.stage_option)
        check_input_fields(step, type(config), f"{declared.name}.{step.name}")
        config = step_config(stage, config, step.name)
        if config.output_dir is None:  # named after the declared step: two steps may share one module
            default = resolve_output_dir(None, recipe.name, declared.name, step.name, config.scale, config.seed)
            config = dataclasses.replace(config, output_dir=default)
        configs[step.name] = config
    given, carried = _earlier_stage(stage, recipe, declared, configs)
    configs = {step.name: wire(configs[step.name], step, given) for step in declared.steps}
    validate_steps(modules, configs, carried)
    made: dict[str, Artifact] = {}
    for step in declared.steps:
        inputs = {(None, name): Path(artifact.path) for name, artifact in made.items()}
        made[step.name] = modules[step.name].main(wire(configs[step.name], step, inputs))
        if is_rank_zero():
            record_step(step.name, made[step.name])
    return made


def _earlier_stage(stage: Any, recipe: Recipe, declared: Stage, configs: dict[str, Any]) -> tuple[dict, frozenset[str]]:
    """The earlier stage's artifacts this stage starts from, keyed (stage, step), and what they carry; a baseline
    is settled in ``configs`` (in place). Nothing for a first stage."""
    starts_from = [s for step in declared.steps for s in step.inputs if s.stage and s.name != BASELINE_INPUT]
    if not starts_from:
        return {}, frozenset()
    from nemotron.evaluation.baseline import stage_eval_config

    producer = recipe.stage(starts_from[0].stage).step(starts_from[0].step)
    init = load_typed(producer.artifact_type, stage.init_checkpoint_path, stage.init_checkpoint_artifact)
    for step in declared.steps:
        if any(spec.name == BASELINE_INPUT for spec in step.inputs):
            configs[step.name] = stage_eval_config(configs[step.name], Path(init.path))
    # The checkpoint is what the stage starts from: it feeds every input declared from the earlier stage's training.
    given = {(spec.stage, spec.step): Path(init.path) for spec in starts_from}
    return given, recorded_provides(Path(init.path))


def validate_steps(modules: dict[str, ModuleType], configs: dict[str, Any], carried: frozenset[str]) -> None:
    """Each step's own ``validate`` (the one its ``main`` calls first) before the first step runs, with this process's
    placement and what each step's inputs will carry — ``carried`` by the stage's own input (an earlier stage's
    checkpoint), then what each step adds (``provides``), as the planner reckons it: a bad ``--train.lr``, or an
    ``--eval.tasks`` the curated data will not feed, fails before data_curation spends its time. Inputs a step has yet
    to receive are unset here; its ``main`` validates again once they are wired, with what they record."""
    placement = Placement.from_environment()
    for name, module in modules.items():  # in order: each step's input is the artifact of the one before
        validate_step(module, configs[name], placement, carried)
        carried = will_carry(module, configs[name], carried)
