"""nano2 stage0 evaluation: score a pretrained checkpoint with lm-eval, offline (held-out facts, validation perplexity).

Examples:
  python src/nemotron/recipes/nano2/stage0_pretrain/evaluation.py --scale tiny --checkpoint-path DIR
  ... training.py | python -m nemotron.recipes.nano2.stage0_pretrain.evaluation
"""

from __future__ import annotations

from nemotron.evaluation.artifacts import Results
from nemotron.evaluation.pretraining import PretrainEvalConfig as Config
from nemotron.evaluation.pretraining import evaluate, validate  # noqa: F401
from nemotron.step import run_step


def main(config: Config) -> Results:
    return evaluate(config, __file__)


if __name__ == "__main__":
    run_step(main, Config, "evaluation")
