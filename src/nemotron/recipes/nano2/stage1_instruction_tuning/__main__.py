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

from nemotron.stage import stage_module

StageConfig, main = stage_module(__package__)

if __name__ == "__main__":
    from nemotron.step import run_stage

    run_stage(main, StageConfig, description=__doc__)
