"""The ``Dataset`` artifact written by a data-curation step (light: pydantic only, imported by the launcher)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from nemotron.artifact import Artifact


class Dataset(Artifact):
    """A curated, tokenized corpus ready for Megatron training, plus held-out evaluation items.

    Files under ``path``: ``train.parquet``/``valid.parquet`` (one ``text`` column), ``tokenizer.json`` (HF
    ``tokenizers``, EOD token ``<|endoftext|>``), Megatron indexed datasets ``train_text_document.{bin,idx}`` and
    ``valid_text_document.{bin,idx}`` (one document per entry, EOD appended; ``*_prefix`` has no extension), and
    ``eval/`` with ``facts_mc.jsonl`` ({"query", "choices", "gold"}) and ``facts_gen.jsonl`` ({"prompt", "target"}).

    ``num_examples`` counts train documents, ``num_tokens`` train tokens (EOD included). ``metrics`` holds
    ``documents_read``, ``documents_kept``, ``dropped_<filter>`` per filter, ``duplicate_rate``, ``tokens``,
    ``valid_tokens`` (and for the embedded corpus ``mc_chance_acc``).

    ``provides`` names the held-out evaluation sets under ``eval_dir`` by the task that reads them (the embedded
    world's ``facts_mc``, ``facts_gen``; stage1's ``instruct``; none for a user's own pretraining text): an evaluation
    step derives its default tasks from it and refuses the ones it lacks. Written by the step's ``provides(config)``.
    """

    num_examples: int = Field(gt=0)
    num_tokens: int = Field(gt=0)
    train_path: Path
    valid_path: Path
    tokenizer_path: Path
    train_prefix: Path
    valid_prefix: Path
    eval_dir: Path
    vocab_size: int = Field(gt=0)
    provides: list[str] = Field(default_factory=list)
