"""Run nano2 stage0 in this process: data_curation -> training -> evaluation, each step's artifact wired into the next.

    python -m nemotron.recipes.nano2.stage0_pretrain --scale tiny
    python -m nemotron.recipes.nano2.stage0_pretrain --scale tiny --seed 7 --output-root runs/s7 --train.lr 3e-3

Top-level ``--scale`` and ``--seed`` apply to all three steps (a step keeps a value given explicitly for it, e.g.
``--eval.seed 5``); ``--output-root DIR`` puts the steps' outputs in ``DIR/<step>``. stdout carries one JSON document
with the three artifacts; progress goes to stderr.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemotron.recipes.nano2.stage0_pretrain import data_curation, evaluation, training
from nemotron.scale import Scale


@dataclass
class StageConfig:
    """nano2 stage0 (pretraining): curate data, train, evaluate."""

    scale: Scale = "tiny"
    seed: int = 1234
    output_root: Path | None = None
    """Directory for all three steps' outputs (DIR/data_curation, DIR/training, DIR/evaluation)."""
    data: data_curation.Config = field(default_factory=data_curation.Config)
    train: training.Config = field(default_factory=training.Config)
    eval: evaluation.Config = field(default_factory=evaluation.Config)


def step_config(stage: StageConfig, config: Any, step: str, **wiring: Any) -> Any:
    """``config`` with the stage's scale/seed (unless set for this step), its output dir, and input artifact paths."""
    defaults = type(config)()
    inherited = [name for name in ("scale", "seed") if getattr(config, name) == getattr(defaults, name)]
    updates: dict[str, Any] = {name: getattr(stage, name) for name in inherited}
    if config.output_dir is None and stage.output_root is not None:
        updates["output_dir"] = Path(stage.output_root).expanduser().resolve() / step
    return dataclasses.replace(config, **updates, **wiring)


def main(stage: StageConfig) -> dict[str, Any]:
    """The three artifacts, by step name."""
    dataset = data_curation.main(step_config(stage, stage.data, "data_curation"))
    checkpoint = training.main(
        step_config(stage, stage.train, "training", dataset_path=Path(dataset.path), dataset_artifact=None)
    )
    results = evaluation.main(
        step_config(stage, stage.eval, "evaluation", checkpoint_path=Path(checkpoint.path), checkpoint_artifact=None)
    )
    return {"data_curation": dataset, "training": checkpoint, "evaluation": results}


if __name__ == "__main__":
    from nemotron.step import run_stage

    run_stage(main, StageConfig)
