"""A recipe stage in one process: data_curation -> training -> evaluation, each step's artifact wired into the next.

A stage module (``python -m nemotron.recipes.<recipe>.<stage>``) declares its StageConfig — top-level ``scale``,
``seed`` and ``output_root`` plus one Config per step (``data``, ``train``, ``eval``) — and calls ``run_three_steps``.
A later stage calls ``run_from_checkpoint``: it starts from an earlier stage's checkpoint (``init``: it feeds
data_curation's tokenizer and training's weights) and compares its evaluation with that checkpoint's Results.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import ModuleType
from typing import Any

from nemotron.artifact import Artifact, recorded_provides
from nemotron.step import Placement, validate_step, will_carry


def step_config(stage: Any, config: Any, step: str, **wiring: Any) -> Any:
    """``config`` with the stage's scale/seed (unless set for this step), its output dir, and input artifact paths."""
    defaults = type(config)()
    inherited = [name for name in ("scale", "seed") if getattr(config, name) == getattr(defaults, name)]
    updates: dict[str, Any] = {name: getattr(stage, name) for name in inherited}
    if config.output_dir is None and stage.output_root is not None:
        updates["output_dir"] = Path(stage.output_root).expanduser().resolve() / step
    return dataclasses.replace(config, **updates, **wiring)


def run_three_steps(
    stage: Any,
    data_curation: ModuleType,
    training: ModuleType,
    evaluation: ModuleType,
    init: Artifact | None = None,
) -> dict[str, Artifact]:
    """The three artifacts, by step name."""
    starts_from = {} if init is None else {"checkpoint_path": Path(init.path), "checkpoint_artifact": None}
    trains_from = {} if init is None else {"init_checkpoint_path": Path(init.path)}  # a path wins over a tracked name
    configs = {
        "data_curation": step_config(stage, stage.data, "data_curation", **starts_from),
        "training": step_config(stage, stage.train, "training", **trains_from),
        "evaluation": step_config(stage, stage.eval, "evaluation"),
    }
    modules = {"data_curation": data_curation, "training": training, "evaluation": evaluation}
    validate_steps(modules, configs, recorded_provides(Path(init.path)) if init is not None else frozenset())
    dataset = data_curation.main(configs["data_curation"])
    checkpoint = training.main(
        dataclasses.replace(configs["training"], dataset_path=Path(dataset.path), dataset_artifact=None)
    )
    results = evaluation.main(
        dataclasses.replace(configs["evaluation"], checkpoint_path=Path(checkpoint.path), checkpoint_artifact=None)
    )
    return {"data_curation": dataset, "training": checkpoint, "evaluation": results}


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


def run_from_checkpoint(
    stage: Any, data_curation: ModuleType, training: ModuleType, evaluation: ModuleType
) -> dict[str, Artifact]:
    """A later stage: ``stage.init_checkpoint_path``/``_artifact`` (else the previous stage's JSON on stdin) is the
    checkpoint it starts from; the evaluation's baseline is settled (and checked) before the first step runs."""
    from nemotron.evaluation.baseline import stage_eval_config
    from nemotron.training.artifacts import Checkpoint

    init = Checkpoint.load(path=stage.init_checkpoint_path, tracked_artifact=stage.init_checkpoint_artifact)
    stage = dataclasses.replace(stage, eval=stage_eval_config(stage.eval, Path(init.path)))
    return run_three_steps(stage, data_curation, training, evaluation, init=init)
