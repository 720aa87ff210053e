"""The ``Checkpoint`` artifact written by a training step (light: pydantic only, imported by the launcher)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from nemotron.artifact import Artifact


class Checkpoint(Artifact):
    """Trained weights plus everything a downstream step needs to use them.

    Files under ``path``: ``checkpoints/iter_NNNNNNN/`` (one directory per saved step: ``dist/``, model and
    optimizer state in megatron-core's ``dist_checkpointing`` format, which loads at any tensor/pipeline/data-parallel
    layout; ``rng_rank*.pt``, ``state.json``; written to a temp dir and renamed; artifacts written before hold
    ``model_tp0_pp0.pt``/``optim_*.pt`` per model-parallel shard instead, loadable at their own layout),
    ``checkpoints/latest`` (the newest complete step),
    ``metrics.jsonl`` (one JSON object per logged step: step, loss, lr, tokens_per_second; a final line with
    valid_loss and unigram_loss) and ``loss.png``.

    ``checkpoint_path`` is the directory holding the final weights (the sharded state of the megatron ``MambaModel``
    or ``GPTModel`` its ``model`` family names; load it with ``nemotron.training.inference.load_for_inference`` or
    ``nemotron.training.checkpointing.load_model_weights``, at any layout). ``layout`` is the one they were saved at
    (``tensor_parallel``, ``pipeline_parallel``, ``data_parallel``; empty in artifacts written before it existed).
    ``model`` is the model config (``nemotron.training.model.ModelConfig`` as a dict, plus the padded ``vocab_size``)
    the weights fit; ``substitutions`` says in words what differs from the published architecture because of the
    machine it ran on. Every machine builds the published layer kinds now (CPU runs Mamba-2 in plain PyTorch), so it
    is empty; the field stays so artifacts written before (CPU attention in place of Mamba-2) still load. Metrics:
    ``training_loss``,
    ``valid_loss``, ``unigram_loss``, ``tokens_per_second``.
    """

    num_steps: int = Field(ge=0)
    training_loss: float
    checkpoint_path: Path
    tokens_seen: int = Field(ge=0)
    model: dict[str, Any]
    world_size: int = Field(gt=0)
    layout: dict[str, int] = Field(default_factory=dict)
    tokenizer_path: Path
    dataset_path: Path
    substitutions: list[str] = Field(default_factory=list)
