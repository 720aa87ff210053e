"""Memory one GPU of a training job needs, estimated at plan time from the model and the job's layout (torch-free).

What this training loop keeps on each rank of the most loaded pipeline stage (``training.loop``, ``model``):

- **Model state**, 16 bytes a parameter: fp32 parameters (the optimizer's master weights), fp32 gradients, AdamW's
  two fp32 moments — the moments (8 bytes) divided over the data-parallel ranks with a sharded optimizer (ZeRO stage
  1, ``training.loop.build_optimizer``); on GPUs bf16 autocast adds a bf16 copy of the weights it casts (2 bytes). A
  rank holds 1/tp of its stage's layers, and the first stage the input embedding, the last the output layer (1/tp
  each, untied). megatron's distributed optimizer also shards the fp32 weights and gradients (ZeRO-2-like); this
  loop does not, and the estimate says what it does.
- **Activations** kept for the backward pass, after Korthikanti et al. 2022, "Reducing Activation Recomputation in
  Large Transformer Models" (arXiv:2205.05198), section 4: a transformer layer keeps ``sbh(34 + 5as/h)`` bytes in
  16-bit precision, of which the parts inside tensor-parallel regions divide by ``tp``. Adapted to these layers, with
  ``e`` bytes an element (2 with bf16 autocast, 4 in fp32 on CPU), no dropout (so no masks), squared-ReLU (its input
  and output kept), GQA (K and V of ``g`` query groups):

  ====== ===================================================================================================
  layer  bytes kept, per micro-batch of ``b`` sequences of ``s`` tokens
  ====== ===================================================================================================
  norm   ``sbh e`` (its input), before every attention, FFN and Mamba block
  ``*``  ``sbh e`` (QKV input) + ``sb(a+2g)d e / tp`` (Q, K, V) + ``sbad e / tp`` (context, the output projection's
         input) + ``a s^2 b e / tp`` (softmax output) without a fused attention kernel; with one (Transformer
         Engine's on GPUs, torch's scaled_dot_product_attention on CPU: both models' attention) only ``4 a s b / tp``
         (log-sum-exp)
  ``-``  ``sbh e`` (FC1 input) + ``2 sbf e / tp`` (FC1 output and the activation's output, FC2's input)
  ``M``  ``sbh e`` (in_proj input) + ``sb(2 d_in + 2GN + H) e / tp`` (in_proj output: z, x, B, C, dt)
         + ``sb(d_in + 2GN) e / tp`` (the causal conv's output) + ``2 sb d_in e / tp`` (the scan's output and the gated
         norm's output, out_proj's input) + the chunk states ``(s/Q) b H P N 4 / tp`` (Q = 128-token chunks, fp32)
  ====== ===================================================================================================

  plus the logits ``sbV(e + 4) / tp`` (the loss is taken in fp32) and the embedding's output ``sbh e``. With
  sequence parallelism (Korthikanti section 4.2.2) every ``sbh e`` term divides by ``tp`` too: the norms and residual
  adds run on a rank's sequence shard and a linear keeps its input's shard (it gathers it again in the backward
  pass), so the layer keeps ``sbh(34 + 5as/h) / tp``. With pipeline
  parallelism the first stage holds ``pp`` micro-batches in flight (1F1B, Korthikanti section 4.2.3); without it,
  gradient accumulation keeps one micro-batch at a time. Full recompute keeps each layer's input only (``sbh e``, or
  its sequence shard) plus one layer's activations while it is recomputed. The backward pass adds its working set
  at its peak: the gradient of the logits (``sbV 4 / tp``) and of the largest layer's saved tensors, alive beside
  the kept ones.
- **Runtime**: the CUDA context, cuBLAS/NCCL workspaces and the caching allocator's fragmentation, taken as 2 GB plus
  10 % of the tensors above on a GPU (0 on CPU, where the figure is compared with a measured peak RSS instead).

``bench/bench_memory.py`` prints these estimates beside measured peaks on CPU ranks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from nemotron.training.model import HybridConfig, ModelConfig, layer_kinds, layer_parameters, norm_parameters

GB = 1e9
MODEL_STATE_BYTES = 16  # fp32 weight + fp32 gradient + AdamW's two fp32 moments
ADAM_MOMENT_BYTES = 8  # of which AdamW's moments: what a sharded optimizer splits over the data-parallel ranks
BF16_WEIGHT_COPY_BYTES = 2
FROZEN_COPY_BYTES = 4  # a frozen model's fp32 weights (no gradient, no optimizer state)
SSD_CHUNK = 128  # megatron's Mamba chunk size
RUNTIME_GB, RUNTIME_SHARE = 2.0, 0.10
RECOMPUTE = ("none", "full")


@dataclass(frozen=True)
class Layout:
    """How a training job places its model on its ranks, and what it trades for memory: ``sequence_parallel`` splits
    the activations outside tensor-parallel regions over the tensor-parallel ranks too, ``recompute`` "full" keeps
    each layer's input only and recomputes the rest in the backward pass, ``shard_optimizer`` splits AdamW's moments
    over the data-parallel ranks (ZeRO stage 1)."""

    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    data_parallel: int = 1
    sequence_parallel: bool = False
    recompute: str = "none"  # one of RECOMPUTE
    shard_optimizer: bool = False

    def text(self) -> str:
        words = [f"tensor {self.tensor_parallel} x pipeline {self.pipeline_parallel} x data {self.data_parallel}"]
        words += ["sequence parallel"] if self.sequence_parallel else []
        words += ["full recompute"] if self.recompute == "full" else []
        words += ["sharded optimizer"] if self.shard_optimizer and self.data_parallel > 1 else []
        return ", ".join(words)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU of the most loaded pipeline stage."""

    model_state: float
    activations: float
    runtime: float

    @property
    def total(self) -> float:
        return self.model_state + self.activations + self.runtime

    def text(self) -> str:
        return (
            f"{self.total / GB:.1f} GB per GPU (model state {self.model_state / GB:.1f}, activations "
            f"{self.activations / GB:.1f}, runtime {self.runtime / GB:.1f})"
        )

    def as_dict(self) -> dict[str, float]:
        keys = ("model_state", "activations", "runtime", "total")
        return {f"{key}_gb": round(getattr(self, key) / GB, 2) for key in keys}


def estimate_memory(
    model: ModelConfig,
    vocab_size: int,
    layout: Layout,
    *,
    sequences: int,
    on_gpu: bool,
    frozen_copies: int = 0,
) -> MemoryEstimate:
    """Per-GPU memory of training ``model`` at ``layout`` on micro-batches of ``sequences`` sequences of
    ``model.seq_length`` tokens, with ``frozen_copies`` frozen copies of the model beside it (DPO's reference: its
    weights only); see the module doc."""
    if layout.recompute not in RECOMPUTE:
        raise ValueError(f"recompute {layout.recompute!r} is not one of {RECOMPUTE}")
    tp, pp = layout.tensor_parallel, layout.pipeline_parallel
    kinds, params = layer_kinds(model), layer_parameters(model)
    per_stage = math.ceil(len(kinds) / pp)
    h, element = model.hidden_size, (2 if on_gpu else 4)
    stage_params = max(sum(params[i : i + per_stage]) for i in range(0, len(params), per_stage))
    # untied: the first stage holds the input embedding, the last the output layer (the same stage without PP)
    edge_params = vocab_size * h * (2 if pp == 1 else 1) + norm_parameters(model)
    parameters = (stage_params + edge_params) / tp
    moments = ADAM_MOMENT_BYTES / (layout.data_parallel if layout.shard_optimizer else 1)
    bytes_per_parameter = MODEL_STATE_BYTES - ADAM_MOMENT_BYTES + moments + (BF16_WEIGHT_COPY_BYTES if on_gpu else 0)
    model_state = parameters * (bytes_per_parameter + frozen_copies * FROZEN_COPY_BYTES)

    tokens = sequences * model.seq_length
    flash = True  # fused attention everywhere: Transformer Engine's on GPUs, torch's SDPA on CPU (training.attention)
    sp = tp if layout.sequence_parallel else 1  # what the whole sequence's hidden states divide by
    per_layer = [_layer_activations(kind, model, tokens, element, tp, sp, flash) for kind in kinds]
    stage_layers = per_layer[:per_stage]  # the first stage holds the most micro-batches in flight
    full_recompute = per_stage * tokens * h * element / sp + max(stage_layers)  # layer inputs + one recomputed
    kept = full_recompute if layout.recompute == "full" else sum(stage_layers)
    edges = tokens * h * element / sp + (tokens * vocab_size * (element + 4) / tp if pp == 1 else 0)
    in_flight = pp  # 1F1B: the first stage has pp micro-batches' activations alive at once
    activations = in_flight * kept + edges
    if pp > 1:  # the last stage's logits, if it is the larger one, are counted on their own stage
        last = tokens * vocab_size * (element + 4) / tp + sum(per_layer[-per_stage:])
        activations = max(activations, last)
    backward = tokens * vocab_size * 4 / tp + max(per_layer)  # gradients alive at the backward pass's peak
    activations += backward
    tensors = model_state + activations
    runtime = RUNTIME_GB * GB + RUNTIME_SHARE * tensors if on_gpu else 0.0
    return MemoryEstimate(model_state, activations, runtime)


def _layer_activations(kind: str, model: ModelConfig, tokens: int, e: int, tp: int, sp: int, flash: bool) -> float:
    """Bytes one layer keeps for backward (the module doc's table); ``kind`` may hold several blocks (``*-``).
    ``sp``: what the hidden states outside tensor-parallel regions divide by (``tp`` under sequence parallelism,
    where a linear keeps its input's sequence shard and gathers it again for the backward pass; else 1)."""
    h = model.hidden_size
    total = 0.0
    for block in kind:
        total += tokens * h * e / sp  # the block's norm input
        if block == "*":
            a, g, d, s = model.num_attention_heads, model.num_query_groups, model.kv_channels, model.seq_length
            total += tokens * h * e / sp + tokens * (a + 2 * g) * d * e / tp + tokens * a * d * e / tp
            total += 4 * a * tokens / tp if flash else a * s * tokens * e / tp  # b * s * s per head = tokens * s
        elif block == "-":
            total += tokens * h * e / sp + 2 * tokens * model.ffn_hidden_size * e / tp
        elif block == "M":
            assert isinstance(model, HybridConfig)
            heads, p, n, groups = (
                model.mamba_num_heads,
                model.mamba_head_dim,
                model.mamba_state_dim,
                model.mamba_num_groups,
            )
            inner, bc = heads * p, 2 * groups * n
            total += tokens * h * e / sp + tokens * (2 * inner + bc + heads) * e / tp + tokens * (inner + bc) * e / tp
            total += 2 * tokens * inner * e / tp + math.ceil(tokens / SSD_CHUNK) * heads * p * n * 4 / tp
    return total


def fitting_layout(
    fits: Callable[[Layout], bool],
    divides: Callable[[int], bool],
    world_size: int,
    gpus_per_node: int,
    pipeline_sizes: list[int],
    trades: Layout,
) -> Layout | None:
    """The smallest model-parallel layout (tensor parallel within a node first, then pipeline stages of
    ``pipeline_sizes``) for which ``fits(layout)`` holds; ``divides(data_parallel)`` says whether the global batch
    splits over its ranks. Each candidate keeps the recompute and optimizer sharding of ``trades`` and runs sequence
    parallel wherever it has tensor-parallel ranks (the default a layout flag leaves)."""
    tensor_sizes = [t for t in (1, 2, 4, 8) if t <= max(gpus_per_node, 1)]
    candidates = [
        dataclasses.replace(
            trades, tensor_parallel=t, pipeline_parallel=p, data_parallel=world_size // (t * p), sequence_parallel=t > 1
        )  # fmt: skip
        for p in pipeline_sizes
        for t in tensor_sizes
        if world_size % (t * p) == 0 and divides(world_size // (t * p))
    ]
    candidates.sort(key=lambda layout: (layout.tensor_parallel * layout.pipeline_parallel, layout.pipeline_parallel))
    return next((layout for layout in candidates if fits(layout)), None)
