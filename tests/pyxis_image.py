"""The recipe's squashfs for the pyxis test clusters, made by the real ``nemotron-launch build`` and its profile.

``pyxis_nano2_image`` (session-scoped) writes the pyxis test profile, then runs ``nemotron-launch build nano2
--profile PROFILE --base-image <offline base> --dockerfile <the docker tests' Dockerfile>`` against the test dockerd:
the image is built from the repository's context (``containers/nano2/.dockerignore``) and converted by
``enroot import dockerd://…`` into ``<images>/nano2-<image id>.sqsh``; the profile's ``nano2.sqsh`` becomes a
symlink to it. The context is the session's ``code_snapshot`` (``nemotron-launch`` runs with its ``src`` first on
``PYTHONPATH``, so the build's repository is the snapshot): the docker tests build the same context and
Dockerfile, so docker's layer cache serves most of it, and edits to the checkout meanwhile change nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from docker_engine import TEST_DOCKERFILE

from nemotron.launcher.profiles import REPO_PROFILES

CONSOLE_SCRIPT = Path(sys.executable).parent / "nemotron-launch"

PROFILE = """\
# The pyxis test clusters (tests/pyxis_cluster.py): every step runs in the recipe's squashfs through
# `srun --container-image`. `nemotron-launch build nano2 --profile THIS --base-image {base} --dockerfile {dockerfile}`
# makes it from the offline test image (tests/docker_engine.py), and `image` is the symlink build moves to it.
# That image holds the repository's code at /opt/nemotron/src and the system libraries the venv links against, but
# neither Python nor the ~6 GB venv: both are mounted read-only at their own paths, as the docker tests mount them.
# A real cluster's image carries its own Python (containers/nano2/Dockerfile) and needs no such mounts.
extends = "slurm-test"

[container]
image = "{images}/nano2.sqsh"
mounts = {mounts}

[env]
# The offline image has no C++ compiler (NGC images do): megatron's torch.compile'd helpers run eagerly.
TORCH_COMPILE_DISABLE = "1"

[slurm]
container_runtime = "pyxis"
"""


@dataclass(frozen=True)
class PyxisImage:
    profile: Path  # the test profile (a .toml path: --profile takes it as is)
    images: Path  # where build puts the squashfs (the directory of the profile's image)
    dockerfile: Path
    base_image: str
    document: dict  # the first build's JSON
    seconds: float
    env: dict[str, str]  # DOCKER_HOST of the test engine, enroot on PATH

    @property
    def squashfs(self) -> Path:
        return Path(self.document["squashfs"])

    def build(self, **env: str) -> subprocess.CompletedProcess:
        return build_squashfs(self.profile, self.dockerfile, self.base_image, {**self.env, **env})


def build_squashfs(profile: Path, dockerfile: Path, base_image: str, env: dict[str, str]):
    command = [str(CONSOLE_SCRIPT), "build", "nano2", "--profile", str(profile), "--base-image", base_image]
    command += ["--dockerfile", str(dockerfile)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)


def write_profile(directory: Path, images: Path, engine, dockerfile: Path) -> Path:
    mounts = [f"{engine.python_prefix}:{engine.python_prefix}:ro", f"{engine.venv}:{engine.venv}:ro"]
    text = PROFILE.format(images=images, mounts=json.dumps(mounts), base=engine.base_image, dockerfile=dockerfile)
    path = directory / "pyxis-test.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def pyxis_nano2_image(tmp_path_factory, docker_engine, pyxis_install, code_snapshot) -> PyxisImage:
    directory = tmp_path_factory.mktemp("pyxis-nano2")
    images = directory / "images"
    images.mkdir()
    dockerfile = directory / "Dockerfile"
    dockerfile.write_text(TEST_DOCKERFILE.format(venv=docker_engine.venv))
    profile = write_profile(directory, images, docker_engine, dockerfile)
    # build from the session's code snapshot (plans of the tests that run in the image are made from it too)
    env = {**docker_engine.env, "PATH": pyxis_install.path(), "PYTHONPATH": str(code_snapshot / "src"),
           "NEMOTRON_PROFILES": str(REPO_PROFILES)}  # fmt: skip  (the profiles the test profile extends)
    started = time.monotonic()
    done = build_squashfs(profile, dockerfile, docker_engine.base_image, env)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"\nnano2 squashfs built by `nemotron-launch build` in {seconds:.1f}s", file=sys.stderr)
    document = json.loads(done.stdout)
    return PyxisImage(profile, images, dockerfile, docker_engine.base_image, document, seconds, env)
