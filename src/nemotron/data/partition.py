"""Phase one of sharded curation: the sources read once, each document normalised and filed under its shard.

Curating shard ``i`` needs every document whose content hash falls in partition ``i`` (``curate.shard_of``),
wherever it sits in the sources; reading the whole corpus in every task would read it N times. Instead the sources
are cut into slices (source files, round-robin), and the array's running tasks share them (``once``): each claims
free slices and partitions them, then waits only for slices other running tasks hold. A slice becomes
``partitions/<slice>.parquet`` with columns ``shard`` and ``text`` (normalised), one row group per flush of one
shard's buffer, so the task curating shard ``i`` reads just the row groups whose statistics name ``i``. The corpus
is read once, written once and read once more; tasks started after the slices are done go straight to their shard.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from nemotron.data.curate import shard_of
from nemotron.data.filters import content_hash, normalize_text
from nemotron.data.once import once, try_once
from nemotron.fsutil import writer_tag

PARTITIONS_DIR = "partitions"
# A shard's buffer is flushed as one row group once it holds this much: all N buffers share BUFFER_BYTES of memory,
# and each row group costs a footer entry every task curating a shard reads, so they are as large as that allows.
BUFFER_BYTES = 512 * 1024 * 1024
FLUSH_RANGE = (256 * 1024, 8 * 1024 * 1024)
SCHEMA = pa.schema([pa.field("shard", pa.int32(), nullable=False), pa.field("text", pa.string(), nullable=False)])


def slice_path(output_dir: Path, index: int) -> Path:
    return Path(output_dir) / PARTITIONS_DIR / f"{index:05d}.parquet"


def partition_sources(output_dir: Path, slices: int, read_slice: Callable[[int], Iterable[str]], count: int) -> None:
    """Every slice of the sources partitioned into ``count`` shards, by this task or others running now."""
    (Path(output_dir) / PARTITIONS_DIR).mkdir(parents=True, exist_ok=True)

    def piece(index: int) -> tuple[Path, Callable[[], bool], Callable[[], None]]:
        path = slice_path(output_dir, index)
        claim = path.with_name(f".{path.name}.claim")
        return claim, path.is_file, lambda: _write_slice(path, read_slice(index), count)

    for index in range(slices):  # the free ones first, so the running tasks share the work
        try_once(*piece(index))
    for index in range(slices):  # then those other tasks hold (or held, and were killed)
        once(*piece(index))


def _write_slice(path: Path, documents: Iterable[str], count: int) -> None:
    tmp = path.with_name(f".{path.name}.{writer_tag()}.tmp")
    writer = pq.ParquetWriter(tmp, SCHEMA, compression="zstd")
    buffers: list[list[str]] = [[] for _ in range(count)]
    sizes = [0] * count
    flush_bytes = min(max(BUFFER_BYTES // count, FLUSH_RANGE[0]), FLUSH_RANGE[1])

    def flush(shard: int) -> None:
        if buffers[shard]:
            table = pa.table({"shard": [shard] * len(buffers[shard]), "text": buffers[shard]}, schema=SCHEMA)
            writer.write_table(table)  # one row group, all of one shard: its statistics say which
            buffers[shard], sizes[shard] = [], 0

    try:
        for raw in documents:
            text = normalize_text(raw)
            shard = shard_of(content_hash(text), count)
            buffers[shard].append(text)
            sizes[shard] += len(text) + 16
            if sizes[shard] >= flush_bytes:
                flush(shard)
        for shard in range(count):
            flush(shard)
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise


def shard_documents(output_dir: Path, slices: int, index: int) -> Iterator[str]:
    """The normalised documents of shard ``index``, slice by slice in order, reading only that shard's row groups."""
    for slice_index in range(slices):
        parquet = pq.ParquetFile(slice_path(output_dir, index=slice_index))
        groups = [g for g in range(parquet.num_row_groups) if _holds(parquet.metadata.row_group(g), index)]
        for batch in parquet.iter_batches(row_groups=groups, columns=["shard", "text"]):
            shards, texts = batch.column(0).to_pylist(), batch.column(1).to_pylist()
            yield from (text for shard, text in zip(shards, texts, strict=True) if shard == index)


def _holds(row_group, index: int) -> bool:
    """Whether a row group may hold shard ``index`` (without statistics: it may, and rows are filtered)."""
    stats = row_group.column(0).statistics
    return stats is None or not stats.has_min_max or stats.min <= index <= stats.max
