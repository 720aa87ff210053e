"""The streaming curation pass: raw documents in, deduplicated train/valid Parquet files out, with counts.

One pass, bounded memory: each document is normalised, scored, hashed, routed to a split by its hash and appended to
a buffered Parquet writer; only the dedup table (8-16 bytes per distinct document) grows with the corpus.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from nemotron.data.filters import HashSet, content_hash, is_valid_split, normalize_text, quality_score
from nemotron.errors import UserError

TEXT_SCHEMA = pa.schema([pa.field("text", pa.string(), nullable=False)])
WRITE_BATCH_ROWS = 1024
FILTERS = ("empty", "quality", "duplicate")


class ParquetTextWriter:
    """Append texts to a one-column (``text``) Parquet file, flushing a row group every ``WRITE_BATCH_ROWS``."""

    def __init__(self, path: Path):
        self._writer = pq.ParquetWriter(path, TEXT_SCHEMA, compression="zstd")
        self._buffer: list[str] = []
        self.rows = 0

    def write(self, text: str) -> None:
        self._buffer.append(text)
        self.rows += 1
        if len(self._buffer) >= WRITE_BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write_table(pa.table({"text": self._buffer}, schema=TEXT_SCHEMA))
            self._buffer = []

    def close(self) -> None:
        self._flush()
        self._writer.close()


@dataclass
class CurationStats:
    documents_read: int = 0
    train_documents: int = 0
    valid_documents: int = 0
    dropped: Counter = field(default_factory=Counter)  # filter name -> documents it removed
    weak_quality_checks: Counter = field(default_factory=Counter)  # quality check -> documents it failed

    @property
    def documents_kept(self) -> int:
        return self.train_documents + self.valid_documents

    def metrics(self) -> dict[str, float]:
        """``documents_read``, ``documents_kept``, ``dropped_<filter>`` for every filter (zeros included),
        ``dropped_quality_<check>`` for the check that failed, and ``duplicate_rate`` = duplicates / documents read.
        """
        out: dict[str, float] = {"documents_read": self.documents_read, "documents_kept": self.documents_kept}
        out.update({f"dropped_{name}": self.dropped[name] for name in FILTERS})
        out.update({f"dropped_quality_{check}": n for check, n in sorted(self.weak_quality_checks.items())})
        out["duplicate_rate"] = self.dropped["duplicate"] / self.documents_read if self.documents_read else 0.0
        out["train_documents"] = self.train_documents
        out["valid_documents"] = self.valid_documents
        return out


class _SplitWriter:
    """Writes each split one document late, so that a split left empty at the end can take the other's last one."""

    def __init__(self, train_path: Path, valid_path: Path, balance: bool = True):
        self.writers = {"train": ParquetTextWriter(train_path), "valid": ParquetTextWriter(valid_path)}
        self.pending: dict[str, str | None] = {"train": None, "valid": None}
        # A shard does not balance: its documents stay in their hash's split, as in an unsharded run of the corpus.
        self.balance = balance

    def add(self, split: str, text: str) -> None:
        if self.pending[split] is not None:
            self.writers[split].write(self.pending[split])
        self.pending[split] = text

    def close(self) -> dict[str, int]:
        for split, other in (("train", "valid"), ("valid", "train")) if self.balance else ():
            empty = self.writers[split].rows == 0 and self.pending[split] is None
            if empty and self.pending[other] is not None and self.writers[other].rows > 0:
                self.pending[split], self.pending[other] = self.pending[other], None
        for split, writer in self.writers.items():
            if self.pending[split] is not None:
                writer.write(self.pending[split])
            writer.close()
        return {split: writer.rows for split, writer in self.writers.items()}


def curate_to_parquet(
    documents: Iterable[str],
    train_path: Path,
    valid_path: Path,
    quality_threshold: float,
    valid_fraction: float,
    shard: tuple[int, int] | None = None,
) -> CurationStats:
    """Normalise, filter, dedup and split ``documents`` into ``train_path``/``valid_path`` (``text`` column).

    ``shard=(index, count)``: only the documents of that hash partition (``shard_of``), all others skipped unread
    by the filters and uncounted. Duplicates share a hash, so each shard's dedup is exact for the whole corpus and
    the shards' counts add up to an unsharded run's; a shard may hold no document of a split (no error here)."""
    stats = CurationStats()
    seen = HashSet()
    splits = _SplitWriter(train_path, valid_path, balance=shard is None)
    try:
        for raw in documents:
            text = normalize_text(raw)
            if shard is not None and shard_of(content_hash(text), shard[1]) != shard[0]:
                continue
            stats.documents_read += 1
            if not text:
                stats.dropped["empty"] += 1
                continue
            quality = quality_score(text)
            if quality.score < quality_threshold:
                stats.dropped["quality"] += 1
                stats.weak_quality_checks[quality.weakest] += 1
                continue
            digest = content_hash(text)
            if not seen.add(digest):
                stats.dropped["duplicate"] += 1
                continue
            splits.add("valid" if is_valid_split(digest, valid_fraction) else "train", text)
    finally:
        rows = splits.close()
    stats.train_documents, stats.valid_documents = rows["train"], rows["valid"]
    if shard is None:
        check_splits(stats)
    return stats


def shard_of(digest: int, count: int) -> int:
    """The hash partition of a document (of ``count``). The content hash is mixed first (Fibonacci hashing): its low
    bits index the dedup table and its high bits choose the split, and taking either directly would leave a shard
    with fixed table slots, or with one split only."""
    return (((digest * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) >> 32) % count


def check_splits(stats: CurationStats) -> None:
    """At least one document per split, for the whole corpus (every shard's counts summed, when sharded)."""
    if stats.train_documents == 0 or stats.valid_documents == 0:
        raise UserError(
            f"only {stats.documents_kept} of {stats.documents_read} documents survived curation "
            f"(dropped: {dict(stats.dropped)}); at least 2 are needed, one per split: add data or lower "
            "--quality-threshold"
        )
