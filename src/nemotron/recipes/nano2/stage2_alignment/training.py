"""nano2 stage2 training: DPO from the input checkpoint (stage1's) against a frozen reference model
(``nemotron.training.alignment``). Resumes from the newest checkpoint in the output directory; on SIGTERM/SIGUSR1 it
saves a checkpoint and exits with code 75 (run it again to continue).

    ... data_curation.py | python src/nemotron/recipes/nano2/stage2_alignment/training.py --beta 0.1
"""

from __future__ import annotations

from nemotron.step import run_step
from nemotron.training import alignment
from nemotron.training.alignment import DPOConfig as Config
from nemotron.training.model import MODEL_PRESETS
from nemotron.training.presets import TrainPreset

# Batch sizes count preference pairs; min_lr is a tenth of --lr and the only save is after the last iteration.
PRESETS: dict[str, TrainPreset] = {
    "tiny": TrainPreset(60, 16, 16, 3e-4, warmup_iters=5),
    "small": TrainPreset(1_000, 4, 64, 5e-6, warmup_iters=5),
    "medium": TrainPreset(2_000, 2, 128, 2e-6, warmup_iters=5, tensor_parallel=4),
    "full": TrainPreset(4_000, 1, 256, 1e-6, warmup_iters=5, tensor_parallel=8),
}

validate, main = alignment.step(PRESETS, __file__, models=MODEL_PRESETS)

if __name__ == "__main__":
    run_step(main, Config, "training")
