"""Run nano2 stage0 in this process: data_curation -> training -> evaluation, each step's artifact wired into the next.

    python -m nemotron.recipes.nano2.stage0_pretrain --scale tiny
    python -m nemotron.recipes.nano2.stage0_pretrain --scale tiny --seed 7 --output-root runs/s7 --train.lr 3e-3

Top-level ``--scale`` and ``--seed`` apply to all three steps (a step keeps a value given explicitly for it, e.g.
``--eval.seed 5``); ``--output-root DIR`` puts the steps' outputs in ``DIR/<step>``. stdout carries one JSON document
with the three artifacts; progress goes to stderr.
"""

from __future__ import annotations

from nemotron.stage import stage_module

StageConfig, main = stage_module(__package__)

if __name__ == "__main__":
    from nemotron.step import run_stage

    run_stage(main, StageConfig, description=__doc__)
