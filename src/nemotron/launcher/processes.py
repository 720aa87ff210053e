"""Processes a run started, identified so that a signal can only ever reach them.

A pid alone names a process only while it lives: pids wrap (32768 by default), and a finished run's record keeps
its pids forever. So a process is recorded as ``"<pid>:<start time>"`` (the kernel's start time in clock ticks since
boot, field 22 of ``/proc/<pid>/stat``; ``ps -o lstart=`` where there is no ``/proc``), and it is signalled only if a
process with that pid exists *and* started at that time.

Steps of a local run die with the process running them (``PR_SET_PDEATHSIG``): a launcher killed with SIGKILL leaves
no step behind to finish unobserved; each step gets SIGTERM (training checkpoints and exits 75) and a rerun resumes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import suppress
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1


def start_time(pid: int) -> str | None:
    """When process ``pid`` started (an opaque, comparable token), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return _ps_start_time(pid)
    fields = stat.rsplit(") ", 1)[-1].split()  # the command name may hold spaces and parentheses
    if fields[0] == "Z":  # a zombie has exited: it runs nothing and must not count as alive
        return None
    return fields[19]  # field 22 overall; the slice starts at field 3


def _ps_start_time(pid: int) -> str | None:
    result = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True)
    return result.stdout.strip() or None


def identify(pid: int) -> str | None:
    """``"<pid>:<start time>"`` for a live process, None if it is gone already."""
    started = start_time(pid)
    return None if started is None else f"{pid}:{started}"


def is_running(identity: str | None) -> bool:
    """Whether the process recorded as ``identity`` still runs (a reused pid does not count)."""
    pid = _pid(identity)
    return pid is not None and identify(pid) == identity


def signal_process(identity: str | None, sig: int, group: bool = False) -> bool:
    """Send ``sig`` to the recorded process (its process group with ``group``) if it is still that process."""
    pid = _pid(identity)
    if pid is None or not is_running(identity):
        return False
    with suppress(ProcessLookupError):
        (os.killpg if group else os.kill)(pid, sig)
        return True
    return False


def _pid(identity: str | None) -> int | None:
    head = (identity or "").partition(":")[0]
    return int(head) if head.isdigit() and int(head) > 0 else None


def die_with_parent():
    """A ``preexec_fn`` for ``Popen``: the child gets SIGTERM when the process that started it dies (Linux).

    The parent may already be gone when the child runs this (it died between fork and exec): then the child exits.
    Elsewhere (macOS) there is no such call; a killed launcher's steps then run to their end and ``status`` reads
    their artifacts.
    """
    if sys.platform != "linux":
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: nothing to load in the child
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(143)

    return arm


TERMINATE_GRACE_S = 10.0  # a training step's SIGTERM checkpoint must fit in it


def terminate(process: subprocess.Popen) -> None:
    """SIGTERM the process group a run started (a step: torchrun and its workers; an array's task), then SIGKILL
    after a grace period. ``process`` is this process's own child, so its pid cannot have been reused."""
    for sig, wait_s in ((signal.SIGTERM, TERMINATE_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def start_owned(command: list[str], log: IO[bytes], env: dict[str, str]) -> subprocess.Popen:
    """Start a process the run owns: stdin closed, output to ``log``, its own process group (torchrun and its
    workers, or an array task, stopped together by ``terminate``), and it dies with the process that started it."""
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=env,
        start_new_session=True,
        preexec_fn=die_with_parent(),
    )
