"""The ``Dataset`` artifact written by a data-curation step (light: pydantic only, imported by the launcher)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from nemotron.artifact import Artifact


class DatasetShard(BaseModel):
    """One shard of a sharded Dataset (``data_curation.shards=N``): a directory under the Dataset's ``path`` holding
    that hash partition's ``train``/``valid`` Parquet files and indexed datasets, with its counts."""

    path: str  # relative to the Dataset's path, e.g. "shards/00003"
    train_documents: int = Field(ge=0)
    valid_documents: int = Field(ge=0)
    train_tokens: int = Field(ge=0)
    valid_tokens: int = Field(ge=0)


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
    # Sharded curation: every shard, in index order (empty: one unsharded corpus at ``train_prefix``). The
    # ``train_*``/``valid_*`` paths above then name the first shard holding documents of that split, which is what
    # a reader of one file (the evaluation's valid perplexity) samples; training reads ``train_blend()``.
    shards: list[DatasetShard] = Field(default_factory=list)

    def train_blend(self) -> tuple[list[Path], list[float] | None]:
        """The train split as megatron's blend: its indexed-dataset prefixes and their weights (None for one). A
        sharded Dataset's shards are one corpus, so each weighs its share of the tokens (empty shards are left out)."""
        return self._blend("train", self.train_prefix)

    def valid_blend(self) -> tuple[list[Path], list[float] | None]:
        return self._blend("valid", self.valid_prefix)

    def _blend(self, split: str, single: Path) -> tuple[list[Path], list[float] | None]:
        if not self.shards:
            return [Path(single)], None
        held = [(s, getattr(s, f"{split}_tokens")) for s in self.shards if getattr(s, f"{split}_documents") > 0]
        return [Path(self.path) / s.path / f"{split}_text_document" for s, _ in held], [float(t) for _, t in held]
