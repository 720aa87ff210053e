"""The curation's indexed-dataset writer (batched native tokenisation, numpy, no megatron import) writes exactly what
megatron's IndexedDatasetBuilder writes when given the ids of one document at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from nemotron.data import indexed
from nemotron.data.indexed import load_token_documents, token_dtype, write_indexed_dataset
from nemotron.data.sources import iter_parquet_texts
from nemotron.data.tokenizer import EOD_TOKEN, eod_id, load_tokenizer

AWKWARD = ["", " ", "naïve café — ｆｕｌｌ width, 😀 emoji", f"a {EOD_TOKEN} inside", "\n\n\tindented\r\nlines  "]


def _megatron_reference(prefix: Path, texts: list[str], tokenizer: Tokenizer) -> None:
    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    dtype = DType.optimal_dtype(tokenizer.get_vocab_size())
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=dtype)
    for text in texts:
        ids = np.asarray(tokenizer.encode(text).ids + [eod_id(tokenizer)], dtype=dtype)
        builder.add_document(ids, [ids.size])
    builder.finalize(f"{prefix}.idx")


def _same_files(a: Path, b: Path) -> None:
    for suffix in (".bin", ".idx"):
        assert Path(f"{a}{suffix}").read_bytes() == Path(f"{b}{suffix}").read_bytes(), suffix


def _wide_tokenizer() -> Tokenizer:
    """A word-level tokenizer of 70,000 ids: past uint16, so its files hold int32 tokens."""
    vocab = {EOD_TOKEN: 0, "[UNK]": 1} | {f"w{i}": i + 2 for i in range(69_998)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens([EOD_TOKEN])
    return tokenizer


def test_batched_writer_matches_megatrons_builder_fed_one_document_at_a_time(
    curated_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexed, "ENCODE_BATCH_DOCS", 7)  # many batches, the last one short
    tokenizer = load_tokenizer(curated_dataset.tokenizer_path)
    texts = [*iter_parquet_texts(curated_dataset.valid_path), *AWKWARD]
    documents, tokens = write_indexed_dataset(tmp_path / "fast", texts, tokenizer)
    _megatron_reference(tmp_path / "reference", texts, tokenizer)
    _same_files(tmp_path / "fast", tmp_path / "reference")
    read = load_token_documents(tmp_path / "fast")
    assert documents == len(read) == len(texts) and tokens == int(read.sequence_lengths.sum())
    assert read[len(texts) - 1].tolist() == tokenizer.encode(texts[-1]).ids + [eod_id(tokenizer)]


@pytest.mark.parametrize("texts", [["w5 w69999 unknown", "w0", "", f"w7 {EOD_TOKEN} w8"], []], ids=["int32", "empty"])
def test_int32_ids_and_an_empty_split_are_megatrons_files_too(texts: list[str], tmp_path: Path) -> None:
    tokenizer = _wide_tokenizer()
    assert token_dtype(tokenizer.get_vocab_size()) is np.int32
    write_indexed_dataset(tmp_path / "fast", texts, tokenizer)
    _megatron_reference(tmp_path / "reference", texts, tokenizer)
    _same_files(tmp_path / "fast", tmp_path / "reference")


@pytest.mark.parametrize("vocab_size", [257, 65_499, 65_500, 1_000_000])
def test_token_dtype_is_megatrons_choice(vocab_size: int) -> None:
    from megatron.core.datasets.indexed_dataset import DType

    assert token_dtype(vocab_size) is DType.optimal_dtype(vocab_size)
