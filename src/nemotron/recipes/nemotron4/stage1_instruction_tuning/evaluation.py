"""nemotron4 stage1 evaluation: held-out instructions (greedy, exact match) and stage0's own tasks, for the tuned
model and the model it started from, compared with stage0's Results (``nemotron.evaluation.instruction_tuning``)."""

from __future__ import annotations

from nemotron.evaluation.artifacts import Results
from nemotron.evaluation.instruction_tuning import InstructEvalConfig as Config
from nemotron.evaluation.instruction_tuning import evaluate, validate
from nemotron.step import run_step

__all__ = ["Config", "main", "validate"]


def main(config: Config) -> Results:
    return evaluate(config, __file__)


if __name__ == "__main__":
    run_step(main, Config, "evaluation")
