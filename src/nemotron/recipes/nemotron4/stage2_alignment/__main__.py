"""Run nemotron4 stage2 in this process, starting from a stage1 Checkpoint (wired by the recipe's declaration).

    python -m nemotron.recipes.nemotron4.stage2_alignment --init-checkpoint-path STAGE1/training

Without ``--init-checkpoint-*`` the checkpoint (and stage1's Results, the evaluation's baseline) are read from
stage1's JSON on stdin: ``python -m ...stage1_instruction_tuning | python -m ...stage2_alignment``.
"""

from __future__ import annotations

from nemotron.stage import stage_module

StageConfig, main = stage_module(__package__)

if __name__ == "__main__":
    from nemotron.step import run_stage

    run_stage(main, StageConfig, description=__doc__)
