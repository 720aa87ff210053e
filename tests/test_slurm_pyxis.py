"""pyxis + enroot on the test clusters: the plugin loads and ``srun --container-image`` runs in the image."""

from __future__ import annotations

import json
import time

import pytest
from pyxis_cluster import TINY_OS_RELEASE

pytestmark = [pytest.mark.slurm, pytest.mark.pyxis]


def test_srun_container_image_runs_in_the_image(pyxis_cluster, tiny_squashfs, tmp_path):
    started = time.monotonic()
    done = pyxis_cluster.run(
        "srun", f"--container-image={tiny_squashfs}", f"--container-mounts={tmp_path}:/data",
        "--no-container-mount-home", "sh", "-c", "cat /etc/os-release; echo from-container > /data/out",
    )  # fmt: skip
    assert done.stdout == TINY_OS_RELEASE, done.stderr  # the image's root, not this Debian host's
    assert (tmp_path / "out").read_text() == "from-container\n"  # mounts reach the host
    assert time.monotonic() - started < 30
    failed = pyxis_cluster.run("srun", f"--container-image={tiny_squashfs}", "sh", "-c", "exit 3", check=False)
    assert failed.returncode == 3  # the container's exit code is the step's


def test_two_nodes_each_start_the_image(pyxis_cluster_2nodes, tiny_squashfs):
    done = pyxis_cluster_2nodes.run(
        "srun", "-N2", "--ntasks-per-node=1", f"--container-image={tiny_squashfs}", "--no-container-mount-home",
        "sh", "-c", 'read -r first < /etc/os-release; echo "$(hostname) $first"',
    )  # fmt: skip
    assert sorted(done.stdout.splitlines()) == ['n1 NAME="nemotron tiny"', 'n2 NAME="nemotron tiny"'], done.stderr


def test_build_makes_a_content_named_squashfs_and_an_unchanged_build_is_a_noop(pyxis_nano2_image):
    image = pyxis_nano2_image
    document, squashfs = image.document, image.squashfs
    assert squashfs.is_file() and squashfs.parent == image.images
    assert squashfs.name == f"nano2-{document['image_id'].removeprefix('sha256:')[:12]}.sqsh"  # named by content
    assert (image.images / "nano2.sqsh").resolve() == squashfs  # the profile's path now points at it
    index = json.loads((image.images / "index.json").read_text())
    assert index["images"][document["image_id"]]["squashfs"] == str(squashfs)
    before = squashfs.stat()
    started = time.monotonic()
    again = image.build()
    seconds = time.monotonic() - started
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads(again.stdout)
    assert second["built"] is False and second["squashfs"] == str(squashfs), again.stderr
    assert "nothing to build" in again.stderr and "nothing to convert" in again.stderr
    after = squashfs.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    print(f"first build {image.seconds:.1f}s, unchanged rebuild {seconds:.1f}s")
