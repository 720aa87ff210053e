"""Work that the tasks of an array share, done once by whichever task gets to it first.

The tasks of an array start in any order and any number at once (a throttle, a busy queue), so no task can be the
designated doer of shared work (the tokenizer, partitioning the sources). A task claims a piece of work with an
``O_CREAT|O_EXCL`` file (atomic on NFS and Lustre), keeps the claim fresh while it works, and publishes the result
atomically; the others see the result, or wait for it. A claim left untouched for ``STALE_S`` (its task was
killed) is taken over by one waiter (a rename: only one wins), so a killed task never blocks the others for long.
Staleness is judged by the waiter seeing the claim unchanged, never by comparing two hosts' clocks. Only running
tasks hold claims, so a task waits only on work that is being done: no throttle can deadlock it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from nemotron.fsutil import writer_tag

STALE_S = 120.0
POLL_S = 1.0


def try_once(claim: Path, done: Callable[[], bool], work: Callable[[], None], stale_s: float = STALE_S) -> bool:
    """Do ``work`` here if it is not ``done`` and nobody holds ``claim``; whether it is done now (False: another
    task is doing it)."""
    if done():
        return True
    try:
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(f"{writer_tag()}\n")
    _work_claimed(claim, done, work, stale_s)
    return True


def once(claim: Path, done: Callable[[], bool], work: Callable[[], None], stale_s: float = STALE_S) -> None:
    """Until ``done()``: do ``work`` if unclaimed, else wait for the claimant, taking over a stale claim."""
    seen: tuple[float, float] | None = None  # (the claim's mtime, when this process first saw that mtime)
    while not try_once(claim, done, work, stale_s):
        seen = _take_over_if_stale(claim, seen, stale_s)
        time.sleep(POLL_S)


def _work_claimed(claim: Path, done: Callable[[], bool], work: Callable[[], None], stale_s: float) -> None:
    stop = threading.Event()

    def keep_fresh() -> None:  # a waiter takes over only a claim nobody touches
        while not stop.wait(stale_s / 4):
            with contextlib.suppress(OSError):  # taken by mistake for a moment (_take_over_if_stale): it comes back
                os.utime(claim)

    toucher = threading.Thread(target=keep_fresh, daemon=True)
    toucher.start()
    try:
        if not done():  # another task may have finished it between our look and our claim
            work()
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
    if now - seen[1] < stale_s:
        return seen
    victim = claim.with_name(f"{claim.name}.stale-{writer_tag()}")
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
