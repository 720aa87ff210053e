"""nano2 stage1 evaluation: instruction following of the tuned model AND of its input (stage0) model, plus regression.

``instruct``: greedy replies to the held-out instructions in the dataset's ``eval/instruct.jsonl``, scored by exact
match (``instruct/exact_match``, per kind too). The input model is found through the checkpoint's lineage
(``init_checkpoint``) and scored on the same items (``input_model/instruct/exact_match``), so one artifact records the
gain. stage0's lm-eval tasks (``--regression-tasks``, e.g. facts_mc) run on both models against the stage0 dataset to
measure what tuning cost (``facts_mc/acc`` vs ``input_model/facts_mc/acc``); by default the held-out facts that dataset
carries, or its validation perplexity when it carries none (pretrained on a user's own text). Given stage0's own
Results of the input model (``--baseline-path``, wired by the launcher), every shared metric is also compared with it
(``vs_baseline/...``) and it is recorded in lineage (``nemotron.evaluation.baseline``).

    python -m nemotron.recipes.nano2.stage1_instruction_tuning.evaluation --checkpoint-path STAGE1/training
"""

from __future__ import annotations

from nemotron.evaluation.artifacts import Results
from nemotron.evaluation.instruction_tuning import STEP, evaluate, validate
from nemotron.evaluation.instruction_tuning import InstructEvalConfig as Config
from nemotron.step import run_step

__all__ = ["Config", "main", "validate"]


def main(config: Config) -> Results:
    return evaluate(config, __file__)


if __name__ == "__main__":
    run_step(main, Config, STEP)
