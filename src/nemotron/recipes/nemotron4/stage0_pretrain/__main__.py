"""Run nemotron4 stage0 in this process: data_curation -> training -> evaluation, wired by the recipe's declaration.

    python -m nemotron.recipes.nemotron4.stage0_pretrain --scale tiny --output-root runs/stage0

``--scale``/``--seed`` apply to every step unless set for one (``--train.seed 7``); stdout carries one JSON document
with the three artifacts; progress goes to stderr.
"""

from __future__ import annotations

from nemotron.stage import stage_module

StageConfig, main = stage_module(__package__)

if __name__ == "__main__":
    from nemotron.step import run_stage

    run_stage(main, StageConfig, description=__doc__)
