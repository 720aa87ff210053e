"""The core of attention (``softmax(Q K^T / sqrt(d)) V``, causal) through torch's fused
``scaled_dot_product_attention``, for the models' local (non Transformer Engine) layer specs.

Why not megatron's own ``DotProductAttention``: it materialises the ``[batch, heads, s, s]`` scores and their softmax
(kept for the backward pass), where the published GPU spec runs Transformer Engine's fused attention, which keeps
only a log-sum-exp per row. torch's kernel (flash or memory-efficient attention, on CPU and GPU) does what TE's does,
so a CPU run keeps the memory and speed profile of the GPU path: measured on 2 cores, the tiny attention-only model
trains at the plain-PyTorch loop's speed only with it (``bench/bench_training.py``).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule


class FusedDotProductAttention(MegatronModule):
    """megatron's ``DotProductAttention`` (same constructor, same forward: ``[s, b, heads, d]`` query and
    ``[s, b, groups, d]`` key/value in, ``[s, b, heads * d]`` out) computed by ``F.scaled_dot_product_attention``.
    Causal self-attention without dropout — what these models train — with grouped-query attention by the kernel's
    own broadcasting of K/V groups (no ``repeat_interleave`` copy). Parameter-free, so checkpoints do not change."""

    def __init__(
        self,
        config,
        layer_number: int,
        attn_mask_type: AttnMaskType,
        attention_type: str,
        attention_dropout: float | None = None,
        softmax_scale: float | None = None,
        cp_comm_type: str | None = None,
        pg_collection=None,
    ):
        super().__init__(config=config)
        dropout = config.attention_dropout if attention_dropout is None else attention_dropout
        if attn_mask_type != AttnMaskType.causal or dropout or config.context_parallel_size != 1:
            raise ValueError("FusedDotProductAttention runs causal attention without dropout or context parallelism")
        if config.apply_query_key_layer_scaling:
            raise ValueError("FusedDotProductAttention does not scale query-key products by the layer number")
        tp = (
            pg_collection.tp.size()
            if pg_collection is not None
            else parallel_state.get_tensor_model_parallel_world_size()
        )
        self.heads, self.groups = config.num_attention_heads // tp, config.num_query_groups // tp
        self.scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(config.kv_channels)

    def forward(
        self, query, key, value, attention_mask, attn_mask_type=None, attention_bias=None, packed_seq_params=None
    ):
        """The causal mask is the kernel's own (``is_causal``): ``attention_mask`` is megatron's causal one."""
        if attention_bias is not None or packed_seq_params is not None:
            raise NotImplementedError("FusedDotProductAttention takes no attention bias or packed sequences")
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))  # [b, n, s, d]
        out = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, scale=self.scale, enable_gqa=self.groups != self.heads
        )
        batch, heads, length, dim = out.shape
        return out.permute(2, 0, 1, 3).reshape(length, batch, heads * dim)
