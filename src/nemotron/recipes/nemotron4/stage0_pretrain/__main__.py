"""Run nemotron4 stage0 in this process: data_curation -> training -> evaluation, wired by the recipe's declaration.

    python -m nemotron.recipes.nemotron4.stage0_pretrain --scale tiny --output-root runs/stage0

``--scale``/``--seed`` apply to every step unless set for one (``--train.seed 7``); stdout carries one JSON document
with the three artifacts; progress goes to stderr.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nemotron.recipes.nemotron4.stage0_pretrain import data_curation, evaluation, training
from nemotron.stage import StageOptions, chain_steps, declared_stage


@dataclass
class StageConfig(StageOptions):
    """nemotron4 stage0 (pretraining): curate data, train, evaluate."""

    data: data_curation.Config = field(default_factory=data_curation.Config)
    train: training.Config = field(default_factory=training.Config)
    eval: evaluation.Config = field(default_factory=evaluation.Config)


def main(stage: StageConfig) -> dict[str, Any]:
    return chain_steps(stage, *declared_stage(__package__))


if __name__ == "__main__":
    from nemotron.step import run_stage

    run_stage(main, StageConfig)
