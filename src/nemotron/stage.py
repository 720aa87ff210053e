"""A recipe stage in one process: data_curation -> training -> evaluation, each step's artifact wired into the next.

A stage module (``python -m nemotron.recipes.<recipe>.<stage>``) declares its StageConfig — top-level ``scale``,
``seed`` and ``output_root`` plus one Config per step (``data``, ``train``, ``eval``) — and calls ``run_three_steps``.
A later stage also gives the checkpoint it starts from (``init``: it feeds data_curation's tokenizer and training's
weights).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import ModuleType
from typing import Any

from nemotron.artifact import Artifact


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
    dataset = data_curation.main(step_config(stage, stage.data, "data_curation", **starts_from))
    trains_from = {"dataset_path": Path(dataset.path), "dataset_artifact": None}
    if init is not None:
        trains_from["init_checkpoint_path"] = Path(init.path)  # a path wins over a tracked name
    checkpoint = training.main(step_config(stage, stage.train, "training", **trains_from))
    results = evaluation.main(
        step_config(stage, stage.eval, "evaluation", checkpoint_path=Path(checkpoint.path), checkpoint_artifact=None)
    )
    return {"data_curation": dataset, "training": checkpoint, "evaluation": results}
