"""The docker test fixture itself: a private dockerd, an offline base image, the host Python mounted read-only."""

import pytest

pytestmark = pytest.mark.docker


def test_offline_base_runs_the_mounted_python(docker_engine):
    mounts = [a for m in docker_engine.python_mounts for a in ("-v", m)]
    python = f"{docker_engine.venv}/bin/python"
    result = docker_engine.docker(
        "run",
        "--rm",
        "--network=none",
        *mounts,
        docker_engine.base_image,
        python,
        "-c",
        "import json, sqlite3, ssl, pydantic; print(json.dumps({'ok': True}))",
    )
    assert result.stdout.decode().strip() == '{"ok": true}'


def test_exit_codes_survive_rm(docker_engine):
    result = docker_engine.docker("run", "--rm", docker_engine.base_image, "sh", "-c", "exit 7", check=False)
    assert result.returncode == 7


def test_base_image_has_a_non_root_user(docker_engine):
    result = docker_engine.docker("run", "--rm", "--user", "nemotron", docker_engine.base_image, "id", "-u")
    assert result.stdout.decode().strip() == "1000"
