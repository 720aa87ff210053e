"""Where Slurm commands run: on this machine (a login node), or on the profile's SSH host (from a laptop).

Both shells offer the same three operations (run a command, write a file, read a file from an offset), so the
Slurm executor is written once. Every command runs without the profile's secrets in its environment (``withheld``):
``sbatch`` hands its whole environment to slurmctld (``--export`` defaults to ALL), which saves it with the job in its
StateSaveLocation and, where a site sets ``AccountingStoreFlags=job_env``, in the accounting database. A job reads
its secrets from the run's 0600 file instead.
``ship_code`` copies a snapshot of the repository (tracked + untracked-not-ignored files,
``git ls-files -co --exclude-standard``) into a content-addressed directory on the cluster; unchanged code is
not sent again.
"""

from __future__ import annotations

import hashlib
import io
import os
import shlex
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from nemotron.errors import UserError
from nemotron.launcher.executors.slurm_options import SSHOptions

REPO_ROOT = Path(__file__).resolve().parents[3]


class RemoteError(UserError):
    pass


def environment_without(withheld: Iterable[str]) -> dict[str, str]:
    """This process's environment less the ``withheld`` variables (the profile's secret names)."""
    names = set(withheld)
    return {key: value for key, value in os.environ.items() if key not in names}


class LocalShell:
    """Commands and files on this machine."""

    host = None

    def __init__(self, withheld: Iterable[str] = ()):
        self.withheld = tuple(withheld)

    def run(self, argv: Sequence[str], input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        # jobs inherit the submitting environment (sbatch --export=ALL), secrets withheld: this Python's venv comes
        # first on PATH, so `python` in a job on a no-container profile is the launcher's own interpreter environment
        env = environment_without(self.withheld)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout, env=env)

    def write_file(self, path: str, text: str, private: bool = False) -> None:
        from nemotron.launcher.executors.base import write_env_file

        target = Path(path)
        if private:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_env_file(target, {})
            with open(target, "w") as f:
                f.write(text)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def read_file(self, path: str, offset: int = 0) -> bytes:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            return b""


class SSHShell:
    """Commands and files on ``ssh.host``; every call is one non-interactive ``ssh`` (BatchMode)."""

    def __init__(self, ssh: SSHOptions, withheld: Iterable[str] = ()):
        self.ssh = ssh
        self.host = ssh.host
        self.withheld = tuple(withheld)  # a user's `SendEnv` must not carry them to the cluster either

    def ssh_argv(self) -> list[str]:
        argv = ["ssh", "-p", str(self.ssh.port), "-o", "BatchMode=yes"]
        if self.ssh.key:
            argv += ["-i", str(Path(self.ssh.key).expanduser()), "-o", "IdentitiesOnly=yes"]
        for option in self.ssh.options:
            argv += ["-o", option]
        return [*argv, f"{self.ssh.user}@{self.ssh.host}" if self.ssh.user else self.ssh.host]

    def _ssh(self, remote_command: str, input: bytes | str | None = None, timeout: float = 120):
        text = not isinstance(input, bytes)
        done = subprocess.run(
            [*self.ssh_argv(), remote_command],
            input=input,
            capture_output=True,
            text=text,
            timeout=timeout,
            env=environment_without(self.withheld),
        )
        if done.returncode == 255:  # ssh's own failure (unreachable, auth), not the remote command's
            message = (done.stderr if text else done.stderr.decode(errors="replace")).strip().splitlines()
            raise RemoteError(f"ssh to {self.host} failed: {message[-1] if message else 'exit 255'}")
        return done

    def run(self, argv: Sequence[str], input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return self._ssh(shlex.join(argv), input=input if input is not None else "", timeout=timeout)

    def write_file(self, path: str, text: str, private: bool = False) -> None:
        umask = "umask 077 && " if private else ""
        command = f"{umask}mkdir -p {shlex.quote(str(Path(path).parent))} && cat > {shlex.quote(path)}"
        done = self._ssh(command, input=text)
        if done.returncode != 0:
            raise RemoteError(f"cannot write {path} on {self.host}: {done.stderr.strip()}")

    def read_file(self, path: str, offset: int = 0) -> bytes:
        done = self._ssh(f"tail -c +{offset + 1} {shlex.quote(path)} 2>/dev/null || true", input=b"")
        return done.stdout


def shell_for(ssh: SSHOptions | None, withheld: Iterable[str] = ()) -> LocalShell | SSHShell:
    """Where a plan's Slurm commands run; ``withheld``: its secret names, kept out of every command's environment."""
    return SSHShell(ssh, withheld) if ssh is not None else LocalShell(withheld)


# ------------------------------------------------------------------------------------------------ code shipping
def code_files(repo: Path = REPO_ROOT) -> list[str]:
    """Tracked and untracked-not-ignored files of the repository (what a snapshot of the code holds)."""
    done = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-co", "--exclude-standard", "-z"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RemoteError(f"cannot list the code to ship from {repo}: {done.stderr.strip() or 'not a git checkout'}")
    return sorted(f for f in done.stdout.split("\0") if f and (repo / f).is_file())


def code_digest(repo: Path, files: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0" + (repo / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def ship_code(shell: SSHShell, remote_dir: str, repo: Path = REPO_ROOT) -> tuple[str, bool]:
    """Copy the code snapshot to ``remote_dir/<digest>`` unless it is there; returns (that directory, sent?)."""
    files = code_files(repo)
    if remote_dir.startswith("~"):  # quoted paths do not expand ~: ask the remote shell for its home
        home = shell._ssh('echo "$HOME"', input="").stdout.strip()
        remote_dir = home + remote_dir[1:]
    target = f"{remote_dir.rstrip('/')}/{code_digest(repo, files)}"
    quoted = shlex.quote(target)
    if shell._ssh(f"test -f {quoted}/.complete", input="").returncode == 0:
        return target, False
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for name in files:
            tar.add(repo / name, arcname=name, recursive=False)
    # unpacked beside, then renamed: a half-sent snapshot is never taken for a complete one
    staging = shlex.quote(f"{target}.partial")
    command = (
        f"rm -rf {staging} && mkdir -p {staging} && tar -xzf - -C {staging} && touch {staging}/.complete "
        f"&& rm -rf {quoted} && mv {staging} {quoted}"
    )
    done = shell._ssh(command, input=archive.getvalue(), timeout=600)
    if done.returncode != 0:
        raise RemoteError(f"cannot ship the code to {shell.host}:{target}: {done.stderr.decode(errors='replace')}")
    return target, True
