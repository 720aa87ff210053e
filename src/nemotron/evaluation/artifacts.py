"""The ``Results`` artifact written by an evaluation step (light: pydantic only, imported by the launcher)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from nemotron.artifact import Artifact


class Results(Artifact):
    """Scores of one checkpoint on a list of lm-eval tasks.

    ``tasks`` maps each task to its lm-eval metrics (``{"facts_mc": {"acc": 0.61, "acc_stderr": 0.03}}``);
    ``metrics`` holds the same figures flattened (``facts_mc/acc``) plus derived ones (``valid_perplexity``,
    ``facts_mc/chance_acc``) so a dashboard or a test reads one flat dict.
    """

    tasks: dict[str, dict[str, float]] = Field(min_length=1)
    checkpoint_path: Path
    dataset_path: Path | None = None
    num_samples: dict[str, int] = Field(default_factory=dict)
