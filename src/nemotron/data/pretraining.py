"""Pretraining data curation: raw text -> curated Parquet, BPE tokenizer, Megatron indexed datasets, eval items.

With no ``--sources`` it curates the embedded corpus: a small world generated from ``--seed`` (people, cities, jobs,
pets, colours, sums) with held-out multiple-choice and generation items in ``eval/`` (chance accuracy 0.25).
With ``--sources`` it reads files, directories or globs of .txt/.jsonl/.parquet (``--text-field`` names the column).

A recipe's data_curation step is this module's ``CorpusConfig``, ``validate``, ``provides`` and ``curate`` under its
own name (``main(config) = curate(config, __file__)``). Light at import: the launcher imports step modules to plan.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nemotron.data.artifacts import Dataset
from nemotron.errors import UserError
from nemotron.evaluation.tasks import FACTS_GEN, FACTS_MC
from nemotron.fsutil import output_staging_dir, publish_staged
from nemotron.heartbeat import Heartbeat
from nemotron.scale import apply_scale, check_scale
from nemotron.step import Placement, StepConfig

STEP = "data_curation"
VOCAB_SIZE_BY_SCALE = {"tiny": 1024, "small": 8192, "medium": 16384, "full": 32768}
# Hash partitions of a --sources corpus, each an array task (nemotron.data.sharded). The embedded corpus is generated
# in one process and stays one shard unless --shards says otherwise.
SHARDS_BY_SCALE = {"tiny": 1, "small": 4, "medium": 16, "full": 256}


@dataclass
class CorpusConfig(StepConfig):
    """Curate a pretraining corpus into train/valid token files for Megatron."""

    sources: tuple[str, ...] = ()
    """Files, directories or globs of .txt/.jsonl/.parquet; none = the embedded corpus."""
    text_field: str = "text"
    """Field holding the text in .jsonl records and .parquet columns."""
    txt_split: Literal["file", "paragraph"] = "file"
    """A .txt file is one document, or one per blank-line-separated paragraph."""
    max_documents: int | None = None
    """Documents to read at full scale (scaled down like everything else); none = all of --sources."""
    quality_threshold: float = 0.5
    """Drop documents whose heuristic quality score (0-1, see nemotron.data.filters) is below this."""
    valid_fraction: float = 0.05
    """Share of documents in the validation split (chosen by content hash)."""
    vocab_size: int | None = None
    """BPE vocabulary size to train (default per scale: tiny 1024 ... full 32768)."""
    tokenizer_path: Path | None = None
    """Use this tokenizer.json (must define <|endoftext|>) instead of training one."""
    shards: int | None = None
    """Hash partitions of the corpus, curated as one job array (default with --sources: tiny 1, small 4, medium 16,
    full 256, at most one per source file; the embedded corpus 1). Kept documents, duplicates and tokens are the
    same however many."""
    tokenizer_sample: int = 1_000_000
    """A sharded run trains its tokenizer once, on the curated train documents among this many first documents."""


def validate(config: CorpusConfig, placement: Placement, carried: frozenset[str]) -> None:
    """Every check before work: at the start of ``curate``, and by the launcher at plan time (one process, any host).
    No input artifact: ``carried`` is empty."""
    check_scale(config.scale)
    if not 0.0 <= config.quality_threshold <= 1.0:
        raise UserError(f"--quality-threshold {config.quality_threshold} is out of range: use a value in [0, 1]")
    if not 0.0 < config.valid_fraction < 1.0:
        raise UserError(f"--valid-fraction {config.valid_fraction} is out of range: use a value in (0, 1)")
    if config.max_documents is not None and config.max_documents < 1:
        raise UserError(f"--max-documents {config.max_documents} must be a positive number of documents")
    if config.shards is not None and config.shards < 1:
        raise UserError(f"--shards {config.shards} is not a number of shards: use 1 (unsharded) or more")
    if config.tokenizer_sample < 1:
        raise UserError(f"--tokenizer-sample {config.tokenizer_sample} must be a positive number of documents")
    if config.vocab_size is not None and config.vocab_size < 257:
        raise UserError(f"--vocab-size {config.vocab_size} is too small: a byte-level BPE needs at least 257")
    if placement.files_here:
        _check_paths(config)


def _check_paths(config: CorpusConfig) -> None:
    """The files a person named exist and can be read as given (where the job's filesystem is this one): the same
    checks, and the same one-line errors, as the job's own reading of them."""
    from nemotron.data.sources import resolve_sources

    if config.sources:
        resolve_sources(config.sources, config.text_field)
    if config.tokenizer_path is not None:  # imported only then: the launcher plans without the tokenizers library
        from nemotron.data.tokenizer import load_tokenizer

        load_tokenizer(config.tokenizer_path)


def array_tasks(config: CorpusConfig) -> int:
    """How many array tasks the step's job is (``nemotron.array``): one per shard. By default the scale's number,
    never more than the source files (a few files are a small corpus); where the files cannot be listed (a cluster's
    files, planned through SSH) the scale's number, which the launcher then gives its tasks (``array_count``)."""
    if config.shards is not None:
        return config.shards
    if not config.sources:
        return 1
    from nemotron.data.sources import SourceError, resolve_sources

    try:
        files = len(resolve_sources(config.sources, config.text_field))
    except SourceError:
        files = None
    by_scale = SHARDS_BY_SCALE[config.scale]
    return by_scale if files is None else max(1, min(by_scale, files))


def provides(config: CorpusConfig) -> frozenset[str]:
    """The held-out evaluation sets a Dataset made from ``config`` carries (``Dataset.provides``): the embedded world's
    facts, and none for ``--sources`` (a user's own text has no held-out facts). Torch-free: the launcher asks it at
    plan time, so an evaluation task the data cannot feed is refused before anything runs."""
    return frozenset() if config.sources else frozenset({FACTS_MC, FACTS_GEN})


def curate(config: CorpusConfig, step_file: str) -> Dataset:
    """The step: ``step_file`` is the calling step module's ``__file__`` (its default output directory and log name)."""
    from itertools import islice

    from nemotron.data.sources import iter_documents, iter_parquet_texts, resolve_sources
    from nemotron.data.tokenizer import load_tokenizer, train_bpe_tokenizer
    from nemotron.data.world import FULL_SCALE_DOCUMENTS, World, write_eval_items
    from nemotron.log import get_logger
    from nemotron.step import config_snapshot, step_output_dir

    log = get_logger(f"{Path(step_file).parent.parent.name}.{STEP}")  # e.g. nano2.data_curation
    validate(config, Placement.from_environment(), frozenset())  # no input artifact carries anything in
    # Everything a person can get wrong is checked before a single output file exists (and before megatron loads).
    files = resolve_sources(config.sources, config.text_field) if config.sources else None
    given_tokenizer = load_tokenizer(config.tokenizer_path) if config.tokenizer_path else None
    output_dir = step_output_dir(config, step_file)

    from nemotron.data.curate import curate_to_parquet
    from nemotron.data.indexed import write_indexed_dataset

    world = None if files else World(config.seed)
    to_read = None  # documents this run will read, when known up front (its progress total)
    if files:
        if config.max_documents is not None:
            to_read = apply_scale(config.max_documents, config.scale)
    else:
        to_read = apply_scale(config.max_documents or FULL_SCALE_DOCUMENTS, config.scale)

    def read_documents():  # a fresh stream of the corpus (a sharded run: only its tokenizer sample)
        if not files:
            return world.documents(to_read)
        documents = iter_documents(files, config.text_field, config.txt_split)
        return islice(documents, to_read) if to_read is not None else documents

    from nemotron.array import array_count

    if array_count(array_tasks(config)) > 1:
        slices = _slices(config, files, to_read, world)
        return _curate_sharded(config, output_dir, read_documents, slices, given_tokenizer, world, to_read, log)
    documents = read_documents()

    # Progress in documents read, in the real output directory (not the staging one); the passes after the first
    # (tokenizer, token files) re-read the curated texts and only keep the hang watchdog fed.
    heartbeat = Heartbeat.for_step(output_dir, STEP, to_read)
    staging = output_staging_dir(output_dir)
    try:
        train_parquet, valid_parquet = staging / "train.parquet", staging / "valid.parquet"
        log.info("curating %s -> %s", f"{len(files)} source files" if files else "the embedded corpus", output_dir)
        heartbeat.beat(0)
        stats = curate_to_parquet(
            heartbeat.track(documents), train_parquet, valid_parquet, config.quality_threshold, config.valid_fraction
        )
        heartbeat.total = stats.documents_read
        heartbeat.beat(stats.documents_read, force=True)

        def texts(path: Path):  # a later pass over the curated texts: keeps the watchdog fed, adds no unit
            return heartbeat.track(iter_parquet_texts(path), counted=False)

        if given_tokenizer is None:
            vocab_size = config.vocab_size or VOCAB_SIZE_BY_SCALE[config.scale]
            log.info("training a byte-level BPE (vocab %d) on %d documents", vocab_size, stats.train_documents)
            tokenizer = train_bpe_tokenizer(texts(train_parquet), vocab_size)
        else:
            tokenizer = given_tokenizer
        tokenizer.save(str(staging / "tokenizer.json"))
        _, train_tokens = write_indexed_dataset(staging / "train_text_document", texts(train_parquet), tokenizer)
        _, valid_tokens = write_indexed_dataset(staging / "valid_text_document", texts(valid_parquet), tokenizer)
        eval_metrics = write_eval_items(world, staging / "eval") if world else _empty_eval_dir(staging / "eval")
        publish_staged(staging, output_dir)
        heartbeat.beat(stats.documents_read, force=True)
    finally:
        heartbeat.close()
        shutil.rmtree(staging, ignore_errors=True)

    dataset = Dataset(
        path=output_dir,
        num_examples=stats.train_documents,
        num_tokens=train_tokens,
        train_path=output_dir / "train.parquet",
        valid_path=output_dir / "valid.parquet",
        tokenizer_path=output_dir / "tokenizer.json",
        train_prefix=output_dir / "train_text_document",
        valid_prefix=output_dir / "valid_text_document",
        eval_dir=output_dir / "eval",
        vocab_size=tokenizer.get_vocab_size(),
        provides=sorted(provides(config)),
        metrics={**stats.metrics(), "tokens": train_tokens, "valid_tokens": valid_tokens, **eval_metrics},
        config=config_snapshot(config),
    )
    dataset.save()
    return dataset


def _empty_eval_dir(eval_dir: Path) -> dict[str, float]:
    """User sources carry no held-out facts; the directory exists so the artifact's contract holds."""
    eval_dir.mkdir(exist_ok=True)
    return {}


def _slices(config, files, to_read, world):
    """How the sources are cut for partitioning (``nemotron.data.partition``): ``(count, read_slice)``, one slice per
    shard. Source files round-robin when there are as many as shards, else every file cut into as many pieces (one
    large file is still read in parallel); the embedded corpus by document index; one slice when a document limit
    applies to files (the first K documents are an order over all of them)."""
    from nemotron.array import array_count
    from nemotron.data.sources import iter_document_piece, iter_documents

    count = array_count(array_tasks(config))
    if world is not None:

        def world_slice(index: int):
            return (world.document(i) for i in range(index * to_read // count, (index + 1) * to_read // count))

        return count, world_slice
    if to_read is not None:
        from itertools import islice

        return 1, lambda _index: islice(iter_documents(files, config.text_field, config.txt_split), to_read)
    if len(files) >= count:
        return count, lambda index: iter_documents(files[index::count], config.text_field, config.txt_split)

    def pieces(index: int):
        for path in files:
            yield from iter_document_piece(path, config.text_field, config.txt_split, index, count)

    return count, pieces


def _curate_sharded(config, output_dir, read_documents, slices, given_tokenizer, world, to_read, log):
    """The shards this process is given (its array task's, else every one in turn), then the Dataset if they are
    all done by now; None while other tasks' shards are still missing (``nemotron.data.sharded``)."""
    from nemotron.array import array_count, array_task
    from nemotron.data.partition import partition_sources, shard_documents
    from nemotron.data.sharded import curate_shard, finish_if_complete, tokenizer_sample
    from nemotron.data.shared_tokenizer import shared_tokenizer
    from nemotron.data.tokenizer import train_bpe_tokenizer
    from nemotron.data.world import write_eval_items
    from nemotron.step import config_snapshot

    count = array_count(array_tasks(config))
    output_dir.mkdir(parents=True, exist_ok=True)

    def tokenizer():
        if given_tokenizer is not None:
            return given_tokenizer
        vocab_size = config.vocab_size or VOCAB_SIZE_BY_SCALE[config.scale]

        def train():
            log.info("training the shards' byte-level BPE (vocab %d) on a sample of the corpus", vocab_size)
            sample = tokenizer_sample(
                read_documents(), config.tokenizer_sample, config.quality_threshold, config.valid_fraction
            )
            return train_bpe_tokenizer(sample, vocab_size)

        return shared_tokenizer(output_dir, train)

    def shard(index: int):  # the corpus read once, by the running tasks together; then this shard's part of it
        partition_sources(output_dir, slices[0], slices[1], count)
        return shard_documents(output_dir, slices[0], index)

    task = array_task()
    for index in [task] if task is not None else range(count):
        if index >= count:
            raise UserError(f"array task {index} is out of range: this curation has {count} shards (0-{count - 1})")
        curate_shard(
            index=index,
            count=count,
            output_dir=output_dir,
            documents=lambda index=index: shard(index),
            quality_threshold=config.quality_threshold,
            valid_fraction=config.valid_fraction,
            tokenizer=tokenizer,
            heartbeat_total=to_read,
            log=log,
        )

    def make(shards, metrics) -> Dataset:
        shared = tokenizer()
        if given_tokenizer is not None and not (output_dir / "tokenizer.json").is_file():
            from nemotron.fsutil import atomic_write_text

            atomic_write_text(output_dir / "tokenizer.json", shared.to_str(pretty=True))
        eval_metrics = write_eval_items(world, output_dir / "eval") if world else _empty_eval_dir(output_dir / "eval")
        train = next(s for s in shards if s.train_documents)  # one exists: finish_if_complete checked the splits
        valid = next(s for s in shards if s.valid_documents)
        return Dataset(
            path=output_dir,
            num_examples=metrics["train_documents"],
            num_tokens=metrics["tokens"],
            train_path=output_dir / train.path / "train.parquet",
            valid_path=output_dir / valid.path / "valid.parquet",
            tokenizer_path=output_dir / "tokenizer.json",
            train_prefix=output_dir / train.path / "train_text_document",
            valid_prefix=output_dir / valid.path / "valid_text_document",
            eval_dir=output_dir / "eval",
            vocab_size=shared.get_vocab_size(),
            provides=sorted(provides(config)),
            metrics={**metrics, **eval_metrics},
            config=config_snapshot(config),
            shards=shards,
        )

    return finish_if_complete(output_dir, count, make)
