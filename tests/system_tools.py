"""The rule every fixture that starts a real system follows when its Debian packages are missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def require_tools(names: tuple[str, ...], what: str, install: str) -> None:
    """Skip on a laptop without ``names``; fail under CI (``CI`` set), where a skip would hide a broken install."""
    missing = [name for name in names if shutil.which(name) is None and not Path("/usr/sbin", name).exists()]
    if not missing:
        return
    message = f"{what} needs {', '.join(missing)} ({install})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
