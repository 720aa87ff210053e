"""Counting the Slurm client calls a command makes: a directory of wrappers, first on PATH, each appending its name
and arguments to a log, then exec'ing the real binary (what an HPC admin asks of a tool is counted, not guessed)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

CLIENTS = ("sacct", "squeue", "scontrol", "sbatch", "scancel", "sinfo")


class SlurmCalls:
    def __init__(self, directory: Path):
        self.bin = directory / "bin"
        self.log = directory / "calls.log"
        self.bin.mkdir(parents=True, exist_ok=True)
        for name in CLIENTS:
            real = shutil.which(name)
            if real is None:
                continue
            wrapper = self.bin / name
            wrapper.write_text(f'#!/bin/sh\necho "{name} $*" >> "{self.log}"\nexec {real} "$@"\n')
            wrapper.chmod(0o755)

    def path(self, path: str) -> str:
        """``path`` with the wrappers first."""
        return f"{self.bin}:{path}"

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def take(self) -> Counter:
        """Calls per client since the last ``take`` (the log is emptied)."""
        counted = Counter(line.split()[0] for line in self.lines())
        self.log.unlink(missing_ok=True)
        return counted
