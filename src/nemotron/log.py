"""People's output: logs and progress on stderr (stdout is reserved for the JSON that pipes carry)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_configured = False


def get_logger(name: str) -> logging.Logger:
    """A logger writing ``HH:MM:SS name message`` lines to stderr (level from ``NEMOTRON_LOG_LEVEL``)."""
    global _configured
    if not _configured:
        import os

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s", "%H:%M:%S"))
        root = logging.getLogger("nemotron")
        root.addHandler(handler)
        root.setLevel(os.environ.get("NEMOTRON_LOG_LEVEL", "INFO").upper())
        root.propagate = False
        _configured = True
    return logging.getLogger(name if name.startswith("nemotron") else f"nemotron.{name}")


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a rich progress bar on stderr when it is a terminal; plainly otherwise (logs, pipes, Slurm)."""
    if not sys.stderr.isatty():
        yield from items
        return
    from rich.console import Console
    from rich.progress import track

    yield from track(items, description=description, total=total, console=Console(stderr=True), transient=True)
