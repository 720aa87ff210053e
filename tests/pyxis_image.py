"""The recipe's squashfs for the pyxis test clusters, made by the real ``nemotron-launch build`` and its profile.

``pyxis_nano2_image`` (session-scoped) writes the pyxis test profile (``pyxis-test``), then runs
``nemotron-launch build nano2 --profile pyxis-test --base-image <offline base> --dockerfile <the docker tests'
Dockerfile>`` against the test dockerd: the image is built from the repository's context (``containers/
.dockerignore``) and converted by ``enroot import dockerd://…`` into ``<images>/nano2-<image id>.sqsh``; the profile's
``nano2.sqsh`` becomes a symlink to it. The context is the session's ``code_snapshot`` (``nemotron-launch`` runs with
its ``src`` first on ``PYTHONPATH``, so the build's repository is the snapshot): the docker tests build the same
context and Dockerfile, so docker's layer cache serves most of it, and edits to the checkout meanwhile change nothing.
Launches into the image plan from the same snapshot (``PyxisImage.launcher_env``): submit checks that the image holds
the code the plan fingerprints.
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
from launcher_env import LauncherEnv

from nemotron.launcher.profiles import REPO_PROFILES

CONSOLE_SCRIPT = Path(sys.executable).parent / "nemotron-launch"
PROFILE_NAME = "pyxis-test"
CODE_IN_IMAGE = "/opt/nemotron/src/nemotron"  # where TEST_DOCKERFILE puts the code: only the image has it

PROFILE = """\
# The pyxis test clusters (tests/pyxis_cluster.py): every step runs in the recipe's squashfs through
# `srun --container-image`, made by
#   nemotron-launch build nano2 --profile pyxis-test --base-image {base} \\
#     --dockerfile {dockerfile}
# from the offline test image (tests/docker_engine.py); `image` is the symlink build moves to the squashfs.
# That image holds the repository's code at /opt/nemotron/src and the system libraries the venv links against, but
# neither Python nor the ~6 GB venv: both are mounted read-only at their own paths, as the docker tests mount them.
# A real cluster's image carries its own Python (containers/Dockerfile) and needs no such mounts.
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
    profiles: Path  # holds pyxis-test.toml; tests write the profiles that extend it here
    images: Path  # where build puts the squashfs (the directory of the profile's image)
    dockerfile: Path
    base_image: str
    snapshot: Path  # the code the image holds
    document: dict  # the first build's JSON
    seconds: float
    env: dict[str, str]  # DOCKER_HOST of the test engine, enroot on PATH, the snapshot first on PYTHONPATH

    @property
    def squashfs(self) -> Path:
        return Path(self.document["squashfs"])

    def build(self) -> subprocess.CompletedProcess:
        return build_squashfs(self.dockerfile, self.base_image, self.env)

    def launcher_env(self, base: Path, cluster) -> LauncherEnv:
        """The CLI planning from the image's code, submitting to ``cluster``, profiles from this image's dir."""
        root, state = base / "artifacts", base / "state"
        env = {
            **self.env, "NEMOTRON_ARTIFACT_ROOT": str(root), "NEMOTRON_STATE_DIR": str(state),
            "XDG_CONFIG_HOME": str(base / "config"), "COLUMNS": "160", "SLURM_CONF": str(cluster.conf),
        }  # fmt: skip
        env.pop("NEMOTRON_RECIPES", None)
        return LauncherEnv(root, state, self.profiles, env)


def build_squashfs(dockerfile: Path, base_image: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [str(CONSOLE_SCRIPT), "build", "nano2", "--profile", PROFILE_NAME, "--base-image", base_image]
    command += ["--dockerfile", str(dockerfile)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)


def write_profile(directory: Path, images: Path, engine, dockerfile: Path) -> Path:
    mounts = [f"{engine.python_prefix}:{engine.python_prefix}:ro", f"{engine.venv}:{engine.venv}:ro"]
    text = PROFILE.format(images=images, mounts=json.dumps(mounts), base=engine.base_image, dockerfile=dockerfile)
    path = directory / f"{PROFILE_NAME}.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def pyxis_nano2_image(tmp_path_factory, docker_engine, pyxis_install, code_snapshot) -> PyxisImage:
    directory = tmp_path_factory.mktemp("pyxis-nano2")
    images, profiles = directory / "images", directory / "profiles"
    images.mkdir()
    profiles.mkdir()
    dockerfile = directory / "Dockerfile"
    dockerfile.write_text(TEST_DOCKERFILE.format(venv=docker_engine.venv))
    write_profile(profiles, images, docker_engine, dockerfile)
    env = {
        **docker_engine.env,
        "PATH": pyxis_install.path(),  # `enroot import` runs here
        "PYTHONPATH": str(code_snapshot / "src"),  # the code the image gets, and the plans' code
        "NEMOTRON_PROFILES": f"{REPO_PROFILES}:{profiles}",  # the snapshot has no cluster_profiles/
    }
    started = time.monotonic()
    done = build_squashfs(dockerfile, docker_engine.base_image, env)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"\nnano2 squashfs built by `nemotron-launch build` in {seconds:.1f}s", file=sys.stderr)
    document = json.loads(done.stdout)
    return PyxisImage(profiles, images, dockerfile, docker_engine.base_image, code_snapshot, document, seconds, env)
