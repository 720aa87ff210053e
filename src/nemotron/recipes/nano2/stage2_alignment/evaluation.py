"""nano2 stage2 evaluation: preference accuracy and reward margin on held-out pairs for the aligned model AND its
input model, its held-out instructions re-run, compared with stage1's Results (``nemotron.evaluation.alignment``).

    ... training.py | python src/nemotron/recipes/nano2/stage2_alignment/evaluation.py
"""

from __future__ import annotations

from nemotron.evaluation.alignment import STEP, evaluate, validate
from nemotron.evaluation.alignment import PreferenceEvalConfig as Config
from nemotron.evaluation.artifacts import Results
from nemotron.step import run_step

__all__ = ["Config", "main", "validate"]


def main(config: Config) -> Results:
    return evaluate(config, __file__)


if __name__ == "__main__":
    run_step(main, Config, STEP)
