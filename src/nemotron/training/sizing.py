"""A training job's size, at plan time: its layout, its memory per GPU against the GPU's, and what it costs.

``check_training`` (every training step's validation) calls ``size_training`` when it knows the model; the launcher
shows the returned estimate in the dry-run and refuses a plan that needs more time-limit segments than the profile
allows. Torch-free (``memory``, ``cost``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from nemotron.errors import UserError
from nemotron.step import Placement
from nemotron.training.cost import CostEstimate, estimate_cost
from nemotron.training.memory import GB, Layout, MemoryEstimate, estimate_memory, fitting_layout
from nemotron.training.model import ModelConfig, layer_kinds


@dataclass(frozen=True)
class TrainingEstimate:
    layout: Layout
    memory: MemoryEstimate
    cost: CostEstimate | None  # None: not on GPUs (nothing to price)

    @property
    def segments(self) -> int | None:
        return self.cost.segments if self.cost else None

    def lines(self) -> list[str]:
        lines = [f"layout {self.layout.text()}; memory {self.memory.text()}"]
        return lines + ([f"cost {self.cost.text()}"] if self.cost else [])

    def as_dict(self) -> dict[str, Any]:
        return {
            "layout": dataclasses.asdict(self.layout),
            "memory": self.memory.as_dict(),
            "cost": self.cost.as_dict() if self.cost else None,
        }


def size_training(
    model: ModelConfig,
    vocab_size: int,
    layout: Layout,
    settings: dict[str, Any],
    placement: Placement,
    frozen_copies: int = 0,
    sequences_per_sample: int = 1,
    pipeline_stages: bool = True,
) -> TrainingEstimate:
    """The estimate of training ``model`` with ``settings`` (the chosen TrainSettings values) at ``layout``; on GPUs
    whose memory the profile states, a layout that does not fit is refused naming one that does. ``frozen_copies``:
    frozen models kept beside it (DPO's reference); ``sequences_per_sample``: sequences a batch sample holds (a
    preference pair: 2); ``pipeline_stages``: whether the step can split its model into pipeline stages (a layout
    suggested is one the step runs)."""
    gpu = placement.gpu
    shape = {"frozen_copies": frozen_copies, "sequences": settings["micro_batch_size"] * sequences_per_sample}
    memory = estimate_memory(model, vocab_size, layout, on_gpu=gpu is not None, **shape)
    if gpu is not None and gpu.memory_gb is not None and memory.total > gpu.memory_gb * GB:
        stages = _pipeline_sizes(model) if pipeline_stages else [1]
        raise UserError(_does_not_fit(model, vocab_size, layout, settings, placement, memory, shape, stages))
    cost = None
    if gpu is not None:
        samples = settings["train_iters"] * settings["global_batch_size"] * sequences_per_sample
        tokens = samples * model.seq_length
        cost = estimate_cost(
            model, vocab_size, tokens, placement.world_size, gpu.peak_tflops, gpu.mfu, placement.time_limit_s
        )
    return TrainingEstimate(layout, memory, cost)


def _does_not_fit(
    model: ModelConfig,
    vocab_size: int,
    layout: Layout,
    settings: dict[str, Any],
    placement: Placement,
    memory: MemoryEstimate,
    shape: dict[str, int],
    pipeline_sizes: list[int],
) -> str:
    capacity, micro = placement.gpu.memory_gb, settings["micro_batch_size"]

    def estimate(candidate: Layout) -> MemoryEstimate:
        return estimate_memory(model, vocab_size, candidate, on_gpu=True, **shape)

    def divides(data_parallel: int) -> bool:
        return settings["global_batch_size"] % (micro * data_parallel) == 0

    fits = fitting_layout(
        lambda candidate: estimate(candidate).total <= capacity * GB,
        divides,
        placement.world_size,
        placement.gpus_per_node or 1,
        pipeline_sizes,
        layout,
    )
    where = f"--tensor-parallel {layout.tensor_parallel}, --pipeline-parallel {layout.pipeline_parallel}"
    message = f"{where}: about {memory.text()}, more than the {capacity:g} GB of a GPU"
    if fits is None:
        return message + "; no layout of these ranks fits: give the job more GPUs or a smaller --micro-batch-size"
    suggestion = f"--tensor-parallel {fits.tensor_parallel}"
    if fits.pipeline_parallel > 1:
        suggestion += f" --pipeline-parallel {fits.pipeline_parallel}"
    return message + f"; a layout that fits: {suggestion} ({estimate(fits).total / GB:.1f} GB)"


def _pipeline_sizes(model: ModelConfig) -> list[int]:
    """The pipeline sizes megatron can split ``model`` into: its layers evenly over the stages."""
    layers = len(layer_kinds(model))
    return [stages for stages in range(1, layers + 1) if layers % stages == 0]
