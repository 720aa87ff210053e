"""nano2 stage1 training: supervised fine-tuning (SFT) of the stage0 Checkpoint on packed, assistant-masked chat rows.

Starts from ``--init-checkpoint-path`` (a stage0 Checkpoint; recorded in lineage) and trains with the cross-entropy
of assistant tokens only, through the same loop as stage0: resumes from the newest checkpoint in the output
directory, and on SIGTERM/SIGUSR1 saves one and exits with code 75.

    python -m nemotron.recipes.nano2.stage1_instruction_tuning.training --dataset-path DATA --init-checkpoint-path CKPT
"""

from __future__ import annotations

from nemotron.step import run_step
from nemotron.training import instruction_tuning
from nemotron.training.instruction_tuning import SFTConfig as Config
from nemotron.training.model import MODEL_PRESETS
from nemotron.training.presets import TrainPreset

PRESETS: dict[str, TrainPreset] = {
    "tiny": TrainPreset(80, 16, 16, 1e-3, 1e-4, 5, "cosine", 40),
    "small": TrainPreset(2_000, 4, 64, 2e-5, 2e-6, 50, "cosine", 500),
    "medium": TrainPreset(5_000, 2, 128, 1e-5, 1e-6, 100, "cosine", 1_000, tensor_parallel=2),
    # Nemotron-Nano-2 SFT: a few thousand steps at a low constant-then-decay learning rate.
    "full": TrainPreset(10_000, 1, 256, 5e-6, 5e-7, 200, "cosine", 1_000, tensor_parallel=8),
}


validate, main = instruction_tuning.step(PRESETS, __file__, models=MODEL_PRESETS)

if __name__ == "__main__":
    run_step(main, Config, "training")
