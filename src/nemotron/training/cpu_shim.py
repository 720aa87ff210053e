"""Everything megatron-core 0.16 needs to train on a machine without CUDA, in one place.

megatron-core is written for GPUs: a few code paths ask CUDA for a device or an RNG state even when every tensor
lives on the CPU. Each patch below names the upstream behaviour it works around and when it can go. They are applied
only when CUDA is unavailable (``apply_cpu_shim`` is a no-op on a GPU machine) and are idempotent.
"""

from __future__ import annotations

import torch

_applied = False


def apply_cpu_shim() -> bool:
    """Patch megatron-core for CPU training; return True if the shim is active (no CUDA), False on a GPU machine."""
    global _applied
    if torch.cuda.is_available():
        return False
    if _applied:
        return True
    _current_device_is_cpu()
    _synchronize_is_a_no_op()
    _final_norm_without_transformer_engine()
    _pipeline_token_counter_on_cpu()
    _applied = True
    return True


def _current_device_is_cpu() -> None:
    # Why: megatron uses ``torch.cuda.current_device()`` as a *device* for freshly allocated tensors (the global
    # memory buffer in ``megatron.core.utils.GlobalMemoryBuffer.get_tensor``; RoPE frequencies in
    # ``models/common/embeddings/rotary_pos_embedding.py``). Without CUDA that call raises. Returning "cpu" makes
    # those allocations land where every other tensor is. Remove when upstream derives the device from its inputs.
    torch.cuda.current_device = lambda: "cpu"  # type: ignore[assignment]


def _synchronize_is_a_no_op() -> None:
    # Why: dist_checkpointing's filesystem writer calls ``torch.cuda.synchronize()`` unconditionally after copying
    # the tensors it saves to host memory (``strategies/filesystem_async.py``: ``preload_tensors``); without CUDA
    # that raises.
    # On CPU every operation is already complete when it returns, so there is nothing to wait for. Remove when
    # upstream synchronises only the device its tensors are on.
    torch.cuda.synchronize = lambda device=None: None  # type: ignore[assignment]


def _final_norm_without_transformer_engine() -> None:
    # Why: ``MambaStack.__init__`` (megatron/core/ssm/mamba_block.py) builds its final norm with ``TENorm`` directly
    # instead of taking it from the layer spec, and TENorm raises without Transformer Engine (which cannot be
    # installed without CUDA). ``TorchNorm`` is the same RMSNorm/LayerNorm in plain PyTorch with the same
    # constructor (megatron's ``WrappedTorchNorm``, sequence parallelism included). Remove when the final norm comes
    # from ``MambaStackSubmodules``.
    from megatron.core.ssm import mamba_block

    from nemotron.training.mamba import TorchNorm

    mamba_block.TENorm = TorchNorm


class _TorchAllocatingOnCpu:
    """``torch`` as one module sees it, with tensors asked for on ``"cuda"`` by name created on the CPU."""

    def __getattr__(self, name: str):
        return getattr(torch, name)

    @staticmethod
    def zeros(*size, device=None, **kwargs):
        return torch.zeros(*size, device="cpu" if device == "cuda" else device, **kwargs)


def _pipeline_token_counter_on_cpu() -> None:
    # Why: every schedule in ``megatron/core/pipeline_parallel/schedules.py`` (the no-pipelining one too) counts the
    # step's tokens in ``torch.zeros([], dtype=torch.int, device="cuda")``, a device named as a string, which raises
    # without CUDA. The schedules module alone sees a ``torch`` whose ``zeros`` puts such a tensor on the CPU, where
    # the per-micro-batch counts it adds up already are. Remove when upstream allocates it on the current device.
    from megatron.core.pipeline_parallel import schedules

    schedules.torch = _TorchAllocatingOnCpu()


def reset_rng_tracker(seed: int) -> None:
    """Seed torch and megatron's model-parallel RNG tracker in a way that works with or without CUDA.

    Why: ``tensor_parallel.model_parallel_cuda_manual_seed`` calls ``torch.cuda.manual_seed`` and forks CUDA RNG
    states, which fails on CPU. megatron's *inference* RNG tracker keeps no CUDA state, and our models have no
    dropout (Nemotron-H trains without it), so the tracker only needs to exist. Remove with the CPU shim above.
    """
    from megatron.core import tensor_parallel

    torch.manual_seed(seed)
    if torch.cuda.is_available():
        tensor_parallel.model_parallel_cuda_manual_seed(seed)
    else:
        tensor_parallel.random.initialize_rng_tracker(inference_rng_tracker=True, force_reset=True)
