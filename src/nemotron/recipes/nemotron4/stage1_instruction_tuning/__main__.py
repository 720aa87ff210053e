"""Run nemotron4 stage1 in this process, starting from a stage0 Checkpoint (wired by the recipe's declaration).

    python -m nemotron.recipes.nemotron4.stage1_instruction_tuning --init-checkpoint-path STAGE0/training

Without ``--init-checkpoint-*`` the checkpoint (and stage0's Results, the evaluation's baseline) are read from
stage0's JSON on stdin: ``python -m ...stage0_pretrain | python -m ...stage1_instruction_tuning``.
"""

from __future__ import annotations

from nemotron.stage import stage_module

StageConfig, main = stage_module(__package__)

if __name__ == "__main__":
    from nemotron.step import run_stage

    run_stage(main, StageConfig, description=__doc__)
