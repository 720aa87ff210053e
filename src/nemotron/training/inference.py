"""Load a trained Checkpoint for inference: ``model, forward = load_for_inference(checkpoint)``.

``forward(tokens)`` takes a LongTensor ``[B, T]`` (T <= the model's seq_length) and returns float32 logits
``[B, T, V]`` on the CPU, V = the dataset's vocabulary size (megatron's padding of the output layer is cut off).
No gradients, model in eval mode. Works in a plain process: if torch.distributed is not initialised yet, a
single-process (world size 1) group is created, because megatron layers need its parallel state.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from nemotron.errors import UserError
from nemotron.training.artifacts import Checkpoint
from nemotron.training.checkpointing import load_model_weights
from nemotron.training.model import ModelConfig, causal_mask
from nemotron.training.run import prepare_model_run

Forward = Callable[[torch.Tensor], torch.Tensor]


def load_for_inference(checkpoint: Checkpoint, vocab_size: int | None = None) -> tuple[torch.nn.Module, Forward]:
    """The checkpoint's model with its final weights, and a logits function (see module doc).

    ``vocab_size`` (default: ``checkpoint.config``'s dataset vocabulary, read from the model's padded size otherwise)
    is the number of logits returned per position.
    """
    config = ModelConfig.from_dict(checkpoint.model)
    padded = int(checkpoint.model["vocab_size"])
    run = prepare_model_run(config, seed=0, vocab_size=padded)
    load_model_weights(Path(checkpoint.checkpoint_path), run.model)
    model = run.model.eval()
    keep = vocab_size or _dataset_vocab_size(checkpoint) or padded

    @torch.no_grad()
    def forward(tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 2 or tokens.shape[1] > config.seq_length:
            raise ValueError(f"tokens must be [B, T<= {config.seq_length}], got {list(tokens.shape)}")
        tokens = tokens.to(run.ctx.device, dtype=torch.long)
        positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
        logits = model(tokens, positions, causal_mask(tokens.shape[1], tokens.device))
        return logits[..., :keep].float().cpu()

    return model, forward


def _dataset_vocab_size(checkpoint: Checkpoint) -> int | None:
    from nemotron.data.artifacts import Dataset

    try:
        return Dataset.load(path=checkpoint.dataset_path).vocab_size
    except UserError:
        return None
