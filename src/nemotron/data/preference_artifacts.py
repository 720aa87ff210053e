"""The ``PreferenceDataset`` artifact written by an alignment data-curation step (light: pydantic only)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from nemotron.artifact import Artifact


class PreferenceDataset(Artifact):
    """Tokenized preference pairs for DPO, plus held-out pairs for evaluation.

    Files under ``path``: ``train.jsonl`` and ``heldout.jsonl`` (one pair per line: ``prompt``, ``chosen``,
    ``rejected`` as text and ``prompt_ids``, ``chosen_ids``, ``rejected_ids``; responses end with EOD) and
    ``tokenizer.json`` (a copy of the input model's, so ids match its vocabulary).

    ``checkpoint_path`` is the model whose tokenizer was used: the default DPO starting point and reference.
    ``max_length`` bounds prompt + response tokens of every pair.
    """

    num_examples: int = Field(gt=0)
    num_heldout: int = Field(gt=0)
    train_path: Path
    heldout_path: Path
    tokenizer_path: Path
    checkpoint_path: Path
    vocab_size: int = Field(gt=0)
    max_length: int = Field(gt=0)
