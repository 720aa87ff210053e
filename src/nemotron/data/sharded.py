"""Sharded pretraining curation: one array task per hash partition of the corpus, one Dataset listing them all.

Task ``i`` of ``N`` curates the documents whose content hash falls in partition ``i`` (``curate.shard_of``):
duplicates share a hash, so exact dedup within a shard is exact dedup of the whole corpus, and the kept documents,
the duplicates removed and (with one tokenizer) the tokens add up to an unsharded run's. The running tasks first
partition the sources together, reading them once (``partition``); each then curates its shard's part.

Each task writes ``shards/<i>/`` (``train``/``valid`` Parquet and indexed datasets, ``shard.json`` with its counts)
through a staging directory, then its ``.done`` marker (``nemotron.array``); a killed task leaves nothing half
written, and a rerun does only the shards without a marker. The tokenizer is given, or trained once for all shards
(``shared_tokenizer``) on the curated train documents among the first ``tokenizer_sample`` source documents — for
a corpus smaller than that, exactly what an unsharded run trains on. The task completing the last shard writes the
Dataset (``metadata.json``, its shards listed with their counts); the metadata is the same whichever task writes it.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from nemotron.array import done_tasks, mark_done, marker, redo_requested
from nemotron.data.artifacts import Dataset, DatasetShard
from nemotron.data.partition import PARTITIONS_DIR
from nemotron.fsutil import atomic_write_text, output_staging_dir, publish_staged

SHARDS_DIR = "shards"
SHARD_FILE = "shard.json"


def shard_path(index: int) -> str:
    return f"{SHARDS_DIR}/{index:05d}"


def curate_shard(
    *,
    index: int,
    count: int,
    output_dir: Path,
    documents: Callable[[], Iterable[str]],
    quality_threshold: float,
    valid_fraction: float,
    tokenizer: Callable[[], Any],
    heartbeat_total: int | None,
    log: Any,
) -> None:
    """Shard ``index`` of ``count`` into ``output_dir/shards/<index>`` and its marker, unless its marker exists
    (and the launch was not ``--force``). ``documents()`` is a fresh stream of the whole corpus; ``tokenizer()``
    the shared tokenizer (given, or trained once)."""
    from nemotron.data.curate import curate_to_parquet
    from nemotron.data.indexed import write_indexed_dataset
    from nemotron.data.sources import iter_parquet_texts
    from nemotron.heartbeat import Heartbeat

    if marker(output_dir, index).exists() and not redo_requested():
        log.info("shard %d of %d is complete already: nothing to do", index, count)
        return
    shard_dir = output_dir / shard_path(index)
    staging = output_staging_dir(shard_dir)
    heartbeat = Heartbeat.for_step(shard_dir, "data_curation", heartbeat_total)
    try:
        log.info("curating shard %d of %d -> %s", index, count, shard_dir)
        heartbeat.beat(0)
        stats = curate_to_parquet(
            heartbeat.track(documents()),
            staging / "train.parquet",
            staging / "valid.parquet",
            quality_threshold,
            valid_fraction,
            shard=(index, count),
        )
        shared = tokenizer()

        def texts(path: Path) -> Iterator[str]:
            return heartbeat.track(iter_parquet_texts(path), counted=False)

        tokens = {}
        for split in ("train", "valid"):
            parquet = texts(staging / f"{split}.parquet")
            _, tokens[split] = write_indexed_dataset(staging / f"{split}_text_document", parquet, shared)
        record = {"metrics": stats.metrics(), "train_tokens": tokens["train"], "valid_tokens": tokens["valid"]}
        atomic_write_text(staging / SHARD_FILE, json.dumps(record, indent=2) + "\n")
        publish_staged(staging, shard_dir)
        mark_done(output_dir, index)
    finally:
        heartbeat.close()
        shutil.rmtree(staging, ignore_errors=True)


def tokenizer_sample(
    documents: Iterable[str], limit: int, quality_threshold: float, valid_fraction: float
) -> Iterator[str]:
    """The texts a sharded run's tokenizer is trained on: the first ``limit`` source documents curated as an
    unsharded run curates them (normalised, filtered, deduplicated), their train split only."""
    from nemotron.data.filters import HashSet, content_hash, is_valid_split, normalize_text, quality_score

    seen = HashSet()
    for raw in islice(documents, limit):
        text = normalize_text(raw)
        if not text or quality_score(text).score < quality_threshold:
            continue
        digest = content_hash(text)
        if seen.add(digest) and not is_valid_split(digest, valid_fraction):
            yield text


def finish_if_complete(output_dir: Path, count: int, make: Callable[[list[DatasetShard], dict[str, float]], Dataset]):
    """The Dataset once every shard of ``count`` is done (``make`` builds it from the shards and their summed
    metrics, and this saves it); None while some shard is missing."""
    if len(done_tasks(output_dir, count)) < count:
        return None
    from nemotron.data.curate import CurationStats, check_splits

    shards, metrics = [], Counter()
    for index in range(count):
        record = json.loads((output_dir / shard_path(index) / SHARD_FILE).read_text())
        shard_metrics = record["metrics"]
        shards.append(
            DatasetShard(
                path=shard_path(index),
                train_documents=shard_metrics["train_documents"],
                valid_documents=shard_metrics["valid_documents"],
                train_tokens=record["train_tokens"],
                valid_tokens=record["valid_tokens"],
            )
        )
        metrics.update({k: v for k, v in shard_metrics.items() if k != "duplicate_rate"})
    totals = CurationStats(
        documents_read=metrics["documents_read"],
        train_documents=metrics["train_documents"],
        valid_documents=metrics["valid_documents"],
        dropped=Counter({k[len("dropped_") :]: v for k, v in metrics.items() if k.startswith("dropped_")}),
    )
    check_splits(totals)  # the corpus as a whole needs a document per split, as an unsharded run does
    summed = dict(metrics)
    summed["duplicate_rate"] = metrics["dropped_duplicate"] / max(1, metrics["documents_read"])
    summed["tokens"] = sum(s.train_tokens for s in shards)
    summed["valid_tokens"] = sum(s.valid_tokens for s in shards)
    dataset = make(shards, summed)
    dataset.save()
    # the partitioned copy of the corpus served the shards, all done now: it would double the Dataset's size
    shutil.rmtree(output_dir / PARTITIONS_DIR, ignore_errors=True)
    return dataset
