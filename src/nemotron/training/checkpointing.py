"""Resumable checkpoints in megatron-core's ``dist_checkpointing`` format, so they load at another layout.

Layout under ``<output_dir>/checkpoints``::

    iter_0000200/dist/          model and optimizer state (megatron's torch_dist format: every tensor saved once
                                with its place in the full tensor, whatever the tensor/pipeline/data-parallel layout)
                 rng_rank00000.pt   every rank's torch (and CUDA) RNG state (used when resuming at the same layout)
                 state.json     step, consumed samples, tokens seen, scheduler state, world size and layout
    latest                      text: the name of the newest complete iter_* directory (written atomically)

Resume = load everything ``latest`` names; at the same layout the loop continues bit-for-bit where it stopped; at
another layout (more nodes, another tensor-parallel size) megatron reshards the tensors as it loads them. The whole
iteration directory is written under a temporary name and renamed, so a killed job never leaves half a checkpoint.
Checkpoints of the earlier format (``model_tp0_pp0.pt`` per model-parallel shard) still load, at their own layout.

"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nemotron.errors import UserError
from nemotron.fsutil import atomic_write_text, fsync_dir

LATEST_FILE = "latest"
DIST_DIR = "dist"  # megatron's dist_checkpointing directory inside an iteration directory


@dataclass
class TrainingState:
    """Where the loop is: everything beyond model/optimizer weights needed to continue exactly."""

    step: int = 0
    consumed_samples: int = 0
    tokens_seen: int = 0
    last_loss: float = float("nan")


def current_layout() -> dict[str, int]:
    """This run's (tensor, pipeline, data)-parallel sizes: what a checkpoint records it was saved at."""
    from megatron.core import parallel_state

    return {
        "tensor_parallel": parallel_state.get_tensor_model_parallel_world_size(),
        "pipeline_parallel": parallel_state.get_pipeline_model_parallel_world_size(),
        "data_parallel": parallel_state.get_data_parallel_world_size(),
    }


def _rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def _world_size() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def _barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def iteration_dir(checkpoints: Path, step: int) -> Path:
    return checkpoints / f"iter_{step:07d}"


def _sharded_state(model, optimizer, *, loading: bool) -> dict[str, Any]:
    """The model's sharded state dict (megatron's: each tensor with its offset in the full tensor and its replica
    id, so one data-parallel replica writes it) and the optimizer's moments sharded exactly like their parameters
    (megatron's own helpers, as its FP32Optimizer uses them). AdamW's per-parameter ``step`` is one number for every
    parameter here, kept as a plain value.

    A sharded optimizer (ZeRO stage 1) holds the moments of the parameters this rank owns only: it writes those, as
    the one replica of them in its data-parallel group, and loads those — at whatever layout they were saved, since
    every moment is addressed by its place in the full tensor."""
    from megatron.core.dist_checkpointing.optimizer import (
        get_param_id_to_sharded_param_map,
        optim_state_to_sharding_state,
    )

    model_state = model.sharded_state_dict()
    if optimizer is None:
        return {"model": model_state}
    local, sharded = _local_optimizer(optimizer)
    if loading:
        _init_adam_state(local)  # tensors for the loader to fill (a fresh optimizer has none)
    optim_state = local.state_dict()
    steps = {float(s["step"]) for s in optim_state["state"].values() if "step" in s}
    params = [p for group in local.param_groups for p in group["params"]]
    optim_state_to_sharding_state(
        optim_state, get_param_id_to_sharded_param_map(model_state, params), exclude_keys=("step",)
    )
    if sharded:
        for moments in optim_state["state"].values():
            for name, moment in moments.items():
                moments[name] = _sole_replica_in_data_parallel(moment)
    optim_state["adam_step"] = steps.pop() if len(steps) == 1 else 0.0
    return {"model": model_state, "optimizer": optim_state}


def _local_optimizer(optimizer) -> tuple[Any, bool]:
    """(the optimizer holding this rank's AdamW state, whether it is a data-parallel shard of the whole)."""
    from torch.distributed.optim import ZeroRedundancyOptimizer

    if isinstance(optimizer, ZeroRedundancyOptimizer):
        return optimizer.optim, True
    return optimizer, False


def _sole_replica_in_data_parallel(sharded):
    """``sharded`` (a ShardedTensor whose replica id ends with the data-parallel rank, as megatron builds a
    parameter's) as the main replica within its data-parallel group: under ZeRO only the owner holds it."""
    import dataclasses

    replica = sharded.replica_id
    if isinstance(replica, tuple):
        return dataclasses.replace(sharded, replica_id=(*replica[:-1], 0))
    return dataclasses.replace(sharded, replica_id=0)


def _init_adam_state(optimizer) -> None:
    """AdamW's state as its first ``step`` creates it (torch.optim.adamw, foreach off, not capturable)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            if not optimizer.state[param]:
                optimizer.state[param] = {
                    "step": torch.tensor(0.0, dtype=torch.float32),
                    "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
                }


def _restore_optimizer(optimizer, loaded: dict[str, Any]) -> None:
    step = loaded.pop("adam_step")
    for param_state in loaded["state"].values():
        param_state["step"] = torch.tensor(step, dtype=torch.float32)
    optimizer.load_state_dict(loaded)


def save_checkpoint(checkpoints: Path, model, optimizer, scheduler, state: TrainingState) -> Path:
    """Collective: every rank calls it. Returns the final iteration directory, complete."""
    publish = _write(checkpoints, model, optimizer, scheduler, state, asynchronous=False)
    _barrier()
    publish()
    _barrier()
    return iteration_dir(checkpoints, state.step)


def _write(checkpoints: Path, model, optimizer, scheduler, state: TrainingState, asynchronous: bool):
    """Write the checkpoint of ``state`` under a temporary name; return what publishes it (renamed into place and
    named in ``latest`` by rank 0) once every rank's files are written — with ``asynchronous``, megatron's
    ``AsyncRequest`` whose last finalize step publishes it."""
    from megatron.core import dist_checkpointing

    _start_writer_process_deaf_to_stop_signals()
    rank = _rank()
    final = iteration_dir(checkpoints, state.step)
    temp = checkpoints / f".tmp-{final.name}"
    if rank == 0:
        shutil.rmtree(temp, ignore_errors=True)  # leftovers of a run killed while saving
        (temp / DIST_DIR).mkdir(parents=True)
    _barrier()
    document = {**state.__dict__, "scheduler": scheduler.state_dict(), "world_size": _world_size()}
    document["layout"] = current_layout()
    publish = functools.partial(_publish, checkpoints, temp, final, document) if rank == 0 else lambda: None
    sharded = _sharded_state(model, optimizer, loading=False)
    request = dist_checkpointing.save(sharded, str(temp / DIST_DIR), async_sharded_save=asynchronous)
    torch.save(_rng_states(), temp / f"rng_rank{rank:05d}.pt")
    if not asynchronous:
        return publish
    request.add_finalize_fn(publish)
    return request


def _publish(checkpoints: Path, temp: Path, final: Path, document: dict[str, Any]) -> None:
    """Rank 0, once every rank's files are in ``temp``: the loop state beside them, the directory renamed into place
    (atomically), ``latest`` pointing at it."""
    atomic_write_text(temp / "state.json", json.dumps(document, indent=2) + "\n")
    if final.exists():  # same step saved before a crash: the new copy is identical in content
        shutil.rmtree(final)
    temp.rename(final)
    fsync_dir(checkpoints)
    atomic_write_text(checkpoints / LATEST_FILE, final.name + "\n")


class CheckpointWriter:
    """The loop's checkpoints; with ``asynchronous``, the intermediate ones are written by a forked process
    (megatron-core's asynchronous ``dist_checkpointing.save``, from a copy of the state taken when saving) while
    training goes on, and published once every rank's writer has finished. A checkpoint that must exist when the
    call returns (the last one, one saved on a stop signal) waits for any earlier one and is written synchronously.
    Every method is collective: every rank calls it at the same step."""

    def __init__(self, checkpoints: Path, asynchronous: bool):
        self.checkpoints = checkpoints
        self.asynchronous = asynchronous
        self._queue = None
        self._pending: int | None = None  # the step of the asynchronous save in flight

    def save(self, model, optimizer, scheduler, state: TrainingState, *, wait: bool) -> int | None:
        """Save ``state``'s checkpoint; return the newest step published by this call (None: none yet)."""
        published = self.finish()  # one in flight at a time: each holds a copy of the whole state
        if wait or not self.asynchronous:
            save_checkpoint(self.checkpoints, model, optimizer, scheduler, state)
            return state.step
        from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue

        self._queue = self._queue or AsyncCallsQueue()
        self._queue.schedule_async_request(_write(self.checkpoints, model, optimizer, scheduler, state, True))
        self._pending = state.step
        return published

    def poll(self) -> int | None:
        """The step of the asynchronous save that every rank finished writing since the last call, now published."""
        return self._finalize(blocking=False)

    def finish(self) -> int | None:
        """Wait for the asynchronous save in flight, if any; return its step, published."""
        return self._finalize(blocking=True)

    def _finalize(self, blocking: bool) -> int | None:
        if self._pending is None:
            return None
        if not self._queue.maybe_finalize_async_calls(blocking=blocking):
            return None
        step, self._pending = self._pending, None
        return step


def _start_writer_process_deaf_to_stop_signals() -> None:
    """Start megatron's checkpoint writer process with SIGTERM and SIGUSR1 blocked, before its first save.

    Why: megatron's filesystem writer (``dist_checkpointing/strategies/filesystem_async.py``,
    ``_get_write_results_queue``) keeps its results in a ``multiprocessing`` Manager, a process it spawns at the first
    save and uses at every later one. A preemption or time-limit signal sent to every process of the step (srun
    forwards the batch script's signal to all of them; the local executor signals the run's process group) killed
    that process, and the checkpoint the ranks then saved because of that very signal failed (EOFError, seen on the
    2-node test cluster). A blocked signal stays blocked across the spawn's exec, so the writer never receives them;
    the ranks decide when to stop and shut it down when they exit. Blocked, not ignored, here: a signal arriving
    meanwhile waits and is delivered to this process once unblocked. multiprocessing's resource tracker (spawned
    with the first process) is started first, inside the same mask: its start unblocks SIGTERM in this thread.

    Deaf to SIGTERM, the writer must not outlive its rank: it is the same Manager megatron would start (spawned, its
    queue put where megatron looks for it), started with ``parent_death.die_with_parent`` so the kernel kills it when
    the rank dies however it dies (an orphaned one was seen holding 600 MB after a rank's hang watchdog ended it)."""
    import multiprocessing
    import signal
    from multiprocessing import resource_tracker
    from multiprocessing.managers import SyncManager

    from megatron.core.dist_checkpointing.strategies import filesystem_async

    from nemotron.training.parent_death import die_with_parent

    global _writer_manager
    if filesystem_async._results_queue is not None:
        return
    stop_signals = {signal.SIGTERM, signal.SIGUSR1}
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        resource_tracker.ensure_running()
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # again: the tracker's start unblocked SIGTERM
        _writer_manager = SyncManager(ctx=multiprocessing.get_context("spawn"))
        _writer_manager.start(die_with_parent, (os.getpid(),))
        filesystem_async._results_queue = _writer_manager.Queue()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


_writer_manager = None  # kept referenced: a Manager shuts its process down when it is garbage-collected


def latest_checkpoint(checkpoints: Path) -> Path | None:
    pointer = checkpoints / LATEST_FILE
    if not pointer.is_file():
        return None
    directory = checkpoints / pointer.read_text().strip()
    return directory if (directory / "state.json").is_file() else None


def load_checkpoint(directory: Path, model, optimizer, scheduler) -> TrainingState:
    """Restore model, optimizer, scheduler and (at the same layout) this rank's RNG state from ``directory``; return
    the loop state. A checkpoint of another layout is resharded as it loads."""
    from megatron.core import dist_checkpointing

    document = json.loads((directory / "state.json").read_text())
    same_world = (
        document["world_size"] == _world_size() and document.get("layout", current_layout()) == current_layout()
    )
    if not (directory / DIST_DIR).is_dir():
        _load_legacy_shard(directory, model, optimizer, document)
    else:
        loaded = dist_checkpointing.load(_sharded_state(model, optimizer, loading=True), str(directory / DIST_DIR))
        model.load_state_dict(loaded["model"])
        _restore_optimizer(_local_optimizer(optimizer)[0], loaded["optimizer"])
    scheduler.load_state_dict(document.pop("scheduler"))
    rng_file = directory / f"rng_rank{_rank():05d}.pt"
    if same_world and rng_file.is_file():  # another layout's ranks drew other numbers: nothing to continue
        _set_rng_states(torch.load(rng_file, weights_only=False))
    return TrainingState(**{k: document[k] for k in TrainingState.__dataclass_fields__})


def _legacy_shard_file(directory: Path, kind: str) -> Path:
    from megatron.core import parallel_state

    tp = parallel_state.get_tensor_model_parallel_rank()
    pp = parallel_state.get_pipeline_model_parallel_rank()
    return directory / f"{kind}_tp{tp}_pp{pp}.pt"


def _load_legacy_shard(directory: Path, model, optimizer, document: dict[str, Any]) -> None:
    """The format before dist_checkpointing: one torch.save per model-parallel shard, loadable at its own layout."""
    if document["world_size"] != _world_size():
        raise UserError(
            f"checkpoint {directory} (per-shard format) was written by {document['world_size']} ranks, this run has "
            f"{_world_size()}: resume it with the same world size (checkpoints saved since load at any layout)"
        )
    model.load_state_dict(torch.load(_legacy_shard_file(directory, "model"), map_location="cpu"))
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(_legacy_shard_file(directory, "optim"), map_location="cpu"))


def load_model_weights(directory: Path, model) -> None:
    """Only the weights (to start a new stage from another stage's checkpoint), at whatever layout they were saved.

    Not strict about ``_extra_state`` alone: Transformer Engine modules keep FP8 metadata under that key, megatron's
    own linears write None there, and attention has it only under TE, so a checkpoint made on a CPU lacks some of
    a GPU model's (and the reverse). Every parameter and buffer must still match."""
    from megatron.core import dist_checkpointing

    if (directory / DIST_DIR).is_dir():
        sharded = {k: v for k, v in model.sharded_state_dict().items() if not k.endswith("._extra_state")}
        try:
            state = dist_checkpointing.load({"model": sharded}, str(directory / DIST_DIR))["model"]
        except dist_checkpointing.core.CheckpointingException as err:
            raise UserError(f"model weights at {directory} do not fit this model: {str(err).splitlines()[0]}") from None
        where = directory / DIST_DIR
    else:
        where = _legacy_shard_file(directory, "model")
        if not where.is_file():
            raise UserError(
                f"no model weights at {where}: expected a checkpoint directory written by nemotron training"
            )
        state = torch.load(where, map_location="cpu")
    missing, unexpected = model.load_state_dict(state, strict=False)
    mismatched = [key for key in (*missing, *unexpected) if not key.endswith("._extra_state")]
    if mismatched:
        raise UserError(f"model weights at {where} do not fit this model: {', '.join(mismatched[:6])}")


def checkpoint_tensors(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of an iteration directory's dist checkpoint as one full tensor per key (model weights under
    their names, optimizer moments under ``optimizer.state.<moment>.<name>``), read in this process without a
    process group: to compare runs and inspect checkpoints."""
    import tempfile

    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory() as temp:
        dcp_to_torch_save(directory / DIST_DIR, Path(temp) / "full.pt")
        saved = torch.load(Path(temp) / "full.pt", weights_only=False)
    return {key: value for key, value in saved.items() if isinstance(value, torch.Tensor)}
