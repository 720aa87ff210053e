"""One tokenizer for every shard of a sharded curation, trained once by whichever task needs it first (``once``).

The shards of one Dataset must share a vocabulary, and training a BPE per shard would do the same work N times.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tokenizers import Tokenizer

from nemotron.data.once import STALE_S, once
from nemotron.data.tokenizer import load_tokenizer
from nemotron.fsutil import atomic_write_text

TOKENIZER_FILE = "tokenizer.json"
CLAIM_FILE = ".tokenizer.claim"


def shared_tokenizer(directory: Path, train: Callable[[], Tokenizer], stale_s: float = STALE_S) -> Tokenizer:
    """``directory/tokenizer.json``, trained by ``train`` in this process if no other task has claimed it."""
    path = Path(directory) / TOKENIZER_FILE

    def work() -> None:
        atomic_write_text(path, train().to_str(pretty=True))

    once(Path(directory) / CLAIM_FILE, path.is_file, work, stale_s)
    return load_tokenizer(path)
