"""What a training job costs, previewed at plan time (torch-free): tokens, FLOPs, GPU-hours, wall time, segments.

- **FLOPs** per token, forward and backward, without recompute (model FLOPs, as MFU counts them): ``6`` per parameter
  of every matrix multiply (the layers and the output layer; the input embedding is a lookup) plus ``12 s a d`` per
  attention layer for the scores and their weighted sum (PaLM, Chowdhery et al. 2022, appendix B: ``6N + 12LHQT``).
  The Mamba-2 scan's own FLOPs (``O(H P N)`` a token) are under 0.1 % of a layer's projections at these sizes and
  are left out.
- **GPU-hours** at the profile's assumed MFU (``[gpu] mfu``) of its peak (``[gpu] peak_tflops``): FLOPs /
  (peak x MFU). The default MFU, 0.40, is what Megatron-LM sustained for Nemotron-4 340B on up to 6,144 H100s (41-42 %
  of 989 TFLOP/s BF16, the Nemotron-4 340B technical report's Table 2); a hybrid model or a small cluster may do less.
- **Wall time** divides the GPU-hours by the job's GPUs; **segments** are the time-limit attempts it needs at the
  job's time limit (each ends by saving a checkpoint, and the next resumes from it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nemotron.training.model import ModelConfig, layer_kinds, layer_parameters, norm_parameters


@dataclass(frozen=True)
class CostEstimate:
    tokens: float
    flops: float
    gpus: int
    gpu_hours: float
    time_limit_s: int | None

    @property
    def wall_hours(self) -> float:
        return self.gpu_hours / max(self.gpus, 1)

    @property
    def segments(self) -> int | None:
        """Time-limit attempts the job needs (None: no time limit known)."""
        if not self.time_limit_s:
            return None
        return max(1, math.ceil(self.wall_hours * 3600 / self.time_limit_s))

    def text(self) -> str:
        wall = f"{self.wall_hours / 24:.1f} days" if self.wall_hours >= 48 else f"{self.wall_hours:.2g} h"
        gpu_hours = f"{self.gpu_hours:,.0f}" if self.gpu_hours >= 10 else f"{self.gpu_hours:.2g}"
        segments = "" if self.segments is None else f" ({self.segments} x its time limit)"
        return (
            f"{self.tokens:.3g} tokens, {self.flops:.2e} FLOPs, {gpu_hours} GPU-hours, "
            f"about {wall} on {self.gpus} GPUs{segments}"
        )

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "tokens": self.tokens,
            "flops": self.flops,
            "gpus": self.gpus,
            "gpu_hours": round(self.gpu_hours, 1),
            "wall_hours": round(self.wall_hours, 2),
            "segments": self.segments,
        }


def flops_per_token(model: ModelConfig, vocab_size: int) -> float:
    """Model FLOPs of one token, forward and backward (see the module doc)."""
    norms = norm_parameters(model) * sum(len(kind) for kind in layer_kinds(model))
    matmul_parameters = sum(layer_parameters(model)) - norms + vocab_size * model.hidden_size
    attention_layers = sum(kind.count("*") for kind in layer_kinds(model))
    attention = 12 * model.seq_length * model.num_attention_heads * model.kv_channels * attention_layers
    return 6 * matmul_parameters + attention


def estimate_cost(
    model: ModelConfig,
    vocab_size: int,
    tokens: float,
    gpus: int,
    peak_tflops: float,
    mfu: float,
    time_limit_s: int | None,
) -> CostEstimate:
    flops = flops_per_token(model, vocab_size) * tokens
    gpu_hours = flops / (peak_tflops * 1e12 * mfu) / 3600
    return CostEstimate(tokens, flops, gpus, gpu_hours, time_limit_s)
