"""Helpers for the daemons tests start for real (Slurm, MariaDB, sshd): free ports, readiness, teardown by pid."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


class ClusterStartError(RuntimeError):
    pass


def free_port_block(count: int) -> int:
    """A base port with ``count`` consecutive free TCP ports on this machine."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count < 65000 and all(port_free(base + i) for i in range(count)):
            return base
    raise ClusterStartError(f"no block of {count} free ports found")


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def wait_until(predicate, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
    raise ClusterStartError(f"{what} not ready after {timeout:.0f}s\n{tail}")


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def terminate_all(pid_files: list[Path], timeout: float = 5) -> None:
    """SIGTERM every daemon at once, SIGKILL what is left after ``timeout`` (the clusters are scratch)."""
    pids = []
    for pid_file in pid_files:
        try:
            pids.append(int(pid_file.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    alive = [pid for pid in pids if send_signal(pid, signal.SIGTERM)]
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in alive if send_signal(pid, 0)]
    for pid in alive:
        send_signal(pid, signal.SIGKILL)


def send_signal(pid: int, signum: int) -> bool:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True
