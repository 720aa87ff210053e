"""Resumable checkpoints: written to a temp directory and renamed, so a killed job never leaves half a checkpoint.

Layout under ``<output_dir>/checkpoints``::

    iter_0000200/model_tp0_pp0.pt   model state_dict of one model-parallel shard (written by data-parallel rank 0)
                 optim_tp0_pp0.pt   optimizer state of that shard
                 rng_rank00000.pt   every rank's torch (and CUDA) RNG state
                 state.json         step, consumed samples, tokens seen, scheduler state, world size
    latest                          text: the name of the newest complete iter_* directory (written atomically)

Resume = load everything ``latest`` names; the training loop then continues bit-for-bit where it stopped.
"""

from __future__ import annotations

import json
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


@dataclass
class TrainingState:
    """Where the loop is: everything beyond model/optimizer weights needed to continue exactly."""

    step: int = 0
    consumed_samples: int = 0
    tokens_seen: int = 0
    last_loss: float = float("nan")


def _shard_suffix() -> str:
    from megatron.core import parallel_state

    tp = parallel_state.get_tensor_model_parallel_rank()
    pp = parallel_state.get_pipeline_model_parallel_rank()
    return f"tp{tp}_pp{pp}"


def _writes_shard() -> bool:
    from megatron.core import parallel_state

    return parallel_state.get_data_parallel_rank() == 0


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


def save_checkpoint(checkpoints: Path, model, optimizer, scheduler, state: TrainingState) -> Path:
    """Collective: every rank calls it. Returns the final iteration directory."""
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    final = iteration_dir(checkpoints, state.step)
    temp = checkpoints / f".tmp-{final.name}"
    if rank == 0:
        shutil.rmtree(temp, ignore_errors=True)  # leftovers of a run killed while saving
        temp.mkdir(parents=True)
    _barrier()
    if _writes_shard():
        torch.save(model.state_dict(), temp / f"model_{_shard_suffix()}.pt")
        torch.save(optimizer.state_dict(), temp / f"optim_{_shard_suffix()}.pt")
    torch.save(_rng_states(), temp / f"rng_rank{rank:05d}.pt")
    _barrier()
    if rank == 0:
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        document = {**state.__dict__, "scheduler": scheduler.state_dict(), "world_size": world}
        atomic_write_text(temp / "state.json", json.dumps(document, indent=2) + "\n")
        if final.exists():  # same step saved before a crash: the new copy is identical in content
            shutil.rmtree(final)
        temp.rename(final)
        fsync_dir(checkpoints)
        atomic_write_text(checkpoints / LATEST_FILE, final.name + "\n")
    _barrier()
    return final


def latest_checkpoint(checkpoints: Path) -> Path | None:
    pointer = checkpoints / LATEST_FILE
    if not pointer.is_file():
        return None
    directory = checkpoints / pointer.read_text().strip()
    return directory if (directory / "state.json").is_file() else None


def load_checkpoint(directory: Path, model, optimizer, scheduler) -> TrainingState:
    """Restore model, optimizer, scheduler and this rank's RNG state from ``directory``; return the loop state."""
    document = json.loads((directory / "state.json").read_text())
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    if document["world_size"] != world:
        raise UserError(
            f"checkpoint {directory} was written by {document['world_size']} ranks, this run has {world}: "
            "resume with the same world size or use a fresh output directory"
        )
    model.load_state_dict(torch.load(directory / f"model_{_shard_suffix()}.pt", map_location="cpu"))
    optimizer.load_state_dict(torch.load(directory / f"optim_{_shard_suffix()}.pt", map_location="cpu"))
    scheduler.load_state_dict(document.pop("scheduler"))
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    _set_rng_states(torch.load(directory / f"rng_rank{rank:05d}.pt", weights_only=False))
    return TrainingState(**{k: document[k] for k in TrainingState.__dataclass_fields__})


def load_model_weights(directory: Path, model) -> None:
    """Only the weights (to start a new stage from another stage's checkpoint)."""
    path = directory / f"model_{_shard_suffix()}.pt"
    if not path.is_file():
        raise UserError(f"no model weights at {path}: expected a checkpoint directory written by nemotron training")
    state = torch.load(path, map_location="cpu")
    # Not strict about ``_extra_state`` alone: Transformer Engine modules keep FP8 metadata under that key, megatron's
    # own linears write None there, and attention has it only under TE, so a checkpoint made on a CPU lacks some of
    # a GPU model's (and the reverse). Every parameter and buffer must still match.
    missing, unexpected = model.load_state_dict(state, strict=False)
    mismatched = [key for key in (*missing, *unexpected) if not key.endswith("._extra_state")]
    if mismatched:
        raise UserError(f"model weights at {path} do not fit this model: {', '.join(mismatched[:6])}")
