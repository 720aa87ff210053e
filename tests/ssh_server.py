"""A real sshd on loopback for the tests that submit through SSH, its sessions pointed at ``slurm_cluster``."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from daemons import free_port_block, tcp_open, terminate_all, wait_until
from system_tools import require_tools


@dataclass
class LoopbackSSH:
    """A real sshd on 127.0.0.1 that accepts one key made for the test; sessions see ``session_env``."""

    base: Path
    port: int
    key: Path
    known_hosts: Path

    def options(self, remote_dir: Path) -> dict:
        """The ``[ssh]`` table of a profile using this sshd."""
        return {
            "host": "127.0.0.1", "user": "root", "port": self.port, "key": str(self.key),
            "remote_dir": str(remote_dir),
            "options": [f"UserKnownHostsFile={self.known_hosts}", "StrictHostKeyChecking=yes"],
        }  # fmt: skip

    def profile_toml(self, extends: str, remote_dir: Path) -> str:
        """A profile submitting through this sshd; its jobs find the cluster's venv through [env] PATH."""
        options = f'["UserKnownHostsFile={self.known_hosts}", "StrictHostKeyChecking=yes"]'
        path = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
        return (
            f'extends = "{extends}"\n[env]\nPYTHONUNBUFFERED = "1"\nPATH = "{path}"\n'
            f'[ssh]\nhost = "127.0.0.1"\nuser = "root"\nport = {self.port}\n'
            f'key = "{self.key}"\nremote_dir = "{remote_dir}"\noptions = {options}\n'
        )


def start_sshd(base: Path, session_env: dict[str, str]) -> LoopbackSSH:
    base.mkdir(parents=True, exist_ok=True)
    host_key, key = base / "host_ed25519", base / "id_ed25519"
    for path in (host_key, key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    (base / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
    port = free_port_block(1)
    set_env = " ".join(f'"{name}={value}"' for name, value in session_env.items())
    (base / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {base}/sshd.pid\n"
        f"AuthorizedKeysFile {base}/authorized_keys\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
        f"SetEnv {set_env}\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    subprocess.run(["/usr/sbin/sshd", "-f", str(base / "sshd_config"), "-E", str(base / "sshd.log")], check=True)
    wait_until(lambda: tcp_open("127.0.0.1", port), 10, "sshd", base / "sshd.log")
    known = base / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {Path(f'{host_key}.pub').read_text()}")
    return LoopbackSSH(base, port, key, known)


@pytest.fixture(scope="session")
def loopback_ssh(slurm_cluster, tmp_path_factory):
    """sshd on loopback whose sessions submit to ``slurm_cluster`` with this venv (a login node's environment)."""
    require_tools(("sshd", "ssh", "ssh-keygen"), "SSH submission tests", "apt-get install openssh-server")
    tests = str(Path(__file__).resolve().parent)
    env = {
        "SLURM_CONF": str(slurm_cluster.conf),
        "PYTHONPATH": tests,  # the toy recipe used by the tests
    }
    sshd = start_sshd(tmp_path_factory.mktemp("sshd"), env)
    try:
        yield sshd
    finally:
        terminate_all([sshd.base / "sshd.pid"])
