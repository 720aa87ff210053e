"""``nemotron-launch build``: content tags (no-op on an unchanged context), the nano2 Dockerfile, enroot squashfs."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from unittest import mock

import pytest

from nemotron.launcher.code_identity import pinned_container_image
from nemotron.launcher.containers import (
    REPO,
    BuildContext,
    build_image,
    convert_to_squashfs,
    enroot_import_command,
    enroot_source,
    import_sbatch_script,
    read_index,
    recipe_context,
)
from nemotron.launcher.profiles import Profile

SMALL_DOCKERFILE = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY app /app\nUSER 1000\n"


def small_context(root: Path, base_image: str) -> BuildContext:
    return BuildContext.collect(root, root / "Dockerfile", root / ".dockerignore", {"BASE_IMAGE": base_image})


@pytest.mark.docker
def test_unchanged_context_is_a_noop_and_one_changed_file_rebuilds(docker_engine, tmp_path, capfd):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print('v1')\n")
    (tmp_path / "notes.txt").write_text("not sent\n")
    (tmp_path / "Dockerfile").write_text(SMALL_DOCKERFILE)
    (tmp_path / ".dockerignore").write_text("notes.txt\n")
    with mock.patch.dict(os.environ, {"DOCKER_HOST": docker_engine.host}):
        first = build_image(small_context(tmp_path, docker_engine.base_image), "nemotron-test/small")
        second = build_image(small_context(tmp_path, docker_engine.base_image), "nemotron-test/small")
        (tmp_path / "notes.txt").write_text("ignored files do not count\n")
        third = build_image(small_context(tmp_path, docker_engine.base_image), "nemotron-test/small")
        (tmp_path / "app" / "main.py").write_text("print('v2')\n")
        fourth = build_image(small_context(tmp_path, docker_engine.base_image), "nemotron-test/small")
    err = capfd.readouterr().err
    assert first.built and not second.built and not third.built and fourth.built
    assert first.tag == second.tag == third.tag != fourth.tag
    assert re.search(
        r"context unchanged: nemotron-test/small:ctx-\w{12} is up to date, nothing to build \(checked in", err
    )
    assert first.image_id.startswith("sha256:") and fourth.image_id != first.image_id
    latest = docker_engine.docker("image", "inspect", "--format", "{{.Id}}", "nemotron-test/small:latest")
    assert latest.stdout.decode().strip() == fourth.image_id
    shown = docker_engine.docker("run", "--rm", fourth.tag, "cat", "/app/main.py").stdout.decode()
    assert shown == "print('v2')\n"


def test_recipe_context_sends_only_the_allowlist():
    context = recipe_context("nano2", None)
    assert "pyproject.toml" in context.files and "containers/pins.py" in context.files
    assert any(f.startswith("src/nemotron/") for f in context.files)
    allowed = ("pyproject.toml", "README.md", "src/", "containers/")
    assert all(f.startswith(allowed) for f in context.files), [f for f in context.files if not f.startswith(allowed)]
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in context.files)
    base = recipe_context("nano2", "nvcr.io/nvidia/pytorch:24.12-py3")
    assert base.digest() != context.digest()  # the base image is part of the content tag
    assert dict(context.build_args) == {"RECIPE": "nano2"}  # the shared Dockerfile, built for this recipe


def test_the_shared_dockerfile_content():
    text = (REPO / "containers" / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=nvcr\.io/nvidia/pytorch:\d\d\.\d\d-py3$", text, re.M)
    assert "FROM ${BASE_IMAGE}" in text and "WORKDIR /opt/nemotron" in text
    assert "--constraint /tmp/base-constraints.txt" in text and "pins.py check-gpu-extra" in text
    assert "--no-deps --editable /opt/nemotron" in text
    assert re.search(r"^USER \$\{NEMOTRON_UID\}$", text, re.M)
    assert not re.search(r"transformer[-_]engine", text.split("# The code")[1])  # never reinstalled on top
    instructions = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"(TOKEN|SECRET|PASSWORD|API_KEY)", instructions, re.I)  # no secret build args or env
    assert "import nemotron.launcher.plan, nemotron.recipes.${RECIPE}.recipe" in text  # built for one recipe
    ignore = (REPO / "containers" / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") :][:2] == ["*", "!pyproject.toml"]  # an allowlist


def test_enroot_import_commands_golden(tmp_path):
    out = Path("/lustre/containers/nano2-0123456789ab.sqsh")
    local = enroot_import_command(enroot_source("nemotron/nano2:ctx-0123456789ab", None), out)
    assert local == ["enroot", "import", "--output", str(out), "dockerd://nemotron/nano2:ctx-0123456789ab"]
    pushed = enroot_source("nemotron/nano2:ctx-0123456789ab", "registry.example.com/team/nemotron/nano2:ctx-01")
    assert pushed == "docker://registry.example.com#team/nemotron/nano2:ctx-01"
    script = import_sbatch_script(pushed, out, "cpu", "acct")
    assert script == (
        "#!/bin/bash\n#SBATCH --job-name=nemotron-enroot-import\n#SBATCH --nodes=1\n#SBATCH --time=01:00:00\n"
        "#SBATCH --partition=cpu\n#SBATCH --account=acct\nset -euo pipefail\n"
        "rm -f /lustre/containers/nano2-0123456789ab.sqsh.partial\n"
        "enroot import --output /lustre/containers/nano2-0123456789ab.sqsh.partial "
        "'docker://registry.example.com#team/nemotron/nano2:ctx-01'\n"
        "mv -f /lustre/containers/nano2-0123456789ab.sqsh.partial /lustre/containers/nano2-0123456789ab.sqsh"
        "  # only a complete squashfs gets the real name\n"
    )


def test_squashfs_is_cached_by_image_id_and_the_profile_points_at_it(tmp_path, capfd):
    from nemotron.launcher.containers import BuiltImage

    profile = Profile.model_validate(
        {"name": "eos", "executor": "slurm", "container": {"image": str(tmp_path / "nemotron-nano2.sqsh")}}
    )
    image = BuiltImage("nemotron/nano2:ctx-0123456789ab", "sha256:" + "ab" * 32, built=False, seconds=0.1)
    cached = tmp_path / f"nano2-{'ab' * 6}.sqsh"
    cached.write_bytes(b"hsqs")  # an earlier conversion of the same image id
    assert convert_to_squashfs(profile, "nano2", image, pushed=None) == cached
    assert "already at" in capfd.readouterr().err
    assert (tmp_path / "nemotron-nano2.sqsh").resolve() == cached.resolve()
    assert pinned_container_image(str(tmp_path / "nemotron-nano2.sqsh")) == str(cached)
    assert pinned_container_image("nemotron/nano2:latest") == "nemotron/nano2:latest"
    entry = read_index(tmp_path)["images"]["sha256:" + "ab" * 32]
    assert entry["squashfs"] == str(cached) and entry["tags"] == ["nemotron/nano2:ctx-0123456789ab"]


def test_build_without_docker_is_one_line(launcher_env):
    done = launcher_env.launch("build", "nano2", PATH="/nonexistent")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == (
        "error: docker is not installed (or not on PATH): install Docker Engine (Debian: apt-get install docker.io)"
    )


def test_pyxis_profile_without_enroot_or_push_is_one_line(launcher_env, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").symlink_to("/bin/false")  # docker present, enroot absent: fails before building
    done = launcher_env.launch("build", "nano2", "--profile", "eos", PATH=str(bin_dir))
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "enroot is not installed here" in lines[0] and "--push REGISTRY" in lines[0]


def test_build_document(docker_engine, launcher_env, monkeypatch):
    """The CLI's JSON for a recipe whose image is already in the engine: a no-op, said in words and in JSON."""
    for _attempt in range(3):  # on a shared checkout others may add a file in between: the tag moves, try again
        tag = f"nemotron/nano2:ctx-{recipe_context('nano2', docker_engine.base_image).digest()[:12]}"
        docker_engine.docker("tag", docker_engine.base_image, tag)  # as if built before from this exact context
        base = docker_engine.base_image
        done = launcher_env.launch("build", "nano2", "--base-image", base, DOCKER_HOST=docker_engine.host)
        if done.returncode == 0:
            break
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["image"] == tag and document["built"] is False and document["squashfs"] is None
    assert "nothing to build" in done.stderr
