"""Tracked artifacts: a file-based registry on the artifact root, with no server and no symlinks.

Layout: ``<root>/registry/<name>/v<N>/metadata.json`` plus ``<root>/registry/<name>/latest`` (a text file holding
``v<N>``). Versions are allocated with ``mkdir``, which is atomic on local disks and on Lustre/NFS, so two concurrent
publishers always get different versions. A version directory without ``metadata.json`` is still being written and is
invisible to readers. ``latest`` is only ever moved forward, under a ``mkdir`` lock.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from nemotron.errors import UserError
from nemotron.fsutil import atomic_write_text

if TYPE_CHECKING:
    from nemotron.artifact import Artifact

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
REF_RE = re.compile(r"^(?P<name>[^:]+):(?P<tag>latest|v(?P<version>[1-9][0-9]*))$")
LOCK_STALE_SECONDS = 60.0


class RegistryError(UserError):
    pass


def validate_name(name: str) -> str:
    if not NAME_RE.match(name) or ".." in name:
        raise RegistryError(
            f"invalid artifact name {name!r}: use letters, digits, '_', '-', '.' (no '/', no '..'), at most 128 chars"
        )
    return name


class Registry:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.base = self.root / "registry"

    def versions(self, name: str) -> list[int]:
        """Complete versions of ``name``, ascending."""
        directory = self.base / validate_name(name)
        found = []
        for entry in directory.glob("v*"):
            if entry.name[1:].isdigit() and (entry / "metadata.json").is_file():
                found.append(int(entry.name[1:]))
        return sorted(found)

    def names(self) -> list[str]:
        return sorted(p.name for p in self.base.iterdir() if p.is_dir()) if self.base.is_dir() else []

    def publish(self, name: str, artifact: Artifact) -> int:
        """Record ``artifact`` as the next version of ``name`` and move ``latest`` to it."""
        directory = self.base / validate_name(name)
        directory.mkdir(parents=True, exist_ok=True)
        version = self._allocate(directory)
        entry = artifact.model_copy(update={"tracked_name": name, "tracked_version": version})
        atomic_write_text(directory / f"v{version}" / "metadata.json", entry.model_dump_json(indent=2) + "\n")
        self._advance_latest(directory, version)
        return version

    def resolve(self, reference: str) -> tuple[str, int, Path]:
        """``name:latest`` or ``name:vN`` -> (name, version, version directory)."""
        match = REF_RE.match(reference)
        if not match:
            raise RegistryError(f"invalid tracked artifact {reference!r}: expected NAME:latest or NAME:vN")
        name = validate_name(match["name"])
        directory = self.base / name
        available = self.versions(name)
        if not available:
            raise RegistryError(f"no tracked artifact named {name!r} in {self.base}")
        if match["version"]:
            version = int(match["version"])
            if version not in available:
                raise RegistryError(
                    f"{name!r} has no version v{version}: available are " + ", ".join(f"v{v}" for v in available[-10:])
                )
        else:
            version = self._read_latest(directory) or available[-1]
        return name, version, directory / f"v{version}"

    # ---------------------------------------------------------------------------------------------- internals
    @staticmethod
    def _allocate(directory: Path) -> int:
        existing = [int(p.name[1:]) for p in directory.glob("v*") if p.name[1:].isdigit()]
        version = max(existing, default=0) + 1
        while True:
            try:
                (directory / f"v{version}").mkdir()
                return version
            except FileExistsError:
                version += 1

    @staticmethod
    def _read_latest(directory: Path) -> int | None:
        try:
            text = (directory / "latest").read_text().strip()
        except FileNotFoundError:
            return None
        return int(text[1:]) if text.startswith("v") and text[1:].isdigit() else None

    def _advance_latest(self, directory: Path, version: int) -> None:
        lock = directory / ".latest.lock"
        deadline = time.monotonic() + 2 * LOCK_STALE_SECONDS
        while True:
            try:
                lock.mkdir()
                break
            except FileExistsError:
                try:  # a publisher killed while holding the lock must not wedge the registry forever
                    if time.time() - lock.stat().st_mtime > LOCK_STALE_SECONDS:
                        os.rmdir(lock)
                        continue
                except FileNotFoundError:
                    continue
                if time.monotonic() > deadline:
                    raise RegistryError(f"timed out waiting for {lock}; remove it if no publisher is running") from None
                time.sleep(0.01)
        try:
            current = self._read_latest(directory) or 0
            if version > current:
                atomic_write_text(directory / "latest", f"v{version}\n")
        finally:
            os.rmdir(lock)
