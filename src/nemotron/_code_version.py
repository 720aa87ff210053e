"""Which code made an artifact: the git commit of the source tree (with ``.dirty``), else the package version."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import nemotron


@functools.cache
def code_version() -> str:
    source = Path(nemotron.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no", "--", "."],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return nemotron.__version__
    return f"{nemotron.__version__}+g{commit}" + (".dirty" if dirty else "")
