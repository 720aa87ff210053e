"""Test Slurm clusters that load pyxis: real ``srun --container-image`` through enroot, from a prefix built by CI.

``.ci/build-pyxis`` builds enroot and pyxis from the vendored sources into ``$NEMOTRON_PYXIS_PREFIX`` (default
``/opt/nemotron-pyxis``). On top of ``slurm_cluster.py``'s clusters these fixtures add, per cluster:

- ``plugstack.conf`` loading ``spank_pyxis.so`` with a cluster-private ``runtime_path``, ``container_scope=job``
  (named containers die with their job, removed by pyxis' epilog) and, where ``/dev/fuse`` exists,
  ``use_squashfuse=1`` (a ``.sqsh`` starts as an overlay over the mounted image instead of being extracted: ~0.5 s
  per step instead of seconds, and the setup whose signal handling the job scripts must survive);
- ``$PREFIX/bin`` first on slurmd's PATH: pyxis runs ``enroot`` (and enroot its helpers) with slurmstepd's PATH;
- one enroot drop-in for the prefix, ``ENROOT_*_PATH`` under ``$PREFIX/var`` (pyxis strips those variables from a
  job's environment, so only a config file can set them) with the node's name in ``ENROOT_DATA_PATH``: the two
  nodes of the netns cluster run on one host and would otherwise share, and collide on, one containers directory.

Fixtures: ``pyxis_cluster`` (one node) and ``pyxis_cluster_2nodes`` (``n1``/``n2`` in their own network
namespaces), both session-scoped and started on first use; ``tiny_squashfs`` (a few-MB image of this machine's
``sh`` with a marker ``/etc/os-release``). Without the prefix they skip, except under ``CI`` where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from slurm_cluster import SLURM_BINARIES, _session_cluster, start_multi_node, start_single_node
from system_tools import require_tools

PREFIX_ENV = "NEMOTRON_PYXIS_PREFIX"
DEFAULT_PREFIX = "/opt/nemotron-pyxis"
ENROOT_DROPIN = "50-nemotron-tests.conf"
TINY_OS_RELEASE = 'NAME="nemotron tiny"\nPRETTY_NAME="nemotron tiny test image"\nID=nemotron-tiny\n'
# use_squashfuse needs /dev/fuse (a CI runner inside a container may lack it): pyxis then extracts each image instead
PYXIS_OPTIONS = "container_scope=job" + (" use_squashfuse=1" if Path("/dev/fuse").exists() else "")
ENROOT_TOOLS = ("mksquashfs", "unsquashfs", "squashfuse", "fuse-overlayfs", "jq", "parallel")


@dataclass(frozen=True)
class PyxisInstall:
    prefix: Path

    @property
    def bin(self) -> Path:
        return self.prefix / "bin"

    @property
    def plugin(self) -> Path:
        return self.prefix / "lib" / "slurm" / "spank_pyxis.so"

    @property
    def state(self) -> Path:
        return self.prefix / "var"

    def path(self, path: str | None = None) -> str:
        """A PATH with enroot first (``nemotron-launch build`` runs ``enroot import`` here)."""
        return f"{self.bin}:{path if path is not None else os.environ.get('PATH', '/usr/bin:/bin')}"


def find_install() -> PyxisInstall:
    """The prefix ``.ci/build-pyxis`` made; skip (fail under CI) when it is not there."""
    install = PyxisInstall(Path(os.environ.get(PREFIX_ENV, DEFAULT_PREFIX)))
    require_tools(ENROOT_TOOLS, "pyxis test clusters", "apt-get install squashfs-tools squashfuse fuse-overlayfs")
    if not (install.bin / "enroot").is_file() or not install.plugin.is_file():
        message = f"pyxis test clusters need enroot + pyxis in {install.prefix}: run .ci/build-pyxis"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    write_enroot_config(install)
    return install


def enroot_config(install: PyxisInstall) -> str:
    """Evaluated by enroot at each call, in the job's environment (``SLURMD_NODENAME`` is set there and in the
    epilog; outside Slurm, e.g. ``enroot import`` by ``nemotron-launch build``, the host name stands in)."""
    state = install.state
    return (
        "# written by tests/pyxis_cluster.py: enroot state of the test clusters (same text for every session)\n"
        f"ENROOT_RUNTIME_PATH {state}/runtime/user-$(id -u)\n"
        f"ENROOT_CACHE_PATH   {state}/cache/user-$(id -u)\n"
        f"ENROOT_DATA_PATH    {state}/data/user-$(id -u)/${{SLURMD_NODENAME:-$(hostname)}}\n"
        f"ENROOT_CONFIG_PATH  {state}/config/user-$(id -u)\n"
        f"ENROOT_TEMP_PATH    {state}/tmp\n"
    )


def write_enroot_config(install: PyxisInstall) -> None:
    """Idempotent, and atomic: test sessions running at once on this machine share the prefix."""
    for sub in ("runtime", "cache", "data", "config", "tmp"):
        (install.state / sub).mkdir(parents=True, exist_ok=True)
        (install.state / sub).chmod(0o1777)
    dropin = install.prefix / "etc" / "enroot" / "enroot.conf.d" / ENROOT_DROPIN
    text = enroot_config(install)
    if dropin.exists() and dropin.read_text() == text:
        return
    tmp = dropin.with_name(f".{dropin.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, dropin)


def plugstack_conf(base: Path, install: PyxisInstall) -> str:
    """The ``slurm.conf`` line loading pyxis (srun and sbatch read the same file, which gives them --container-*)."""
    runtime = base / "pyxis"
    runtime.mkdir(parents=True, exist_ok=True)
    plugstack = base / "plugstack.conf"
    plugstack.write_text(f"required {install.plugin} runtime_path={runtime} {PYXIS_OPTIONS}\n")
    return f"PlugStackConfig={plugstack}\n"


def start_pyxis_single_node(base: Path, install: PyxisInstall):
    return start_single_node(
        base, name="nemopyxis", extra_conf=plugstack_conf(base, install), slurmd_path=str(install.bin)
    )


def start_pyxis_multi_node(base: Path, install: PyxisInstall):
    return start_multi_node(
        base, name="nemopyxismn", extra_conf=plugstack_conf(base, install), slurmd_path=str(install.bin),
        netns_prefix="px",
    )  # fmt: skip


@pytest.fixture(scope="session")
def pyxis_install() -> PyxisInstall:
    return find_install()


@pytest.fixture(scope="session")
def pyxis_cluster(tmp_path_factory, pyxis_install):
    """One node whose plugstack loads pyxis."""
    yield from _session_cluster(tmp_path_factory, SLURM_BINARIES, start_pyxis_single_node, pyxis_install)


@pytest.fixture(scope="session")
def pyxis_cluster_2nodes(tmp_path_factory, pyxis_install):
    """Two nodes n1, n2 in their own network namespaces, pyxis loaded on both."""
    binaries = (*SLURM_BINARIES, "nsenter", "unshare", "ip")
    yield from _session_cluster(tmp_path_factory, binaries, start_pyxis_multi_node, pyxis_install)


# ------------------------------------------------------------------------------------------------ a tiny image
def _libraries(binaries: list[str]) -> set[str]:
    out = subprocess.run(["ldd", *binaries], capture_output=True, text=True).stdout
    found = set()
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            found.add(parts[2])
        elif parts and parts[0].startswith("/") and not parts[0].endswith(":"):  # not ldd's "FILE:" headers
            found.add(parts[0])
    return found


def make_tiny_squashfs(output: Path) -> Path:
    """This machine's ``sh`` and a few tools with their libraries, and a marker ``/etc/os-release``: enough for
    pyxis (it needs ``sh`` in the image) and for a test to tell the container's root from the host's."""
    tools = {
        name: os.path.realpath(path) for name in ("sh", "cat", "hostname", "pwd", "env") if (path := shutil.which(name))
    }
    with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
        root = Path(tmp) / "rootfs"
        for sub in ("usr/bin", "etc", "tmp", "proc", "sys", "dev", "run", "root"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "bin").symlink_to("usr/bin")
        for name, tool in tools.items():  # by the name called: sh is dash here
            shutil.copy2(tool, root / "usr/bin" / name)
        for library in _libraries(list(tools.values())):
            target = root / library.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.realpath(library), target)
        (root / "etc" / "os-release").write_text(TINY_OS_RELEASE)
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (root / "etc" / "group").write_text("root:x:0:\n")
        squash = ["mksquashfs", str(root), str(output), "-comp", "lzo", "-noD", "-noappend", "-all-root", "-quiet"]
        subprocess.run([*squash, "-no-progress"], check=True, capture_output=True)
    return output


@pytest.fixture(scope="session")
def tiny_squashfs(tmp_path_factory, pyxis_install) -> Path:
    return make_tiny_squashfs(tmp_path_factory.mktemp("tiny-image") / "tiny.sqsh")
