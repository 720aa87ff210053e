"""Megatron indexed datasets (``PREFIX.bin`` + ``PREFIX.idx``): one document per entry, ``<|endoftext|>`` appended.

Training reads them with megatron's own ``IndexedDataset``/``GPTDataset`` (``load_token_documents(prefix)``). Writing
is done here with numpy alone, byte for byte what megatron's ``IndexedDatasetBuilder`` writes (a test compares them):
a curation process, one of thousands of array tasks, then never imports megatron-core and torch (~830 MB of RSS
and seconds of start-up each) for a file format of a header and three arrays.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nemotron.data.tokenizer import eod_id
from nemotron.errors import UserError

if TYPE_CHECKING:
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from tokenizers import Tokenizer

# Documents per call into the tokenizers library's native, multi-threaded batch encoder: large enough that its
# threads share the work evenly, small enough that a batch's ids stay a few MB.
ENCODE_BATCH_DOCS = 512

# megatron.core.datasets.indexed_dataset: _INDEX_HEADER, the version word, and DType's codes for the two token dtypes.
_INDEX_HEADER = b"MMIDIDX\x00\x00"
_INDEX_VERSION = 1
_DTYPE_CODES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}


def token_dtype(vocab_size: int) -> type[np.number]:
    """uint16 while ids fit (halves the files), else int32 — megatron's own choice (``DType.optimal_dtype``)."""
    return np.uint16 if vocab_size < 65500 else np.int32


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(texts)
    while batch := list(islice(iterator, size)):
        yield batch


def write_indexed_dataset(prefix: Path, texts: Iterable[str], tokenizer: Tokenizer) -> tuple[int, int]:
    """Tokenize ``texts`` (streamed, in batches) into ``prefix.bin``/``.idx``; return (documents, tokens incl. EOD).

    ``encode_batch_fast``: the ids of ``encode_batch`` without the character offsets nobody here reads."""
    eod = eod_id(tokenizer)
    dtype = np.dtype(token_dtype(tokenizer.get_vocab_size()))
    lengths: list[np.ndarray] = []
    with open(f"{prefix}.bin", "wb") as data:
        for batch in _batches(texts, ENCODE_BATCH_DOCS):
            ids = [encoding.ids for encoding in tokenizer.encode_batch_fast(batch)]
            for document in ids:
                document.append(eod)
            sizes = np.fromiter(map(len, ids), dtype=np.int32, count=len(ids))
            data.write(np.fromiter(chain.from_iterable(ids), dtype=dtype, count=int(sizes.sum())).tobytes())
            lengths.append(sizes)
    sequence_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int32)
    _write_index(Path(f"{prefix}.idx"), sequence_lengths, dtype)
    return len(sequence_lengths), int(sequence_lengths.sum(dtype=np.int64))


def _write_index(path: Path, sequence_lengths: np.ndarray, dtype: np.dtype) -> None:
    """megatron's ``_IndexWriter.write`` for one sequence per document: header, version, dtype code, counts, then
    lengths (int32), byte offsets (int64) and document boundaries (int64, 0..n)."""
    count = len(sequence_lengths)
    pointers = np.zeros(count, dtype=np.int64)
    np.cumsum(sequence_lengths[:-1], dtype=np.int64, out=pointers[1:])
    with open(path, "wb") as index:
        index.write(_INDEX_HEADER)
        index.write(struct.pack("<Q", _INDEX_VERSION))
        index.write(struct.pack("<B", _DTYPE_CODES[dtype]))
        index.write(struct.pack("<Q", count))
        index.write(struct.pack("<Q", count + 1))
        index.write(sequence_lengths.astype(np.int32).tobytes())
        index.write((pointers * dtype.itemsize).tobytes())
        index.write(np.arange(count + 1, dtype=np.int64).tobytes())


def load_token_documents(prefix: str | Path) -> IndexedDataset:
    """The indexed dataset at ``prefix`` (no extension), memory-mapped: ``ds[i]`` is document i's token ids
    (numpy, EOD last), ``len(ds)`` the document count, ``ds.sequence_lengths`` their lengths. Imports megatron."""
    import warnings

    with warnings.catch_warnings():  # megatron.core warns on import (no Transformer Engine/Apex on CPU; deprecations)
        warnings.simplefilter("ignore")
        from megatron.core.datasets.indexed_dataset import IndexedDataset

    prefix = str(prefix)
    if not IndexedDataset.exists(prefix):
        raise UserError(f"no indexed dataset at {prefix!r}: expected {prefix}.bin and {prefix}.idx")
    return IndexedDataset(prefix, mmap=True)
