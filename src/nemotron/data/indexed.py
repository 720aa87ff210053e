"""Megatron indexed datasets (``PREFIX.bin`` + ``PREFIX.idx``): one document per entry, ``<|endoftext|>`` appended.

Training reads them with ``load_token_documents(prefix)`` (or megatron's ``GPTDataset`` given the same prefix).
Imports megatron-core (and so torch) at module top: import this module inside functions from light code.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

with warnings.catch_warnings():  # megatron.core warns on import (no Transformer Engine/Apex on CPU; deprecations)
    warnings.simplefilter("ignore")
    from megatron.core.datasets.indexed_dataset import DType, IndexedDataset, IndexedDatasetBuilder

from nemotron.data.tokenizer import eod_id
from nemotron.errors import UserError

ENCODE_BATCH_DOCS = 512


def token_dtype(vocab_size: int) -> type[np.number]:
    """uint16 while ids fit (halves the files), else int32 — megatron's own choice."""
    return DType.optimal_dtype(vocab_size)


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(texts)
    while batch := list(islice(iterator, size)):
        yield batch


def write_indexed_dataset(prefix: Path, texts: Iterable[str], tokenizer: Tokenizer) -> tuple[int, int]:
    """Tokenize ``texts`` (streamed, in batches) into ``prefix.bin``/``.idx``; return (documents, tokens incl. EOD)."""
    eod = eod_id(tokenizer)
    dtype = token_dtype(tokenizer.get_vocab_size())
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=dtype)
    documents = tokens = 0
    try:
        for batch in _batches(texts, ENCODE_BATCH_DOCS):
            for encoding in tokenizer.encode_batch(batch):
                ids = np.asarray(encoding.ids + [eod], dtype=dtype)
                builder.add_document(ids, [ids.size])
                tokens += ids.size
            documents += len(batch)
    finally:
        builder.finalize(f"{prefix}.idx")
    return documents, tokens


def load_token_documents(prefix: str | Path) -> IndexedDataset:
    """The indexed dataset at ``prefix`` (no extension), memory-mapped: ``ds[i]`` is document i's token ids
    (numpy, EOD last), ``len(ds)`` the document count, ``ds.sequence_lengths`` their lengths."""
    prefix = str(prefix)
    if not IndexedDataset.exists(prefix):
        raise UserError(f"no indexed dataset at {prefix!r}: expected {prefix}.bin and {prefix}.idx")
    return IndexedDataset(prefix, mmap=True)
