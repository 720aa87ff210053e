"""nano2 stage0 training: pretrain the Nemotron-Nano-2 hybrid (Mamba-2 + attention) model on a curated Dataset.

Examples:
  python -m nemotron.recipes.nano2.stage0_pretrain.training --scale tiny --dataset-path DIR
  ... data_curation.py | python -m nemotron.recipes.nano2.stage0_pretrain.training
"""

from __future__ import annotations

from nemotron.step import run_step
from nemotron.training import pretraining
from nemotron.training.model import MODEL_PRESETS
from nemotron.training.presets import TrainPreset
from nemotron.training.pretraining import PretrainConfig as Config

PRESETS: dict[str, TrainPreset] = {
    "tiny": TrainPreset(300, 16, 16, 3e-3, 3e-4, 20, "cosine", 100),
    "small": TrainPreset(20_000, 4, 256, 1e-3, 1e-5, 500, "cosine", 1_000),
    "medium": TrainPreset(100_000, 2, 512, 6e-4, 6e-6, 2_000, "WSD", 2_000, tensor_parallel=2),
    # Nemotron-Nano-12B-v2-Base: ~20T tokens at 768 x 8192 tokens per step, warmup-stable-decay.
    "full": TrainPreset(3_180_000, 1, 768, 4.5e-4, 4.5e-6, 8_000, "WSD", 2_000, tensor_parallel=8),
}


validate, main = pretraining.step(PRESETS, MODEL_PRESETS, __file__)

if __name__ == "__main__":
    run_step(main, Config, "training")
