"""Run nemotron4 stage1 in this process, starting from a stage0 Checkpoint (wired by the recipe's declaration).

    python -m nemotron.recipes.nemotron4.stage1_instruction_tuning --init-checkpoint-path STAGE0/training

Without ``--init-checkpoint-*`` the checkpoint (and stage0's Results, the evaluation's baseline) are read from
stage0's JSON on stdin: ``python -m ...stage0_pretrain | python -m ...stage1_instruction_tuning``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nemotron.recipes.nemotron4.stage1_instruction_tuning import data_curation, evaluation, training
from nemotron.stage import LaterStageOptions, chain_steps, declared_stage


@dataclass
class StageConfig(LaterStageOptions):
    """nemotron4 stage1 (instruction tuning): curate chat data, fine-tune the stage0 model, evaluate both."""

    data: data_curation.Config = field(default_factory=data_curation.Config)
    train: training.Config = field(default_factory=training.Config)
    eval: evaluation.Config = field(default_factory=evaluation.Config)


def main(stage: StageConfig) -> dict[str, Any]:
    return chain_steps(stage, *declared_stage(__package__))


if __name__ == "__main__":
    from nemotron.step import run_stage

    run_stage(main, StageConfig)
