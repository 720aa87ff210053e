"""nano2 stage2 data curation: preference pairs (prompt, chosen, rejected) from the seeded world (or your JSONL),
tokenized with the input model's tokenizer (``nemotron.data.alignment``).

    python src/nemotron/recipes/nano2/stage2_alignment/data_curation.py --checkpoint-path STAGE1_TRAINING_DIR
"""

from __future__ import annotations

from nemotron.data.alignment import STEP, curate, validate
from nemotron.data.alignment import PreferenceCurationConfig as Config
from nemotron.data.preference_artifacts import PreferenceDataset
from nemotron.step import run_step

__all__ = ["Config", "main", "validate"]


def main(config: Config) -> PreferenceDataset:
    return curate(config, __file__)


if __name__ == "__main__":
    run_step(main, Config, STEP)
