"""What a helper process runs first so that it dies with the process that started it — in a module of its own that
imports nothing heavy: a spawned process imports the module of its initializer, and the checkpoint writer's would
otherwise import torch (seconds of CPU for every training process's writer)."""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """Be killed (SIGKILL, which no mask blocks) when the process that started this one dies (Linux
    ``prctl(PR_SET_PDEATHSIG)``); exit at once if it already has."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)
