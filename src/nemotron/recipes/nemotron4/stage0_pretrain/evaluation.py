"""nemotron4 stage0 evaluation: lm-eval on the Dataset's held-out facts and validation perplexity, offline
(``nemotron.evaluation.pretraining``)."""

from __future__ import annotations

from nemotron.evaluation.artifacts import Results
from nemotron.evaluation.pretraining import PretrainEvalConfig as Config
from nemotron.evaluation.pretraining import evaluate, validate
from nemotron.step import run_step

__all__ = ["Config", "main", "validate"]


def main(config: Config) -> Results:
    return evaluate(config, __file__)


if __name__ == "__main__":
    run_step(main, Config, "evaluation")
