"""nemotron4 stage1 training: supervised fine-tuning of the stage0 Checkpoint on assistant tokens only
(``nemotron.training.instruction_tuning``); the model is the checkpoint's own, so nothing here names it."""

from __future__ import annotations

from nemotron.step import Placement, run_step
from nemotron.training import instruction_tuning
from nemotron.training.artifacts import Checkpoint
from nemotron.training.instruction_tuning import SFTConfig as Config
from nemotron.training.presets import TrainPreset

PRESETS: dict[str, TrainPreset] = {
    "tiny": TrainPreset(80, 16, 16, 1e-3, 1e-4, 5, "cosine", 40),
    "small": TrainPreset(2_000, 4, 64, 2e-5, 2e-6, 50, "cosine", 500),
    "medium": TrainPreset(4_000, 2, 128, 1e-5, 1e-6, 100, "cosine", 1_000),
    # Nemotron-4-style SFT of the 15B base: a few thousand steps at a small learning rate, cosine to a tenth.
    "full": TrainPreset(6_000, 1, 128, 5e-6, 5e-7, 100, "cosine", 1_000),
}


def validate(config: Config, placement: Placement, carried: frozenset[str]) -> None:
    instruction_tuning.validate(config, placement, carried, PRESETS)


def main(config: Config) -> Checkpoint:
    return instruction_tuning.finetune(config, PRESETS, __file__)


if __name__ == "__main__":
    run_step(main, Config, "training")
