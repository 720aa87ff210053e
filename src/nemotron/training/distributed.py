"""torch.distributed and megatron's parallel state, initialised from whatever launched this process.

Three launchers, one code path: torchrun (``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT`` already set),
``srun`` with one rank per task (read through submitit's ``TorchDistributedEnvironment``: node list parsed by submitit,
``MASTER_PORT`` derived from the job id so every task agrees without talking), or a plain single process (world size
1 — megatron still needs a process group and its parallel state; its rendezvous is an in-memory store, because a
"free" TCP port picked up front can be taken by another process before the store binds it). gloo on CPU, nccl on GPU.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch

from nemotron.log import get_logger
from nemotron.step import Placement, launched_by
from nemotron.training.presets import check_parallelism

log = get_logger("training.distributed")


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int
    data_parallel_rank: int
    data_parallel_size: int
    device: torch.device
    launcher: str  # "torchrun", "slurm" or "single"

    @property
    def is_rank_zero(self) -> bool:
        return self.rank == 0


def _export_launcher_environment() -> str:
    """Make sure the env:// variables exist for a multi-process launch; return which launcher started this process."""
    launcher = launched_by()
    if launcher == "slurm":
        from submitit.helpers import TorchDistributedEnvironment

        # submitit picks its Slurm environment by this marker, which srun tasks started by hand do not carry.
        os.environ.setdefault("SUBMITIT_EXECUTOR", "slurm")
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    # A world of one exports nothing: RANK/MASTER_PORT left in os.environ would make every child process this one
    # starts (a test, a stage's subprocess) believe it is a torchrun rank of this world.
    return launcher


def init_distributed(tensor_parallel: int = 1, pipeline_parallel: int = 1) -> DistributedContext:
    """Initialise the process group (once) and megatron's model-parallel groups; data parallel fills the rest."""
    from megatron.core import parallel_state

    launcher = _export_launcher_environment()
    on_gpu = torch.cuda.is_available()
    # The rule the step's validate and the launcher's plan applied, now with the devices this process really sees.
    placement = dataclasses.replace(Placement.from_environment(), gpus_per_node=torch.cuda.device_count())
    check_parallelism(tensor_parallel, pipeline_parallel, placement)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if on_gpu else torch.device("cpu")
    if on_gpu:
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        backend = "nccl" if on_gpu else "gloo"
        if launcher == "single":
            torch.distributed.init_process_group(backend, store=torch.distributed.HashStore(), rank=0, world_size=1)
        else:
            torch.distributed.init_process_group(backend)
    world_size = torch.distributed.get_world_size()
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(tensor_parallel, pipeline_parallel)
    context = DistributedContext(
        rank=torch.distributed.get_rank(),
        world_size=world_size,
        local_rank=local_rank,
        data_parallel_rank=parallel_state.get_data_parallel_rank(),
        data_parallel_size=parallel_state.get_data_parallel_world_size(),
        device=device,
        launcher=launcher,
    )
    log.info("distributed: %s, rank %d of %d on %s", launcher, context.rank, world_size, device)
    return context


def destroy_distributed() -> None:
    from megatron.core import parallel_state

    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def all_reduce_gradients(model: torch.nn.Module) -> None:
    """Make every rank's gradients the whole batch's: sum over the tensor-parallel group those of parameters marked
    ``sequence_parallel`` (norms that saw only this rank's share of the sequence; megatron's ``finalize_model_grads``
    does the same), then average all of them over the data-parallel group. No-ops where a group has one rank."""
    from megatron.core import parallel_state

    shared = [p.grad for p in model.parameters() if p.grad is not None and getattr(p, "sequence_parallel", False)]
    _all_reduce_flat(shared, parallel_state.get_tensor_model_parallel_group(), average=False)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    _all_reduce_flat(grads, parallel_state.get_data_parallel_group(), average=True)


def _all_reduce_flat(grads: list[torch.Tensor], group, average: bool) -> None:
    """One all-reduce of ``grads`` flattened together (one message rather than one per tensor)."""
    size = torch.distributed.get_world_size(group)
    if size == 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat, group=group)
    if average:
        flat /= size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def clip_gradients(model: torch.nn.Module, max_norm: float) -> torch.Tensor:
    """Scale gradients so their global L2 norm is at most ``max_norm``; return that norm (before clipping).

    Global means the whole model's: a tensor-parallel shard counts once per shard, a parameter every tensor-parallel
    rank holds a copy of (norms, replicated biases) once, and the sum is all-reduced over the model-parallel group —
    megatron's ``get_grad_norm_fp32`` rule (its own function allocates on CUDA). ``clip_grad_norm_`` on one rank's
    parameters would clip each tensor-parallel rank by another factor. With one model-parallel rank it computes
    exactly what ``torch.nn.utils.clip_grad_norm_`` does.
    """
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel import param_is_not_tensor_parallel_duplicate

    params = [p for p in model.parameters() if p.grad is not None]
    norms = torch.stack(
        [torch.linalg.vector_norm(p.grad.detach()) for p in params if param_is_not_tensor_parallel_duplicate(p)]
    )
    group = parallel_state.get_model_parallel_group()
    if torch.distributed.get_world_size(group) == 1:
        total = torch.linalg.vector_norm(norms)
    else:
        squares = norms.pow(2).sum()
        torch.distributed.all_reduce(squares, group=group)
        total = squares.sqrt()
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for p in params:
        p.grad.detach().mul_(scale)
    return total


def any_rank(flag: bool, device: torch.device) -> bool:
    """True if ``flag`` is true on any rank (used so every rank stops at the same step after a signal)."""
    if not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item() > 0)
