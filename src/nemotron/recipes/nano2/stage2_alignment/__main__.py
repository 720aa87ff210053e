"""Run nano2 stage2 in this process: data_curation -> training -> evaluation, each step's artifact wired into the next.

    python -m nemotron.recipes.nano2.stage2_alignment --init-checkpoint-path STAGE1_TRAINING_DIR --scale tiny
    python -m nemotron.recipes.nano2.stage2_alignment --init-checkpoint-path DIR --output-root runs/dpo --train.beta 0.2

``--init-checkpoint-path`` (or ``--init-checkpoint-artifact``) is the model to align (stage1's Checkpoint; any
Checkpoint works). Top-level ``--scale`` and ``--seed`` apply to all three steps (a step keeps a value given
explicitly for it); ``--output-root DIR`` puts the steps' outputs in ``DIR/<step>``. stdout carries one JSON
document with the three artifacts; progress goes to stderr.
``--eval.baseline-path STAGE1/evaluation`` (stage1's Results of that checkpoint; taken from stdin when the
piped stage1 output carries them) is compared with and recorded in the evaluation's lineage.
"""

from __future__ import annotations

from nemotron.stage import stage_module

StageConfig, main = stage_module(__package__)

if __name__ == "__main__":
    from nemotron.step import run_stage

    run_stage(main, StageConfig, description=__doc__)
