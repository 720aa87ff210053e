"""Filesystem primitives that stay correct on local disks and on Lustre/NFS shared filesystems.

Temporary files and staging directories carry their writer's host and pid in their names
(``.metadata.json.<host>~<pid>.<random>.tmp``, ``.staging-<host>~<pid>``), so the next writer of a directory can
tell a killed writer's debris from a live writer's work: same host and the pid is gone, or another host and older
than ``FOREIGN_DEBRIS_S`` (a pid on another machine cannot be checked).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

FOREIGN_DEBRIS_S = 3600.0
TMP_SUFFIX = ".tmp"
STAGING_PREFIX = ".staging-"


def writer_tag() -> str:
    """``<host>~<pid>`` of this process, the owner part of its temporary names."""
    return f"{socket.gethostname()}~{os.getpid()}"


def _writer_gone(tag: str, path: Path) -> bool:
    host, _, pid = tag.rpartition("~")
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    try:
        return time.time() - path.lstat().st_mtime > FOREIGN_DEBRIS_S
    except FileNotFoundError:
        return False


def remove_debris(directory: Path, target_name: str | None = None) -> None:
    """Remove what killed writers left in ``directory``: temp files of ``target_name`` (all, if None) and
    staging directories. Whatever cannot be removed stays; this never fails the write that called it."""
    temp_prefix = f".{target_name}." if target_name else "."
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if name.startswith(temp_prefix) and name.endswith(TMP_SUFFIX):
            tag = name[len(temp_prefix) : -len(TMP_SUFFIX)].rpartition(".")[0]  # drop mkstemp's random part
            if _writer_gone(tag, entry):
                entry.unlink(missing_ok=True)
        elif name.startswith(STAGING_PREFIX) and entry.is_dir() and _writer_gone(name[len(STAGING_PREFIX) :], entry):
            shutil.rmtree(entry, ignore_errors=True)


def staging_dir(output_dir: Path) -> Path:
    """A private directory inside ``output_dir`` for files not yet published; a killed writer's ones are removed."""
    remove_debris(output_dir)
    staging = Path(output_dir) / f"{STAGING_PREFIX}{writer_tag()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def output_staging_dir(output_dir: Path) -> Path:
    """``staging_dir`` of a step's output directory, created first: a failed run leaves nothing half-written in it,
    and a directory that cannot be made is the user's one-line error."""
    from nemotron.errors import UserError

    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output directory {str(output_dir)!r}: {exc.strerror}") from None
    return staging_dir(output_dir)


def publish_staged(staging: Path, output_dir: Path) -> None:
    """Move finished files from ``staging`` into ``output_dir``; the old metadata goes first so no reader pairs it
    with new files."""
    (output_dir / "metadata.json").unlink(missing_ok=True)
    for entry in staging.iterdir():
        target = output_dir / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)


def fsync_dir(directory: Path) -> None:
    """Persist a rename: the directory entry lives in the directory, not in the file."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories; the rename is still atomic
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(target: Path, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Write ``target`` so readers see the old content or the new, never a mix (temp + fsync + rename).

    ``durable=False`` skips the two fsyncs: still atomic for readers, but a crash of the machine may lose the write.
    For files rewritten every few seconds from a training loop (progress), where an fsync on a busy shared
    filesystem can stall the loop for longer than the write is worth."""
    target = Path(target)
    remove_debris(target.parent, target.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{writer_tag()}.", suffix=TMP_SUFFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(target.parent)


def atomic_write_text(target: Path, text: str, mode: int = 0o644, *, durable: bool = True) -> None:
    atomic_write_bytes(target, text.encode(), mode, durable=durable)
