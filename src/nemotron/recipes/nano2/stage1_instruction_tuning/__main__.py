"""Run nano2 stage1 in this process: data_curation -> training -> evaluation, starting from a stage0 Checkpoint.

    python -m nemotron.recipes.nano2.stage1_instruction_tuning --scale tiny --init-checkpoint-path STAGE0/training
    python -m nemotron.recipes.nano2.stage1_instruction_tuning --init-checkpoint-artifact pretrain-checkpoint:latest

The stage0 checkpoint feeds data_curation (tokenizer, sequence length) and training (initial weights); without
``--init-checkpoint-*`` it is read from stdin (stage0's JSON). Top-level ``--scale``/``--seed`` apply to all steps
unless set for a step; ``--output-root DIR`` puts the steps' outputs in ``DIR/<step>``.
``--eval.baseline-path STAGE0/evaluation`` (stage0's Results of that checkpoint; taken from stdin when the
piped stage0 output carries them) is compared with and recorded in the evaluation's lineage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nemotron.recipes.nano2.stage1_instruction_tuning import data_curation, evaluation, training
from nemotron.stage import LaterStageOptions, chain_steps, declared_stage


@dataclass
class StageConfig(LaterStageOptions):
    """nano2 stage1 (instruction tuning): curate chat data, fine-tune the stage0 model, evaluate both."""

    data: data_curation.Config = field(default_factory=data_curation.Config)
    train: training.Config = field(default_factory=training.Config)
    eval: evaluation.Config = field(default_factory=evaluation.Config)


def main(stage: StageConfig) -> dict[str, Any]:
    """The three artifacts, by step name."""
    return chain_steps(stage, *declared_stage(__package__))


if __name__ == "__main__":
    from nemotron.step import run_stage

    run_stage(main, StageConfig)
