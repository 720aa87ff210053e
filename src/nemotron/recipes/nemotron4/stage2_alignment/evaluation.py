"""nemotron4 stage2 evaluation: preference accuracy and reward margin on held-out pairs and stage1's held-out
instructions, for the aligned model and the model it started from, compared with stage1's Results
(``nemotron.evaluation.alignment``)."""

from __future__ import annotations

from nemotron.evaluation.alignment import PreferenceEvalConfig as Config
from nemotron.evaluation.alignment import evaluate, validate
from nemotron.evaluation.artifacts import Results
from nemotron.step import run_step

__all__ = ["Config", "main", "validate"]


def main(config: Config) -> Results:
    return evaluate(config, __file__)


if __name__ == "__main__":
    run_step(main, Config, "evaluation")
