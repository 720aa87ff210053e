"""nemotron4 stage0 training: pretrain the Nemotron-4 dense Transformer (megatron-core GPTModel: GQA, RoPE on half
of each head, squared-ReLU, LayerNorm, no bias, untied embeddings) on a curated Dataset
(``nemotron.training.pretraining``).

Runs as one process, under torchrun, or one rank per srun task; resumes from the newest checkpoint in the output
directory; on SIGTERM/SIGUSR1 it saves a checkpoint and exits 75 (run it again to continue).
"""

from __future__ import annotations

from nemotron.step import run_step
from nemotron.training import pretraining
from nemotron.training.model import GPTConfig
from nemotron.training.presets import TrainPreset
from nemotron.training.pretraining import PretrainConfig as Config

PRESETS: dict[str, TrainPreset] = {
    "tiny": TrainPreset(300, 16, 16, 3e-3, 3e-4, 20, "cosine", 100),
    "small": TrainPreset(20_000, 4, 256, 1e-3, 1e-5, 500, "cosine", 1_000),
    "medium": TrainPreset(60_000, 2, 768, 6e-4, 6e-6, 2_000, "cosine", 2_000, tensor_parallel=2),
    # Nemotron-4 15B: 8T tokens; the report ramps the batch 384 -> 768 -> 1152 sequences of 4096; this keeps the
    # last (1152 x 4096 = 4.7M tokens per step), so 1.7M steps; cosine decay to a tenth.
    "full": TrainPreset(1_700_000, 1, 1152, 4.5e-4, 4.5e-5, 8_000, "cosine", 2_000, tensor_parallel=8),
}
# layers, hidden, FFN, attention heads, KV heads (GQA), head size, sequence length. full is Nemotron-4 15B (arXiv
# 2402.16819: 32 layers, hidden 6144, 48 heads with 8 KV heads, sequence 4096; FFN 24576, head size 128 and init std
# 0.0134 from NeMo's Nemotron4Config15B): 15.6B parameters with its 256k vocabulary. Smaller scales keep its shape
# (FFN 4 x hidden, GQA); tiny has the compute of nano2's tiny on CPU, so it trains on 2 CPU cores as fast.
MODELS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(2, 128, 512, 4, 2, 32, 128),
    "small": GPTConfig(8, 1024, 4096, 16, 4, 64, 2048),
    # Minitron-4B's width (hidden 3072, 24 heads of 128, 8 KV heads) with Nemotron-4's FFN ratio
    "medium": GPTConfig(32, 3072, 12288, 24, 8, 128, 4096),
    "full": GPTConfig(32, 6144, 24576, 48, 8, 128, 4096, init_method_std=0.0134),
}


validate, main = pretraining.step(PRESETS, MODELS, __file__)

if __name__ == "__main__":
    run_step(main, Config, "training")
