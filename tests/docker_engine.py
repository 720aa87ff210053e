"""A real Docker engine for tests: a private dockerd and an offline base image assembled from this machine.

``docker_engine`` (session-scoped) starts ``dockerd`` with its own socket, data-root, exec-root and pidfile,
``--bridge=none --iptables=false --ip6tables=false`` (no network setup: nothing here needs one, and the machine's
own firewall is left alone), then imports a base image: a tar of this machine's ``sh``/coreutils and the shared
libraries that they, the Python interpreter and the project's venv link against (found with ``ldd``), plus
``/etc/passwd`` with root and a non-root ``nemotron`` user. No registry is involved. Python and the venv are NOT
in the image — they are bind-mounted read-only at their own paths (``engine.python_mounts``): the venv is ~6 GB.

Tests talk to it through ``engine.env`` (``DOCKER_HOST`` set). Teardown removes every container, stops dockerd
by the pid it wrote, and deletes the scratch directory; if the test process is killed first, dockerd gets SIGTERM
from the kernel (``PR_SET_PDEATHSIG``) instead of outliving it. Without ``dockerd``/``docker`` the fixture skips, except
under ``CI`` where it fails.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from system_tools import require_tools

BASE_IMAGE = "nemotron-test/base:offline"
TOOLS = ("sh", "bash", "cat", "ls", "mkdir", "rm", "sleep", "env", "id", "echo", "true", "false", "chmod", "cp")
TOOLS += ("mv", "ln", "head", "tail", "grep", "sed", "touch", "sync", "kill", "ps", "uname", "readlink", "dirname")
TOOLS += ("tee",)  # NeMo-Run's docker backend pipes each job through `tee` into its log
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnemotron:x:1000:1000:nemotron:/home/nemotron:/bin/sh\n"
GROUP = "root:x:0:\nnemotron:x:1000:\n"


class DockerStartError(RuntimeError):
    pass


@dataclass
class DockerEngine:
    root: Path
    socket: Path
    base_image: str
    python_prefix: Path  # the interpreter's install prefix (sys.base_prefix), mounted read-only
    venv: Path  # the project venv (sys.prefix), mounted read-only
    env: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def python_mounts(self) -> list[str]:
        return [f"{self.python_prefix}:{self.python_prefix}:ro", f"{self.venv}:{self.venv}:ro"]

    def docker(self, *args: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(["docker", *args], env=self.env, input=input, capture_output=True, timeout=300)
        if check and result.returncode != 0:
            raise DockerStartError(f"docker {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
        return result

    def activate(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point this test's process (and the launcher it calls in-process) at this engine."""
        monkeypatch.setenv("DOCKER_HOST", self.host)

    def containers(self, *filters: str) -> list[str]:
        args = ["ps", "-aq", "--no-trunc", *(a for f in filters for a in ("--filter", f))]
        return self.docker(*args).stdout.decode().split()


def _terminate_with_parent() -> None:
    """In the child: SIGTERM when the test process dies (``timeout``, SIGKILL) before its teardown could run."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_dockerd(root: Path, timeout: float = 30.0) -> tuple[subprocess.Popen, Path]:
    socket = root / "docker.sock"
    log = open(root / "dockerd.log", "wb")  # noqa: SIM115 - kept open for the daemon's lifetime
    command = [
        "dockerd",
        f"--host=unix://{socket}",
        f"--data-root={root / 'data'}",
        f"--exec-root={root / 'exec'}",
        f"--pidfile={root / 'dockerd.pid'}",
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
    ]
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_terminate_with_parent
    )
    env = {**os.environ, "DOCKER_HOST": f"unix://{socket}"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if socket.exists() and subprocess.run(["docker", "version"], env=env, capture_output=True).returncode == 0:
            return process, socket
        time.sleep(0.1)
    stop_dockerd(process)
    tail = (root / "dockerd.log").read_text(errors="replace")[-2000:]
    raise DockerStartError(f"dockerd did not come up within {timeout:.0f}s\n{tail}")


def stop_dockerd(process: subprocess.Popen, timeout: float = 20.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # dockerd stops its containers and its containerd on TERM
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


# ------------------------------------------------------------------------------------------ the offline base
def _shared_libraries(paths: list[str]) -> set[str]:
    """System libraries (outside the mounted Python/venv) that these binaries and modules link against."""
    found: set[str] = set()
    for start in range(0, len(paths), 200):
        out = subprocess.run(["ldd", *paths[start : start + 200]], capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
                found.add(parts[2])
            elif parts and parts[0].startswith("/") and "ld-linux" in parts[0]:
                found.add(parts[0])
    return {lib for lib in found if not lib.startswith((sys.base_prefix, sys.prefix))}


def _linked_files(python_prefix: Path, venv: Path) -> list[str]:
    candidates = [str(Path(sys.executable).resolve())]
    for directory in (python_prefix / "lib", venv):
        for dirpath, _dirs, files in os.walk(directory):
            candidates += [os.path.join(dirpath, f) for f in files if ".so" in f]
    return candidates


def _add_file(tar: tarfile.TarFile, source: str, name: str) -> None:
    real = os.path.realpath(source)
    info = tar.gettarinfo(real, arcname=name.lstrip("/"))
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    with open(real, "rb") as f:
        tar.addfile(info, f)


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.type, info.mode = tarfile.DIRTYPE, mode
    tar.addfile(info)


def _add_text(tar: tarfile.TarFile, name: str, text: str) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name.lstrip("/"))
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_symlink(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.type, info.linkname = tarfile.SYMTYPE, target
    tar.addfile(info)


def base_rootfs_tar(python_prefix: Path, venv: Path) -> bytes:
    """A merged-/usr Debian-like root filesystem holding only what the tests' containers execute."""
    tools = {name: shutil.which(name) for name in TOOLS}
    tools = {name: path for name, path in tools.items() if path}
    libraries = _shared_libraries(list(tools.values()) + _linked_files(python_prefix, venv))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("usr", "usr/bin", "usr/lib", "usr/lib64", "etc", "home", "opt", "var", "run"):
            _add_dir(tar, directory)
        _add_dir(tar, "root", 0o700)
        _add_dir(tar, "tmp", 0o1777)
        _add_dir(tar, "home/nemotron", 0o755)
        for link, target in (("bin", "usr/bin"), ("sbin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
            _add_symlink(tar, link, target)
        added_dirs: set[str] = set()
        for library in sorted(libraries):
            name = "usr" + library if not library.startswith("/usr/") else library
            parent = os.path.dirname(name)
            if parent not in added_dirs and parent not in ("usr/lib", "usr/lib64"):
                _add_dir(tar, parent)
                added_dirs.add(parent)
            _add_file(tar, library, name)
        for name, path in sorted(tools.items()):
            _add_file(tar, path, f"usr/bin/{name}")
        _add_text(tar, "etc/passwd", PASSWD)
        _add_text(tar, "etc/group", GROUP)
        _add_text(tar, "etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n")
    return buffer.getvalue()


def import_base_image(engine: DockerEngine) -> None:
    rootfs = base_rootfs_tar(engine.python_prefix, engine.venv)
    # A default command, as every real base image has (NGC's entrypoint): `enroot import dockerd://` starts with
    # `docker create`, which refuses an image with neither CMD nor ENTRYPOINT ("No command specified").
    changes = ["--change", "ENV PATH=/usr/local/bin:/usr/bin", "--change", 'CMD ["/bin/sh"]']
    engine.docker("import", *changes, "-", engine.base_image, input=rootfs)


@pytest.fixture(scope="session")
def docker_engine():
    require_tools(("dockerd", "docker"), "Docker engine tests", "apt-get install docker.io")
    root = Path(tempfile.mkdtemp(prefix="nemotron-dockerd-", dir="/tmp"))  # short: unix socket paths are limited
    started = time.monotonic()
    process, socket = start_dockerd(root)
    engine = DockerEngine(
        root=root,
        socket=socket,
        base_image=BASE_IMAGE,
        python_prefix=Path(sys.base_prefix),
        venv=Path(sys.prefix),
        env={**os.environ, "DOCKER_HOST": f"unix://{socket}"},
    )
    try:
        import_base_image(engine)
        print(f"\ndockerd + offline base image ready in {time.monotonic() - started:.1f}s", file=sys.stderr)
        yield engine
    finally:
        leftovers = engine.containers()
        if leftovers and process.poll() is None:
            engine.docker("rm", "-f", *leftovers, check=False)
        stop_dockerd(process)
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------------------------------- the test image
TEST_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
# The project's code at the same fixed path as containers/Dockerfile; Python and the venv are mounted.
COPY src /opt/nemotron/src
COPY containers /opt/nemotron/containers
ENV PYTHONPATH=/opt/nemotron/src PATH={venv}/bin:/usr/local/bin:/usr/bin
WORKDIR /opt/nemotron
USER 1000
"""


def snapshot_repo(dest: Path) -> Path:
    """A copy of what an image build sends (pyproject, README, src, containers) and of the shipped profiles. Tests
    build an image from it and plan from it (``PYTHONPATH=<snapshot>/src``): submit refuses an image built from other
    code than the plan's, and edits made to the checkout meanwhile (by whoever works in it) must change neither side."""
    from nemotron.launcher.containers import REPO

    for name in ("src", "containers", "cluster_profiles"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    return dest


def build_test_image(engine: DockerEngine, dockerfile_dir: Path, repository: str = "nemotron-test/nano2", root=None):
    """A repository's own context (``root``, default this checkout; selected by ``containers/.dockerignore``)
    on the offline base image."""
    from unittest import mock

    from nemotron.launcher.containers import REPO, BuildContext, build_image

    root = Path(root or REPO)
    dockerfile = dockerfile_dir / "Dockerfile"
    dockerfile.write_text(TEST_DOCKERFILE.format(venv=engine.venv))
    ignore = root / "containers" / ".dockerignore"
    context = BuildContext.collect(root, dockerfile, ignore, {"BASE_IMAGE": engine.base_image})
    with mock.patch.dict(os.environ, {"DOCKER_HOST": engine.host}):  # env only: the build itself is real
        return build_image(context, repository)


@pytest.fixture(scope="session")
def code_snapshot(tmp_path_factory) -> Path:
    """The code the test image holds; tests launching into it plan from it too (``PYTHONPATH=<it>/src``)."""
    return snapshot_repo(tmp_path_factory.mktemp("code-snapshot"))


@pytest.fixture(scope="session")
def docker_test_image(docker_engine, code_snapshot, tmp_path_factory):
    """``(engine, BuiltImage)``: the project's code in an image built offline from a snapshot of the repository."""
    return docker_engine, build_test_image(docker_engine, tmp_path_factory.mktemp("test-image"), root=code_snapshot)


@pytest.fixture
def docker_env(launcher_env, docker_test_image, code_snapshot):
    """The launcher's environment talking to the test dockerd, planning from the code the test image holds."""
    engine, image = docker_test_image
    launcher_env.env["DOCKER_HOST"] = engine.host
    # plan from the code the image holds (submit refuses an image built from other code than the plan's)
    launcher_env.env["PYTHONPATH"] = os.pathsep.join([str(code_snapshot / "src"), launcher_env.env["PYTHONPATH"]])
    return launcher_env, engine, image
