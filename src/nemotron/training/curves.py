"""A step's curves as TensorBoard event files in its output directory (``tensorboard --logdir <artifact root>``), and
in W&B when the job asks for it (``nemotron.tracking``).

The x axis is the global iteration, so the attempts of a requeued run draw one curve: a resumed writer opens a new
events file with ``purge_step`` = the first iteration it will redo, and TensorBoard hides what a killed attempt wrote
from there on (iterations past its last checkpoint, which the resumed attempt trains again). Rank 0 writes; the
other ranks' ``Curves`` do nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nemotron.tracking import wandb_run


class Curves:
    """Scalars by global iteration for one step's output directory."""

    def __init__(
        self,
        output_dir: Path,
        job_type: str,
        resumed_at: int = 0,
        writer: bool = True,
        config: dict[str, Any] | None = None,
    ):
        self._tensorboard = None
        self._wandb = None
        if not writer:
            return
        from torch.utils.tensorboard import SummaryWriter

        output_dir.mkdir(parents=True, exist_ok=True)
        # purge_step: an iteration this attempt logs again replaces the killed attempt's, in one curve
        self._tensorboard = SummaryWriter(str(output_dir), purge_step=resumed_at + 1 if resumed_at else None)
        self._wandb = wandb_run(output_dir, job_type, config)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if self._tensorboard is None:
            return
        for tag, value in scalars.items():
            self._tensorboard.add_scalar(tag, value, global_step=step)
        self._tensorboard.flush()  # a killed job keeps its curve up to here
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def close(self) -> None:
        """Close the events file; the W&B run stays open for the step's artifact (``nemotron.tracking.record_step``)."""
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    def __enter__(self) -> Curves:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def write_scalars(output_dir: Path, step: int, scalars: dict[str, float], job_type: str) -> None:
    """Figures of one moment (an evaluation of the checkpoint of iteration ``step``) as their own events file."""
    with Curves(output_dir, job_type) as curves:
        curves.log(step, scalars)
