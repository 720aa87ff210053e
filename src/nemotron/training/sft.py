"""Supervised fine-tuning batches: packed chat rows (tokens + assistant-only loss mask) fed to the shared loop.

Rows hold ``seq_length + 1`` tokens; a sample's inputs are the first ``seq_length``, its labels the next-token shift,
and its loss mask the shifted assistant mask, so ``loop.language_model_loss`` (a masked cross-entropy) is the SFT
loss. Sample ``i`` is a pure function of (rows, seed, i): epochs are reshuffled by the seed, and resuming only needs
the number of samples consumed, like stage0.
"""

from __future__ import annotations

import numpy as np
import torch

from nemotron.errors import UserError

Batch = dict[str, torch.Tensor]


class PackedSFTSamples:
    """Samples over packed rows, reshuffled each epoch (``seed``, epoch) so order never depends on the run history."""

    def __init__(self, tokens: np.ndarray, loss_mask: np.ndarray, seq_length: int, seed: int):
        if tokens.ndim != 2 or tokens.shape[1] != seq_length + 1 or tokens.shape != loss_mask.shape:
            raise UserError(
                f"packed SFT rows have shape {list(tokens.shape)}, the model needs rows of {seq_length + 1} tokens: "
                "curate the data against the same checkpoint you train from"
            )
        if not loss_mask[:, 1:].any():
            raise UserError("packed SFT data has no assistant tokens to train on")
        self.tokens = torch.as_tensor(tokens.astype(np.int64))
        self.loss_mask = torch.as_tensor(loss_mask[:, 1:].astype(np.float32))
        self.seed = seed
        self._orders: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.tokens)

    def _row(self, sample: int) -> int:
        epoch, position = divmod(sample, len(self))
        if epoch not in self._orders:
            self._orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(len(self))
        return int(self._orders[epoch][position])

    def batch(self, first_sample: int, batch_size: int) -> Batch:
        return self._rows([self._row(i) for i in range(first_sample, first_sample + batch_size)])

    def in_order(self, first_sample: int, batch_size: int) -> Batch:
        """Rows ``first_sample ..`` unshuffled (validation: each row once)."""
        return self._rows(list(range(first_sample, min(first_sample + batch_size, len(self)))))

    def _rows(self, rows: list[int]) -> Batch:
        tokens = self.tokens[rows]
        seq_length = tokens.shape[1] - 1
        return {
            "tokens": tokens[:, :-1],
            "labels": tokens[:, 1:],
            "loss_mask": self.loss_mask[rows],
            "position_ids": torch.arange(seq_length).expand(len(rows), seq_length),
        }
