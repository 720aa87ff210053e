"""nemotron4 stage1 training: supervised fine-tuning of the stage0 Checkpoint on assistant tokens only
(``nemotron.training.instruction_tuning``); the model is the checkpoint's own (stage0's ``MODELS`` at the same scale
only size the plan's memory and cost estimate)."""

from __future__ import annotations

from nemotron.recipes.nemotron4.stage0_pretrain.training import MODELS
from nemotron.step import run_step
from nemotron.training import instruction_tuning
from nemotron.training.instruction_tuning import SFTConfig as Config
from nemotron.training.presets import TrainPreset

# The dense tiny model learns the chat format faster than nano2's hybrid: 60 steps at 2e-3 (measured in the README).
PRESETS: dict[str, TrainPreset] = {
    "tiny": TrainPreset(60, 16, 16, 2e-3, 2e-4, 5, "cosine", 30),
    "small": TrainPreset(1_500, 8, 128, 2e-5, 2e-6, 50, "cosine", 500),
    "medium": TrainPreset(3_000, 4, 128, 1e-5, 1e-6, 100, "cosine", 1_000, tensor_parallel=2),
    # the 15B base: a few thousand steps of 128 conversations at a small learning rate, cosine to a tenth
    "full": TrainPreset(6_000, 1, 128, 5e-6, 5e-7, 100, "cosine", 1_000, tensor_parallel=8),
}


validate, main = instruction_tuning.step(PRESETS, __file__, models=MODELS)

if __name__ == "__main__":
    run_step(main, Config, "training")
