"""Mamba-2 layers in plain PyTorch, for machines without the ``mamba_ssm`` / ``causal_conv1d`` CUDA kernels.

``MambaMixer`` here is a drop-in for megatron-core's ``megatron.core.ssm.mamba_mixer.MambaMixer``: the same
constructor, the same submodules and parameters (``in_proj``, ``conv1d``, ``dt_bias``, ``A_log``, ``D``, ``norm``,
``out_proj``) with the same names, shapes, initialisation and tensor-parallel split, and the same sharded state dict,
so a checkpoint moves between a CPU run and a GPU run with the kernels unchanged. What differs is only how the
sequence is mixed: the state-space-duality (SSD) chunked scan of Mamba-2 (Dao & Gu 2024, "Transformers are SSMs",
section 6) written with ``torch.einsum`` instead of Triton.

The layer, per token t, head h (head dim p, state dim n, heads sharing B/C in groups)::

    xBC_t       = silu(causal depthwise conv1d over the last d_conv projected inputs + bias)
    dt_t        = softplus(dt_raw_t + dt_bias)                      (one step size per head)
    A           = -exp(A_log)                                        (one negative decay rate per head)
    state_t     = exp(dt_t * A) * state_{t-1} + dt_t * x_t B_t^T     ([p, n]: exact zero-order hold for A, Euler for B)
    y_t         = state_t C_t + D * x_t
    out_t       = out_proj(RMSNorm_per_group(y_t * silu(z_t)) * norm.weight)

``MambaMixer.forward`` never loops over tokens: ``ssd_scan`` computes the same recurrence chunk by chunk (quadratic,
attention-like inside a chunk; a recurrence over chunk boundaries only), which is exact up to rounding. The tests
check it against the token-by-token recurrence above.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.tensor_parallel import ColumnParallelLinear, get_cuda_rng_tracker
from megatron.core.transformer.module import MegatronModule
from torch import nn

from nemotron.errors import UserError

# The result does not depend on the chunk size (beyond rounding); the cost does: quadratic work inside chunks
# (L * chunk) against a recurrence over L / chunk boundaries. At the tiny model's L = 128 on 2 CPU cores the scan's
# forward + backward took 14.1 / 10.4 / 9.7 ms at chunk 128 / 64 / 32 (batch 16, 4 heads of 32, state 16); 64 keeps
# most of that gain at longer sequences too. megatron's kernel-backed mixer defaults to 128.
DEFAULT_CHUNK_SIZE = 64
GATED_NORM_EPS = 1e-5  # megatron builds its gated RMSNorm with eps=1e-5


def segment_sums(a: torch.Tensor) -> torch.Tensor:
    """``out[..., i, j] = a[..., j+1] + ... + a[..., i]`` for j <= i (0 on the diagonal), ``-inf`` above it.

    Summed as a masked cumulative sum rather than as ``cumsum[i] - cumsum[j]``: the difference of two large
    cumulative sums loses the small ones (catastrophic cancellation), the masked sum adds only the terms it needs.
    """
    length = a.shape[-1]
    terms = a[..., None, :].expand(*a.shape, length).transpose(-1, -2)  # terms[..., i, j] = a[..., i]
    below = torch.ones(length, length, dtype=torch.bool, device=a.device).tril(-1)
    sums = terms.masked_fill(~below, 0.0).cumsum(dim=-2)
    return sums.masked_fill(~below.logical_or(torch.eye(length, dtype=torch.bool, device=a.device)), -math.inf)


def ssd_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Mamba-2 recurrence (module doc), without the ``D`` skip, by state space duality.

    Shapes: ``x`` [b, l, h, p], ``dt`` [b, l, h] (after softplus), ``A`` [h] (negative), ``B``/``C`` [b, l, g, n] with
    g dividing h (head i reads group i // (h // g), as in mamba_ssm), ``initial_state`` [b, h, p, n].
    Returns ``y`` [b, l, h, p] and the state after the last token [b, h, p, n], both in x's dtype. Computed in fp32
    (states and decays lose too much in bf16), any l (the last chunk is padded with dt = 0, which neither decays nor
    adds to the state, so padding changes nothing before it).
    """
    dtype = x.dtype
    batch, length, heads, head_dim = x.shape
    groups = B.shape[2]
    x, dt, A, B, C = (t.float() for t in (x, dt, A, B, C))
    pad = -length % chunk_size
    if pad:
        x, B, C = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (x, B, C))
        dt = F.pad(dt, (0, 0, 0, pad))
    chunks = (length + pad) // chunk_size

    def chunked(t: torch.Tensor) -> torch.Tensor:  # [b, l, ...] -> [b, c, q, ...]
        return t.reshape(batch, chunks, chunk_size, *t.shape[2:])

    def by_group(t: torch.Tensor, dim: int) -> torch.Tensor:  # split a heads dimension into (group, head in group)
        return t.unflatten(dim, (groups, heads // groups))

    B, C = chunked(B), chunked(C)  # [b, c, q, g, n]: heads of a group share them, so products with them are per group
    x_dt = chunked(x * dt[..., None])  # [b, c, q, h, p]: the input term dt_t * x_t of the discretised recurrence
    log_decay = chunked(dt * A).permute(0, 3, 1, 2)  # [b, h, c, q]: log of exp(dt_t A), <= 0
    decay_cumsum = log_decay.cumsum(dim=-1)

    # 1. Within each chunk the unrolled recurrence is masked attention: y_t = sum_{s<=t} (C_t . B_s) decay(s->t) x_dt_s.
    # decay(s->t) = exp(cumsum_t - cumsum_s), the difference mamba_ssm's kernels take too: its rounding error is
    # u * |cumsum|, small over one chunk; positions s > t are set to -inf first, so exp never overflows.
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=x.device).tril()
    gaps = (decay_cumsum[..., :, None] - decay_cumsum[..., None, :]).masked_fill(~causal, -math.inf)
    C_dot_B = torch.einsum("bctgn,bcsgn->bgcts", C, B)[:, :, None]  # [b, g, 1, c, q(t), q(s)]
    scores = (by_group(torch.exp(gaps), 1) * C_dot_B).flatten(1, 2)  # [b, h, c, q(t), q(s)]
    y = torch.einsum("bhcts,bcshp->bcthp", scores, x_dt)

    # 2. Each chunk's own contribution to the state at its end.
    decay_to_end = torch.exp(decay_cumsum[..., -1:] - decay_cumsum).permute(0, 2, 3, 1)  # [b, c, q, h]
    weighted = by_group(x_dt * decay_to_end[..., None], 3)  # [b, c, q, g, j, p]
    chunk_states = torch.einsum("bcsgn,bcsgjp->bcgjpn", B, weighted).flatten(2, 3)  # [b, c, h, p, n]

    # 3. The recurrence over chunk boundaries: the state entering chunk c is the decayed sum of earlier chunks'.
    if initial_state is None and chunks == 1:  # the common case at tiny scale: nothing enters the only chunk
        final = chunk_states[:, 0]
    else:
        if initial_state is None:
            initial_state = x.new_zeros(batch, heads, head_dim, B.shape[-1])
        states = torch.cat([initial_state.float()[:, None], chunk_states], dim=1)  # [b, c+1, h, p, n]
        decay_across = torch.exp(segment_sums(F.pad(decay_cumsum[..., -1], (1, 0))))  # [b, h, c+1, c+1]
        states = torch.einsum("bhzc,bchpn->bzhpn", decay_across, states)
        entering, final = by_group(states[:, :-1], 2), states[:, -1]

        # 4. What the entering state contributes to each token of its chunk: C_t . (decay(chunk start -> t) state).
        from_state = torch.einsum("bctgn,bcgjpn->bctgjp", C, entering).flatten(3, 4)  # [b, c, q, h, p]
        y = y + from_state * torch.exp(decay_cumsum).permute(0, 2, 3, 1)[..., None]
    y = y.reshape(batch, chunks * chunk_size, heads, head_dim)[:, :length]
    return y.to(dtype), final.to(dtype)


def gated_rms_norm(y: torch.Tensor, z: torch.Tensor, weight: torch.Tensor, group_size: int, eps: float) -> torch.Tensor:
    """mamba_ssm's ``RMSNormGated`` with ``norm_before_gate=False`` (what megatron builds): gate first, then an
    RMSNorm over each group of ``group_size`` channels (one group per B/C group, so TP shards never share a group)."""
    gated = y.float() * F.silu(z.float())
    grouped = gated.unflatten(-1, (-1, group_size))
    normed = grouped * torch.rsqrt(grouped.square().mean(dim=-1, keepdim=True) + eps)
    return (normed.flatten(-2) * weight.float()).to(y.dtype)


class GatedRMSNorm(nn.Module):
    """The ``norm`` submodule of the mixer: a ``weight`` of ``hidden_size`` (ones) and no bias, as mamba_ssm's
    ``RMSNormGated``; its sharded state dict splits ``weight`` along TP like megatron's ``ExtendedRMSNorm``."""

    def __init__(self, hidden_size: int, group_size: int, eps: float = GATED_NORM_EPS, device=None, dtype=None):
        super().__init__()
        self.group_size, self.eps = group_size, eps
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.register_parameter("bias", None)

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return gated_rms_norm(y, z, self.weight, self.group_size, self.eps)

    def sharded_state_dict(self, prefix="", sharded_offsets=(), metadata=None):
        from megatron.core.transformer.utils import make_sharded_tensors_for_checkpoint

        return make_sharded_tensors_for_checkpoint(
            self.state_dict(prefix="", keep_vars=True),
            prefix,
            {"weight": 0},
            sharded_offsets,
            tp_group=parallel_state.get_tensor_model_parallel_group(),
            dp_cp_group=metadata["dp_cp_group"],
        )


class NormColumnParallelLinear(ColumnParallelLinear):
    """megatron's ``ColumnParallelLinear`` with the layer's input norm fused in front, named as Transformer Engine's
    ``TELayerNormColumnParallelLinear`` names it (``layer_norm_weight``, ``layer_norm_bias`` for LayerNorm).

    Why: the published specs fuse each layer's norm into its first linear (Mamba ``in_proj``, attention
    ``linear_qkv``, MLP ``linear_fc1``); building the same structure on CPU gives the same parameter names, so one
    checkpoint loads on either machine. The norm is replicated across TP ranks, as TE's is.
    """

    def __init__(self, input_size: int, output_size: int, *, config, **kwargs: Any):
        super().__init__(input_size, output_size, config=config, **kwargs)
        self.normalization, self.eps = config.normalization, config.layernorm_epsilon
        if self.normalization not in ("RMSNorm", "LayerNorm"):
            raise ValueError(f"normalization {self.normalization!r} is not RMSNorm or LayerNorm")
        device = self.weight.device
        self.layer_norm_weight = nn.Parameter(torch.ones(input_size, device=device, dtype=config.params_dtype))
        if self.normalization == "LayerNorm":
            self.layer_norm_bias = nn.Parameter(torch.zeros(input_size, device=device, dtype=config.params_dtype))
        # Under sequence parallelism the norm runs on this rank's share of the sequence (the linear gathers after
        # it), so its gradient is a partial sum: marked, as TE marks its own, for the tensor-parallel all-reduce.
        for parameter in (self.layer_norm_weight, getattr(self, "layer_norm_bias", None)):
            if parameter is not None:
                parameter.sequence_parallel = config.sequence_parallel

    def forward(self, input_: torch.Tensor, weight=None, runtime_gather_output=None):
        if self.normalization == "RMSNorm":
            normed = F.rms_norm(input_, (input_.shape[-1],), self.layer_norm_weight, self.eps)
        else:
            normed = F.layer_norm(input_, (input_.shape[-1],), self.layer_norm_weight, self.layer_norm_bias, self.eps)
        return super().forward(normed, weight, runtime_gather_output)


class TorchNorm:
    """megatron's ``WrappedTorchNorm`` (torch's RMSNorm or LayerNorm behind megatron's norm constructor) that also
    runs under sequence parallelism. Why: ``WrappedTorchNorm`` asserts sequence parallelism off because it does not
    mark its parameters ``sequence_parallel``, the flag by which the gradients a rank computed on its share of the
    sequence are summed over the tensor-parallel ranks (``distributed.all_reduce_gradients``); this one marks them,
    as megatron's fused and Transformer Engine norms do."""

    def __new__(cls, config, hidden_size: int, eps: float = 1e-5, **_unused: Any) -> nn.Module:
        norm = (nn.RMSNorm if config.normalization == "RMSNorm" else nn.LayerNorm)(hidden_size, eps=eps)
        for parameter in norm.parameters():
            parameter.sequence_parallel = config.sequence_parallel
        return norm


class MambaMixer(MegatronModule):
    """megatron-core's ``MambaMixer`` (same constructor, submodules, parameters, initialisation, TP split and
    sharded state dict) computing its training/prefill forward with ``ssd_scan`` (see the module doc).

    At TP > 1 each rank holds ``nheads / tp`` heads and ``ngroups / tp`` B/C groups, as megatron's mixer does:
    ``in_proj`` is column-parallel (this rank's z, x, B, C, dt), conv1d, ``A_log``, ``dt_bias``, ``D`` and the
    gated norm are local to the rank's heads, ``out_proj`` is row-parallel (its all-reduce sums the heads).
    Not supported, with one line each: context parallelism, packed sequences and cached (step-by-step) inference,
    which megatron's mixer runs only through the CUDA kernels.
    """

    def __init__(
        self,
        config,
        submodules,
        d_model: int,
        d_conv: int = 4,
        conv_init: float | None = None,
        expand: int = 2,
        A_init_range: tuple[float, float] = (1, 16),
        D_has_hdim: bool = False,
        rmsnorm: bool = True,
        norm_before_gate: bool = False,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        bias: bool = False,
        conv_bias: bool = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        layer_number: int | None = None,
        use_mem_eff_path: bool | None = None,
        d_state: int | None = None,
        headdim: int | None = None,
        ngroups: int | None = None,
        pg_collection=None,
        pp_layer_offset: int = 0,
    ):
        from megatron.core.transformer.spec_utils import build_module

        super().__init__(config)
        if pg_collection is None:
            raise ValueError("pg_collection must be provided for MambaMixer")
        if bias or norm_before_gate or not rmsnorm:
            # megatron's mixer asserts the first two; the ungated-norm variant is not what Nemotron-H trains.
            raise ValueError("MambaMixer supports bias=False, norm_before_gate=False, rmsnorm=True (as megatron's)")
        if pg_collection.cp.size() > 1:
            raise ValueError("the plain-PyTorch MambaMixer does not support context parallelism (cp > 1)")
        self.config, self.d_model, self.d_conv, self.chunk_size = config, d_model, d_conv, chunk_size
        self.layer_number, self.pp_layer_offset, self.pg_collection = layer_number, pp_layer_offset, pg_collection
        self.D_has_hdim, self.rmsnorm, self.norm_before_gate = D_has_hdim, rmsnorm, norm_before_gate
        self.d_state, self.headdim = config.mamba_state_dim, config.mamba_head_dim
        self.ngroups = config.mamba_num_groups
        if config.mamba_num_heads is not None:
            self.nheads = config.mamba_num_heads
            self.d_inner = self.nheads * self.headdim
        else:
            self.d_inner = int(expand * d_model)
            self.nheads = self.d_inner // self.headdim
        self.tp_group = pg_collection.tp
        tp = self.tp_group.size()
        if self.nheads % self.ngroups:
            raise ValueError(f"Mamba heads ({self.nheads}) must be a multiple of B/C groups ({self.ngroups})")
        if self.nheads % tp or self.ngroups % tp:  # a user's choice of layout, not a bug: one line, exit 2
            raise UserError(
                f"--tensor-parallel {tp}: this model's Mamba-2 layers have {self.nheads} heads in {self.ngroups} "
                "B/C groups and each rank needs whole heads and groups (megatron's mixer shards them the same way)"
            )
        self.nheads_local_tp, self.ngroups_local_tp = self.nheads // tp, self.ngroups // tp
        self.d_inner_local_tp = self.d_inner // tp
        device = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"

        self.in_proj = build_module(
            submodules.in_proj,
            d_model,
            self.d_inner * 2 + 2 * self.ngroups * self.d_state + self.nheads,  # z, x, B, C, dt
            config=config,
            init_method=config.init_method,
            gather_output=False,
            bias=bias,
            skip_bias_add=False,
            is_expert=False,
            tp_comm_buffer_name="fc1",
            tp_group=self.tp_group,
        )
        conv_dim = self.d_inner_local_tp + 2 * self.ngroups_local_tp * self.d_state  # the channels of x, B, C
        # Parameters are created and initialised in megatron's order with its RNG fork, so a seed gives the same
        # model whichever mixer builds it.
        with get_cuda_rng_tracker().fork():
            self.conv1d = nn.Conv1d(
                conv_dim,
                conv_dim,
                kernel_size=d_conv,
                groups=conv_dim,  # depthwise: one filter per channel
                padding=d_conv - 1,  # causal once the last d_conv - 1 outputs are cut off
                bias=conv_bias,
                device=device,
                dtype=config.params_dtype,
            )
            for parameter in self.conv1d.parameters():
                parameter.tensor_model_parallel = True
            if config.perform_initialization:
                if conv_init is not None:
                    nn.init.uniform_(self.conv1d.weight, -conv_init, conv_init)
                else:
                    nn.init.kaiming_uniform_(self.conv1d.weight, a=math.sqrt(5))
        with get_cuda_rng_tracker().fork():
            # dt_bias = softplus^-1(dt) for dt log-uniform in [dt_min, dt_max]: the step sizes start spread over scales.
            dt = torch.exp(
                torch.rand(self.nheads_local_tp, device=device, dtype=config.params_dtype)
                * (math.log(dt_max) - math.log(dt_min))
                + math.log(dt_min)
            ).clamp(min=dt_init_floor)
            self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
            # A = -exp(A_log) with exp(A_log) uniform in A_init_range; kept in fp32 (megatron does too).
            A = torch.empty(self.nheads_local_tp, dtype=torch.float32, device=device)
            if config.perform_initialization:
                A = A.uniform_(*A_init_range)
            self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner_local_tp if D_has_hdim else self.nheads_local_tp, device=device))
        for parameter in (self.dt_bias, self.A_log, self.D):
            parameter.tensor_model_parallel = True
        self.norm = GatedRMSNorm(
            self.d_inner_local_tp,
            group_size=self.d_inner_local_tp // self.ngroups_local_tp,
            device=device,
            dtype=config.params_dtype,
        )
        self.norm.weight.tensor_model_parallel = True
        self.out_proj = build_module(
            submodules.out_proj,
            self.d_inner,
            d_model,
            config=config,
            init_method=config.output_layer_init_method,
            bias=bias,
            input_is_parallel=True,
            skip_bias_add=True,
            is_expert=False,
            tp_comm_buffer_name="fc2",
            tp_group=self.tp_group,
        )

    def forward(self, hidden_states, inference_context=None, *, inference_params=None, packed_seq_params=None):
        """``hidden_states`` [L, B, d_model] -> (output [L, B, d_model], output bias), as megatron's mixer."""
        if inference_context is not None or inference_params is not None:
            raise NotImplementedError("the plain-PyTorch MambaMixer has no cached decoding: run full sequences")
        if packed_seq_params is not None:
            raise NotImplementedError("the plain-PyTorch MambaMixer does not take packed sequences")
        zxBCdt, _ = self.in_proj(hidden_states)
        y = self.mix(zxBCdt.transpose(0, 1))
        return self.out_proj(y.transpose(0, 1))

    def mix(self, zxBCdt: torch.Tensor) -> torch.Tensor:
        """This rank's projected inputs [B, L, proj] -> gated, normalised SSM output [B, L, d_inner / tp]."""
        batch, length, _ = zxBCdt.shape
        inner, groups, n = self.d_inner_local_tp, self.ngroups_local_tp, self.d_state
        z, xBC, dt = zxBCdt.split([inner, inner + 2 * groups * n, self.nheads_local_tp], dim=-1)
        xBC = F.silu(self.conv1d(xBC.transpose(1, 2))[..., :length]).transpose(1, 2)
        x, B, C = xBC.split([inner, groups * n, groups * n], dim=-1)
        x = x.unflatten(-1, (self.nheads_local_tp, self.headdim))
        dt = F.softplus(dt.float() + self.dt_bias.float())
        A = -torch.exp(self.A_log.float())
        y, _ = ssd_scan(x, dt, A, B.unflatten(-1, (groups, n)), C.unflatten(-1, (groups, n)), self.chunk_size)
        D = self.D.float().view(self.nheads_local_tp, -1)  # [h, 1], or [h, p] when D has a head dimension
        y = (y.float() + D * x.float()).to(x.dtype).flatten(-2)
        return self.norm(y, z)

    def sharded_state_dict(self, prefix="", sharded_offsets=(), metadata=None):
        """megatron's own (TP axes of A_log/dt_bias/D/conv1d/norm, in_proj split into z, x, B, C, dt): it reads only
        attributes this class defines under megatron's names, so distributed checkpoints are interchangeable."""
        from megatron.core.ssm.mamba_mixer import MambaMixer as MegatronMambaMixer

        return MegatronMambaMixer.sharded_state_dict(self, prefix, sharded_offsets, metadata)

    def mamba_state_shapes_per_request(self) -> tuple[tuple[int, int], tuple[int, int, int]]:
        """The conv and SSM state shapes of one sequence, as megatron's mixer reports them."""
        return (self.conv1d.weight.shape[0], self.d_conv), (self.nheads_local_tp, self.headdim, self.d_state)
