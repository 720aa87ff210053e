"""What every evaluation step shares: its input fields and the checks its validate makes (light: no torch, no lm_eval;
run at plan time and at start)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nemotron.errors import UserError
from nemotron.evaluation.artifacts import Results
from nemotron.step import StepConfig, check_input
from nemotron.training.artifacts import Checkpoint


@dataclass
class CheckpointEvalConfig(StepConfig):
    """An evaluation step's input: the Checkpoint it scores (the declaration's ``checkpoint`` input)."""

    checkpoint_path: Path | None = None
    """Checkpoint directory (else --checkpoint-artifact, else the training step's JSON on stdin)."""
    checkpoint_artifact: str | None = None
    """Tracked Checkpoint name instead of a path, e.g. sft-checkpoint:latest."""


@dataclass
class ComparedEvalConfig(CheckpointEvalConfig):
    """An evaluation step of a later stage: also the previous stage's Results of the model this one started from
    (the declaration's optional ``baseline`` input)."""

    baseline_path: Path | None = None
    """The previous stage's Results of the input model: compared with (vs_baseline/*) and recorded in lineage."""
    baseline_artifact: str | None = None
    """Tracked baseline Results instead of a path, e.g. pretrain-results:latest."""


def check_inputs(config: CheckpointEvalConfig) -> None:
    """The given input paths hold the artifacts the step reads."""
    check_input(config.checkpoint_path, Checkpoint, "--checkpoint-path")
    if isinstance(config, ComparedEvalConfig):
        check_input(config.baseline_path, Results, "--baseline-path")


def check_sizes(limit: int | None, batch_size: int, max_new_tokens: int = 1) -> None:
    """Refuse a non-positive ``--limit``/``--batch-size``/``--max-new-tokens``, naming the flag.

    An evaluation step's ``validate`` calls this: the launcher runs it when it plans, so a bad ``evaluation.limit``
    is refused before training is submitted rather than after it ran.
    """
    if limit is not None and limit < 1:
        raise UserError(f"--limit {limit}: must be a positive number of items (or unset for all)")
    for flag, value in (("--batch-size", batch_size), ("--max-new-tokens", max_new_tokens)):
        if value < 1:
            raise UserError(f"{flag} {value}: must be at least 1")
