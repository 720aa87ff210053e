"""One tokenizer for every shard of a sharded curation, trained once by whichever task needs it first.

The shards of one Dataset must share a vocabulary, and training a BPE per shard would do the same work N times.
The tasks of an array start in any order and any number at once (a throttle, a busy queue), so no task is the
designated trainer: the first to need the tokenizer claims it (``O_CREAT|O_EXCL``, atomic on NFS and Lustre) and
trains it on a sample; the others wait for ``tokenizer.json``. A claimant keeps touching its claim while it trains;
a claim left untouched for ``STALE_S`` (its task was killed) is taken over by one waiter (a rename: only one wins).
Staleness is judged by the waiter seeing the claim unchanged, never by comparing clocks of two hosts.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tokenizers import Tokenizer

from nemotron.data.tokenizer import load_tokenizer
from nemotron.fsutil import atomic_write_text, writer_tag

TOKENIZER_FILE = "tokenizer.json"
CLAIM_FILE = ".tokenizer.claim"
STALE_S = 120.0
POLL_S = 1.0


def shared_tokenizer(directory: Path, train: Callable[[], Tokenizer], stale_s: float = STALE_S) -> Tokenizer:
    """``directory/tokenizer.json``, trained by ``train`` in this process if no other task has claimed it."""
    path, claim = Path(directory) / TOKENIZER_FILE, Path(directory) / CLAIM_FILE
    seen: tuple[float, float] | None = None  # (the claim's mtime, when this process first saw that mtime)
    while True:
        if path.is_file():
            return load_tokenizer(path)
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            seen = _take_over_if_stale(claim, seen, stale_s)
            time.sleep(POLL_S)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{writer_tag()}\n")
        return _train_claimed(path, claim, train, stale_s)


def _train_claimed(path: Path, claim: Path, train: Callable[[], Tokenizer], stale_s: float) -> Tokenizer:
    stop = threading.Event()

    def keep_alive() -> None:  # a waiter takes over only a claim nobody touches
        while not stop.wait(stale_s / 4):
            try:
                os.utime(claim)
            except OSError:  # taken by mistake for a moment (see _take_over_if_stale): it comes back
                continue

    toucher = threading.Thread(target=keep_alive, daemon=True)
    toucher.start()
    try:
        tokenizer = train()
        atomic_write_text(path, tokenizer.to_str(pretty=True))
        return tokenizer
    finally:
        stop.set()
        toucher.join()
        claim.unlink(missing_ok=True)


def _take_over_if_stale(claim: Path, seen: tuple[float, float] | None, stale_s: float) -> tuple[float, float] | None:
    try:
        mtime = claim.stat().st_mtime
    except FileNotFoundError:
        return None
    now = time.monotonic()
    if seen is None or seen[0] != mtime:
        return (mtime, now)
    if now - seen[1] >= stale_s:
        victim = claim.with_name(f"{CLAIM_FILE}.stale-{writer_tag()}")
        try:  # one waiter's rename succeeds; the others find the claim gone and race for a new one
            os.replace(claim, victim)
        except FileNotFoundError:
            return None
        try:
            if victim.stat().st_mtime != seen[0]:  # another waiter's fresh claim, made since we looked: put it back
                with contextlib.suppress(FileExistsError):
                    os.link(victim, claim)
        finally:
            victim.unlink(missing_ok=True)
        return None
    return seen
