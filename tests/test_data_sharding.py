"""Sharded curation in one process (every shard in turn, or one array task's): the same corpus as an unsharded run."""

from __future__ import annotations

from pathlib import Path

import pytest
from sharded_corpus import write_corpus

from nemotron.array import ARRAY_TASK_ENV, done_tasks
from nemotron.recipes.nano2.stage0_pretrain.data_curation import Config, main

COUNTS = ("documents_read", "documents_kept", "dropped_duplicate", "dropped_quality", "dropped_empty")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def unsharded(corpus, tmp_path_factory):
    return main(Config(sources=(str(corpus),), output_dir=tmp_path_factory.mktemp("one") / "data"))


def test_four_shards_keep_the_documents_and_tokens_of_an_unsharded_run(corpus, unsharded, tmp_path) -> None:
    sharded = main(Config(sources=(str(corpus),), shards=4, output_dir=tmp_path / "data"))

    assert len(sharded.shards) == 4 and all(s.train_documents + s.valid_documents > 0 for s in sharded.shards)
    assert unsharded.metrics["dropped_duplicate"] > 10  # duplicates across files: dedup had work across shards
    for name in COUNTS:
        assert sharded.metrics[name] == unsharded.metrics[name], name
    assert (sharded.num_examples, sharded.num_tokens) == (unsharded.num_examples, unsharded.num_tokens)
    assert sharded.metrics["valid_tokens"] == unsharded.metrics["valid_tokens"]
    # one tokenizer, trained once on the same curated train documents as the unsharded run's
    assert (tmp_path / "data" / "tokenizer.json").read_text() == Path(unsharded.tokenizer_path).read_text()
    prefixes, weights = sharded.train_blend()
    assert len(prefixes) == 4 and sum(weights) == sharded.num_tokens
    assert all(Path(f"{p}.bin").is_file() for p in prefixes)


def test_an_array_task_redoes_only_its_missing_shard(corpus, tmp_path, monkeypatch) -> None:
    output = tmp_path / "data"
    config = Config(sources=(str(corpus),), shards=3, output_dir=output)
    for index in (0, 2):
        monkeypatch.setenv(ARRAY_TASK_ENV, str(index))
        assert main(config) is None  # its shard done; shard 1 still missing, so no Dataset yet
    assert done_tasks(output, 3) == [0, 2] and not (output / "metadata.json").exists()
    # the corpus was partitioned once, by the first task (3 slices of the 4 files), for every shard to read its part
    assert sorted(p.name for p in (output / "partitions").glob("*.parquet")) == [f"0000{i}.parquet" for i in range(3)]
    shard0 = output / "shards" / "00000" / "shard.json"
    written = shard0.stat().st_mtime_ns

    monkeypatch.setenv(ARRAY_TASK_ENV, "0")
    assert main(config) is None  # a rerun of a done task does nothing
    assert shard0.stat().st_mtime_ns == written
    monkeypatch.setenv(ARRAY_TASK_ENV, "1")
    dataset = main(config)  # the last shard: this task writes the Dataset
    assert dataset is not None and [s.path for s in dataset.shards] == ["shards/00000", "shards/00001", "shards/00002"]
    assert (output / "metadata.json").is_file()
    assert not (output / "partitions").exists()  # the partitioned copy goes once every shard is done


def test_the_embedded_corpus_in_two_shards_is_the_unsharded_one(curated_dataset, tmp_path) -> None:
    from data_curated import CURATED_SEED

    sharded = main(Config(seed=CURATED_SEED, shards=2, output_dir=tmp_path / "data"))
    for name in COUNTS:
        assert sharded.metrics[name] == curated_dataset.metrics[name], name
    assert (sharded.num_examples, sharded.num_tokens) == (curated_dataset.num_examples, curated_dataset.num_tokens)
    assert sorted(sharded.provides) == sorted(curated_dataset.provides)  # the held-out facts, written once
    assert (tmp_path / "data" / "eval" / "facts_mc.jsonl").read_text() == (
        Path(curated_dataset.eval_dir) / "facts_mc.jsonl"
    ).read_text()


def test_the_shared_tokenizer_is_trained_once_and_a_dead_claimants_claim_is_taken_over(tmp_path) -> None:
    import threading

    from nemotron.data.shared_tokenizer import CLAIM_FILE, shared_tokenizer
    from nemotron.data.tokenizer import train_bpe_tokenizer

    trained = []

    def train():
        trained.append(threading.get_ident())
        return train_bpe_tokenizer(["a small sample of text to train on"] * 20, 300)

    (tmp_path / CLAIM_FILE).write_text("a task that was killed while it trained\n")  # nobody touches it any more
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(shared_tokenizer(tmp_path, train, stale_s=0.5)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(trained) == 1 and len(results) == 3  # one waiter took the stale claim over; the others waited
    assert len({r.to_str() for r in results}) == 1 and not (tmp_path / CLAIM_FILE).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer.json"]


def test_the_pieces_of_one_file_hold_each_document_once(corpus, tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nemotron.data.sources import iter_document_piece, iter_documents

    jsonl = tmp_path / "all.jsonl"
    jsonl.write_text("".join(p.read_text() for p in sorted(corpus.glob("*.jsonl"))))
    parquet = tmp_path / "all.parquet"
    texts = list(iter_documents([jsonl]))
    pq.write_table(pa.table({"text": texts}), parquet, row_group_size=17)  # 15 row groups
    for path in (jsonl, parquet):
        for pieces in (1, 2, 5, 16):
            read = [t for i in range(pieces) for t in iter_document_piece(path, "text", "file", i, pieces)]
            assert read == texts, (path.name, pieces)  # in order, each once, whatever the cut


def test_one_large_file_in_four_shards_is_the_unsharded_corpus(corpus, unsharded, tmp_path) -> None:
    one = tmp_path / "one.jsonl"
    one.write_text("".join(p.read_text() for p in sorted(corpus.glob("*.jsonl"))))
    sharded = main(Config(sources=(str(one),), shards=4, output_dir=tmp_path / "data"))  # 4 byte ranges of one file
    for name in COUNTS:
        assert sharded.metrics[name] == unsharded.metrics[name], name
    assert sharded.num_tokens == unsharded.num_tokens
