"""Training and validation samples from megatron indexed datasets, via megatron's own GPTDataset.

``BlendedMegatronDatasetBuilder`` builds a ``GPTDataset`` per split: documents shuffled by the seed and packed into
fixed-length samples (``seq_length + 1`` tokens, so labels are the next tokens). Sample ``i`` is a pure function of
(data, seed, i): the data position to resume from is just the number of samples consumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from megatron.core.datasets.blended_dataset import BlendedDataset
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
from megatron.core.datasets.indexed_dataset import IndexedDataset

from nemotron.errors import UserError
from nemotron.training.blend import MegatronBlend


@dataclass(frozen=True)
class _VocabInfo:
    """What GPTDataset asks of a tokenizer. ``eod`` only matters with reset_position_ids/reset_attention_mask/
    eod_mask_loss, all off here (documents are packed EOD-separated and attend across the boundary, as in
    Megatron-LM pretraining)."""

    vocab_size: int
    eod: int = 0

    @property
    def unique_identifiers(self) -> dict[str, int]:
        # megatron hashes its config (tokenizer included) to name the index cache files.
        return {"vocab_size": self.vocab_size, "eod": self.eod}


def count_tokens(prefix: Path) -> int:
    dataset = IndexedDataset(str(prefix))  # keep it alive: its sequence_lengths view the mmap it closes when freed
    return int(dataset.sequence_lengths.sum())


def check_prefix(prefix: Path, what: str) -> None:
    missing = [p for p in (Path(f"{prefix}.bin"), Path(f"{prefix}.idx")) if not p.is_file()]
    if missing:
        raise UserError(f"{what} {prefix}: {missing[0]} does not exist (expected a megatron indexed dataset)")


def build_datasets(
    train: MegatronBlend,
    valid: MegatronBlend,
    *,
    seq_length: int,
    seed: int,
    num_train_samples: int,
    vocab_size: int,
    cache_dir: Path,
) -> tuple[GPTDataset | BlendedDataset, GPTDataset | BlendedDataset]:
    """The train set (``num_train_samples`` samples, epochs repeated as needed) and about one pass of the valid set.

    One prefix is a GPTDataset. Several (a weighted blend of Datasets, or a sharded Dataset's shards) are megatron's
    BlendedDataset: a GPTDataset per prefix, and sample ``i`` drawn from dataset ``dataset_index[i]`` in the weights'
    proportions (megatron's deterministic greedy interleave: every prefix of the sample order holds them to within
    one sample)."""
    num_valid_samples = max(1, (sum(count_tokens(p) for p in valid.prefixes) - 1) // seq_length)
    config = GPTDatasetConfig(
        random_seed=seed,
        sequence_length=seq_length,
        blend_per_split=[_split(train), _split(valid), None],
        tokenizer=_VocabInfo(vocab_size),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
        # Index caches go beside our outputs, never into the (read-only, shared) dataset artifact.
        path_to_cache=str(cache_dir),
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    train, valid, _ = BlendedMegatronDatasetBuilder(
        GPTDataset, [num_train_samples, num_valid_samples, None], lambda: True, config
    ).build()
    return train, valid


def get_batch(dataset: GPTDataset, first_sample: int, batch_size: int) -> dict[str, torch.Tensor]:
    """Samples ``first_sample .. first_sample + batch_size - 1`` stacked: tokens, labels, loss_mask, position_ids."""
    samples = [dataset[i] for i in range(first_sample, first_sample + batch_size)]
    keys = ("tokens", "labels", "loss_mask", "position_ids")
    return {k: torch.stack([torch.as_tensor(s[k]) for s in samples]) for k in keys}


def consumed_shares(train: GPTDataset | BlendedDataset, consumed_samples: int, blend: MegatronBlend) -> list[float]:
    """Each blended Dataset's share of the samples ``0 .. consumed_samples-1`` (what the loop trained on), counted
    from the BlendedDataset's own ``dataset_index`` (which prefix each sample came from) and ``blend.owners``."""
    if not isinstance(train, BlendedDataset):
        return [1.0]
    drawn = np.bincount(train.dataset_index[:consumed_samples], minlength=len(blend.prefixes))
    per_owner = np.bincount(np.asarray(blend.owners), weights=drawn, minlength=max(blend.owners) + 1)
    return (per_owner / max(1, consumed_samples)).tolist()


def unigram_loss(train: MegatronBlend, valid: GPTDataset | BlendedDataset, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of the valid labels under the train set's add-one-smoothed unigram distribution:
    the loss of a model that learned token frequencies and nothing else — the bar real learning must clear. A blend's
    distribution mixes its prefixes' by their weights (scaled to its total token count: one prefix's is unchanged)."""
    per_prefix = [_token_counts(prefix, vocab_size) for prefix in train.prefixes]
    if len(per_prefix) == 1:
        counts = per_prefix[0]
    else:
        weights = np.asarray(train.weights, dtype=np.float64)
        weights = weights / weights.sum()
        total = sum(c.sum() for c in per_prefix)
        counts = sum(w * c / c.sum() for w, c in zip(weights, per_prefix, strict=True)) * total
    log_probs = np.log((counts + 1.0) / (counts.sum() + vocab_size))
    labels = np.concatenate([np.asarray(valid[i]["labels"]) for i in range(len(valid))])
    return float(-log_probs[labels].mean())


def _split(blend: MegatronBlend) -> tuple[list[str], list[float] | None]:
    return [str(p) for p in blend.prefixes], blend.weights


def _token_counts(prefix: Path, vocab_size: int) -> np.ndarray:
    index = IndexedDataset(str(prefix))
    counts = np.zeros(vocab_size, dtype=np.float64)
    for i in range(len(index)):
        counts += np.bincount(index[i], minlength=vocab_size)[:vocab_size]
    return counts
