"""Progress heartbeats, a hang watchdog and fault-injection test hooks for the processes of a step.

Each process of a step reports through one ``Heartbeat``: ``beat(done)`` once per unit of work (a training iteration,
on every rank; documents for curation; tasks for evaluation). A beat only notes the time unless a write is due: the
``writer`` (rank 0) rewrites ``<output_dir>/progress.json`` at most every ``min_interval_s`` seconds, or when forced
(after a checkpoint save), atomically, as one line of JSON that the launcher reads for status and ETA::

    {"kind": "training", "done": 40, "total": 120, "time": 1767225600.123, "attempt": 1, "started": 1767225590.0,
     "rate": 4.1, "loss": 5.12, "tokens_per_second": 8400.0, "checkpoint_step": 40}

``rate`` is units per second since this process's first beat (null until a second unit is done), so the rate of a
resumed attempt is its own, not diluted by the units an earlier attempt did. ``eta_seconds`` turns a record into
seconds left; ``read_progress`` reads one back, tolerant of a missing or half-written file.

Hang watchdog: with a positive ``hang_timeout`` a daemon thread, started by the first beat (model building and data
loading are not watched) and stopped by ``close()``, ends the process with ``HANG_EXIT_CODE`` (76) when no beat came
for that long: one ``watchdog: ...`` line and the Python stacks of every thread on stderr, ``<output_dir>/hang.json``
(``{"rank", "done", "idle_s", "time", "attempt"}``; every rank may write it, the last one wins), then
``HANG_EXIT_GRACE_S`` seconds for the other ranks, blocked in a collective waiting for the hung one, to time out and
dump their own stacks before ``srun --kill-on-bad-exit`` ends the step. A hang that holds the GIL (a C extension that
never releases it) silences the watchdog too; collectives (NCCL, gloo), I/O and sleeps release it.

Environment:
  NEMOTRON_ATTEMPT        which attempt of the step this is (1, 2, ... after requeues); default 1
  NEMOTRON_HANG_TIMEOUT   seconds without a beat before the watchdog ends the process; unset or 0 = no watchdog
  RANK (or SLURM_PROCID)  this process's rank, for the watchdog's line and hang.json; default 0

Test hooks (fault injection, read once when the Heartbeat is made; inert unless their variable is set). Training
calls ``Heartbeat.inject_faults(done)`` before each iteration's forward pass:
  NEMOTRON_FAULT_HANG_AT=K       rank NEMOTRON_FAULT_RANK (default the last, WORLD_SIZE-1) stops making progress after
                                 K iterations (sleeps forever), in attempt 1 only, so the next attempt completes
  NEMOTRON_FAULT_EXIT_AT=K:CODE  every rank exits with CODE after K iterations, in attempt 1 only unless
                                 NEMOTRON_FAULT_EVERY_ATTEMPT=1
  NEMOTRON_FAULT_SLOW_S=S        every iteration takes S seconds longer, in every attempt (a step whose length does
                                 not depend on the machine's speed, for time-limit tests)
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import logging
import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from nemotron.errors import HANG_EXIT_CODE, UserError
from nemotron.fsutil import atomic_write_text
from nemotron.log import get_logger

PROGRESS_FILE = "progress.json"
HANG_MARKER = "hang.json"
MIN_INTERVAL_S = 5.0  # between two progress.json writes, unless forced
# After reporting a hang: time for the other ranks' watchdogs to report theirs before this exit ends the step.
HANG_EXIT_GRACE_S = 5.0
ATTEMPT_ENV = "NEMOTRON_ATTEMPT"
HANG_TIMEOUT_ENV = "NEMOTRON_HANG_TIMEOUT"

T = TypeVar("T")
log = get_logger("heartbeat")


def hang_timeout_from_env(default: float | None, env: Mapping[str, str] = os.environ) -> float | None:
    """Seconds from ``NEMOTRON_HANG_TIMEOUT`` (``default`` when unset; "0" = no watchdog, None)."""
    value = env.get(HANG_TIMEOUT_ENV, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise UserError(
            f"{HANG_TIMEOUT_ENV}={value!r} is not a number of seconds: use e.g. 600, or 0 for no hang watchdog"
        )
    return seconds or None


def attempt_from_env(env: Mapping[str, str] = os.environ) -> int:
    return _int_from_env(env, ATTEMPT_ENV, 1)


def eta_seconds(record: Mapping[str, Any]) -> float | None:
    """Seconds left at the record's rate: ``(total - done) / rate``; None while total or rate is unknown."""
    total, done, rate = record.get("total"), record.get("done"), record.get("rate")
    if not all(_is_number(v) for v in (total, done, rate)) or rate <= 0:
        return None
    return max(0.0, (total - done) / rate)


def read_progress(source: Path | str) -> dict[str, Any] | None:
    """A ``progress.json`` record from its path (a Path) or its text (a str, e.g. read over ssh); None when missing,
    unreadable, half-written or not a record."""
    return _read_record(source)


def read_hang(source: Path | str) -> dict[str, Any] | None:
    """A ``hang.json`` record from its path (a Path) or its text (a str); None when missing or not a record."""
    return _read_record(source)


class Heartbeat:
    """Progress reports (``progress.json``, by the ``writer``) and the hang watchdog of one process of a step."""

    def __init__(
        self,
        output_dir: Path,
        kind: str,
        total: int | None,
        *,
        writer: bool,
        hang_timeout: float | None = None,
        min_interval_s: float = MIN_INTERVAL_S,
    ):
        self.output_dir = Path(output_dir)
        self.kind = kind
        self.total = total  # a step that learns its total on the way may set it
        self.writer = writer
        self.hang_timeout = hang_timeout if hang_timeout is not None and hang_timeout > 0 else None
        self.min_interval_s = min_interval_s
        self.attempt = attempt_from_env()
        self.rank = _rank_from_env(os.environ)
        self.done: int | None = None  # units done at the last beat
        self._faults = Faults.from_env(os.environ)
        self._first: tuple[float, float, int] | None = None  # (monotonic, unix time, done) of the first beat
        self._last_beat = 0.0
        self._last_write = -math.inf
        self._write_failed = False
        self._closed = threading.Event()
        self._watchdog: threading.Thread | None = None

    @classmethod
    def for_step(cls, output_dir: Path, kind: str, total: int | None) -> Heartbeat:
        """The heartbeat of a step's process outside training (curation, evaluation): rank 0 writes, the watchdog
        follows ``NEMOTRON_HANG_TIMEOUT``; ``output_dir`` is created if it is not there yet."""
        with contextlib.suppress(OSError):  # the step's own write there fails with its message; progress warns
            Path(output_dir).mkdir(parents=True, exist_ok=True)
        rank_zero = _rank_from_env(os.environ) == 0
        return cls(output_dir, kind, total, writer=rank_zero, hang_timeout=hang_timeout_from_env(None))

    @classmethod
    @contextlib.contextmanager
    def staged_step(cls, output_dir: Path, kind: str, total: int) -> Iterator[Path]:
        """A step that writes its files at once (curation of pairs, conversations): they go into a staging directory
        beside ``output_dir`` (yielded), published whole when the block ends without error, so nothing half-written
        is ever visible there; its heartbeat beats at 0 first and at ``total`` once published."""
        from nemotron.fsutil import output_staging_dir, publish_staged

        heartbeat = cls.for_step(output_dir, kind, total)
        staging = output_staging_dir(output_dir)
        try:
            heartbeat.beat(0)
            yield staging
            publish_staged(staging, output_dir)
            heartbeat.beat(total, force=True)
        finally:
            heartbeat.close()
            shutil.rmtree(staging, ignore_errors=True)

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def beat(self, done: int, *, force: bool = False, **fields: Any) -> None:
        """``done`` units are finished. Writes ``progress.json`` (writer only) when forced or when ``min_interval_s``
        passed since the last write; ``fields`` (e.g. ``loss``) go into the record after the common keys."""
        now = time.monotonic()
        self._last_beat = now
        self.done = done
        if self._first is None:
            self._first = (now, time.time(), done)
            self._start_watchdog()
        if self.writer and (force or now - self._last_write >= self.min_interval_s):
            self._last_write = now
            self._write(self.record(fields))

    def track(self, items: Iterable[T], *, counted: bool = True) -> Iterator[T]:
        """Yield ``items``, beating once each is processed (when the next is asked for): one more unit each, or with
        ``counted=False`` no new unit, only a sign of life for the watchdog (a later pass over the same data)."""
        done = self.done or 0
        for item in items:
            yield item
            done += counted
            self.beat(done)

    def inject_faults(self, done: int) -> None:
        """The test hooks' faults due after ``done`` units (see the module docstring); nothing when none is set."""
        if self._faults is not None:
            self._faults.apply(done)

    def record(self, fields: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The progress record as of the last beat."""
        first_time, first_wall, first_done = self._first or (time.monotonic(), time.time(), self.done or 0)
        elapsed = self._last_beat - first_time
        done = self.done if self.done is not None else 0
        rate = (done - first_done) / elapsed if elapsed > 0 and done > first_done else None
        record: dict[str, Any] = {
            "kind": self.kind,
            "done": done,
            "total": self.total,
            "time": round(time.time(), 3),
            "attempt": self.attempt,
            "started": round(first_wall, 3),
            "rate": float(f"{rate:.4g}") if rate is not None else None,
        }
        for name, value in (fields or {}).items():
            if name in record:
                raise ValueError(f"progress field {name!r} is one of the common keys {list(record)}")
            record[name] = None if isinstance(value, float) and not math.isfinite(value) else value
        return record

    def close(self) -> None:
        """Stop the watchdog (the work it watched is over, or failed in a way that reports itself)."""
        self._closed.set()
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog is not threading.current_thread():
            watchdog.join(timeout=5)

    def _write(self, record: dict[str, Any]) -> None:
        target = self.output_dir / PROGRESS_FILE
        try:
            # Not durable (no fsync): a progress report lost in a machine crash costs nothing; a stalled fsync on a
            # busy shared filesystem would stall the training loop.
            atomic_write_text(target, json.dumps(record, allow_nan=False) + "\n", durable=False)
        except OSError as exc:
            if not self._write_failed:
                self._write_failed = True
                log.warning("cannot write %s (%s); the step goes on without progress reports", target, exc)

    def _start_watchdog(self) -> None:
        if self.hang_timeout is None or self._closed.is_set():
            return
        self._watchdog = threading.Thread(target=self._watch, name="nemotron-hang-watchdog", daemon=True)
        self._watchdog.start()

    def _watch(self) -> None:
        poll_s = min(1.0, self.hang_timeout / 4)
        while not self._closed.wait(poll_s):
            idle = time.monotonic() - self._last_beat
            if idle >= self.hang_timeout:
                self._end_hung_process(idle)

    def _end_hung_process(self, idle: float) -> None:
        done = self.done
        _say(
            f"watchdog: rank {self.rank} made no progress for {idle:.0f} s after unit {done} of {self.kind} "
            f"(attempt {self.attempt}); Python stacks of every thread follow"
        )
        try:
            faulthandler.dump_traceback(file=_stderr_fileno(), all_threads=True)
        except (OSError, ValueError, RuntimeError):
            _say("watchdog: could not dump the Python stacks")
        marker = {"rank": self.rank, "done": done, "idle_s": round(idle, 1), "time": round(time.time(), 3)}
        marker["attempt"] = self.attempt
        try:
            atomic_write_text(self.output_dir / HANG_MARKER, json.dumps(marker) + "\n")
        except OSError as exc:
            _say(f"watchdog: cannot write {self.output_dir / HANG_MARKER}: {exc}")
        _flush_all()
        time.sleep(HANG_EXIT_GRACE_S)
        os._exit(HANG_EXIT_CODE)


@dataclass(frozen=True)
class Faults:
    """The fault-injection test hooks that apply to this process (rank, attempt), read from the environment once."""

    hang_at: int | None = None
    exit_at: int | None = None
    exit_code: int = 1
    slow_s: float = 0.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Faults | None:
        hang, leave = env.get("NEMOTRON_FAULT_HANG_AT", "").strip(), env.get("NEMOTRON_FAULT_EXIT_AT", "").strip()
        slow = env.get("NEMOTRON_FAULT_SLOW_S", "").strip()
        if not hang and not leave and not slow:
            return None
        first_attempt = attempt_from_env(env) == 1
        hang_at = exit_at = None
        exit_code = 1
        if hang:
            at = _int_from_env(env, "NEMOTRON_FAULT_HANG_AT", 0)
            last_rank = _int_from_env(env, "WORLD_SIZE", _int_from_env(env, "SLURM_STEP_NUM_TASKS", 1)) - 1
            if first_attempt and _int_from_env(env, "NEMOTRON_FAULT_RANK", last_rank) == _rank_from_env(env):
                hang_at = at
        if leave:
            at, _, code = leave.partition(":")
            if not (at.strip().isdigit() and code.strip().isdigit()):
                raise UserError(f"NEMOTRON_FAULT_EXIT_AT={leave!r} is not UNIT:CODE (e.g. 3:1)")
            if first_attempt or env.get("NEMOTRON_FAULT_EVERY_ATTEMPT", "").strip() == "1":
                exit_at, exit_code = int(at), int(code)
        try:
            slow_s = float(slow) if slow else 0.0
        except ValueError:
            raise UserError(f"NEMOTRON_FAULT_SLOW_S={slow!r} is not a number of seconds") from None
        return cls(hang_at, exit_at, exit_code, slow_s)

    def apply(self, done: int) -> None:
        if self.slow_s > 0:
            time.sleep(self.slow_s)
        if done == self.hang_at:
            _injected_hang(done)
        if done == self.exit_at:
            _say(f"fault injection: exiting with code {self.exit_code} after unit {done} (NEMOTRON_FAULT_EXIT_AT)")
            _flush_all()
            os._exit(self.exit_code)


def _injected_hang(done: int) -> None:
    """Stop making progress, the GIL released (as in a stuck collective), until something ends the process."""
    _say(f"fault injection: rank {_rank_from_env(os.environ)} stops making progress after unit {done}")
    while True:
        time.sleep(3600)


def _rank_from_env(env: Mapping[str, str]) -> int:
    return _int_from_env(env, "RANK", _int_from_env(env, "SLURM_PROCID", 0))


def _int_from_env(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(f"{name}={value!r} is not a whole number") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _read_record(source: Path | str) -> dict[str, Any] | None:
    text = source
    if isinstance(source, os.PathLike):
        try:
            text = Path(source).read_text()
        except (OSError, UnicodeDecodeError):
            return None
    try:
        record = json.loads(text)
    except ValueError:  # half a line, garbage
        return None
    if not isinstance(record, dict) or not _is_number(record.get("done")):
        return None
    return record


def _say(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def _stderr_fileno() -> int:
    """stderr's file descriptor for faulthandler, which writes to it directly (sys.stderr may be a wrapper)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return 2


def _flush_all() -> None:
    for handler in logging.getLogger("nemotron").handlers:
        handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
