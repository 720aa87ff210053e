"""nemotron4 stage2 training: DPO of stage1's Checkpoint against itself as the frozen reference
(``nemotron.training.alignment``); the model is the checkpoint's own (stage0's ``MODELS`` at the same scale only
size the plan's memory and cost estimate)."""

from __future__ import annotations

from nemotron.recipes.nemotron4.stage0_pretrain.training import MODELS
from nemotron.step import run_step
from nemotron.training import alignment
from nemotron.training.alignment import DPOConfig as Config
from nemotron.training.presets import TrainPreset

# Batch sizes count preference pairs (two sequences each); min_lr is a tenth of the learning rate.
PRESETS: dict[str, TrainPreset] = {
    "tiny": TrainPreset(60, 16, 16, 3e-4, warmup_iters=5),
    "small": TrainPreset(1_000, 4, 64, 5e-6, warmup_iters=5),
    "medium": TrainPreset(2_000, 2, 128, 2e-6, warmup_iters=5, tensor_parallel=4),
    # the 15B instruct model: a few thousand steps of 256 pairs at a small learning rate
    "full": TrainPreset(4_000, 1, 256, 1e-6, warmup_iters=5, tensor_parallel=8),
}

validate, main = alignment.step(PRESETS, __file__, models=MODELS)

if __name__ == "__main__":
    run_step(main, Config, "training")
