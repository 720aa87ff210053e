"""pyxis + enroot on the test clusters: the plugin loads and ``srun --container-image`` runs in the image."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from pyxis_cluster import TINY_OS_RELEASE

from nemotron.launcher.executors.sbatch import LIST_RANKS, input_mounts, render_sbatch


@pytest.mark.slurm
@pytest.mark.pyxis
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


@pytest.mark.slurm
@pytest.mark.pyxis
def test_two_nodes_each_start_the_image(pyxis_cluster_2nodes, tiny_squashfs):
    done = pyxis_cluster_2nodes.run(
        "srun", "-N2", "--ntasks-per-node=1", f"--container-image={tiny_squashfs}", "--no-container-mount-home",
        "sh", "-c", 'read -r first < /etc/os-release; echo "$(hostname) $first"',
    )  # fmt: skip
    assert sorted(done.stdout.splitlines()) == ['n1 NAME="nemotron tiny"', 'n2 NAME="nemotron tiny"'], done.stderr


@pytest.mark.slurm
@pytest.mark.pyxis
@pytest.mark.docker
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


# ------------------------------------------------------------------------------------- rendered pyxis flags
def _pyxis_script(**params) -> str:
    base = {"job_name": "j", "command": ["python", "-m", "x"], "log_file": "/l/j.%j.log", "nodes": 2}
    return render_sbatch(**{**base, "container_runtime": "pyxis", "container_image": "/images/x-0123.sqsh", **params})


def test_pyxis_keeps_the_job_env_over_the_image_and_gives_a_writable_root():
    script = _pyxis_script(env={"HF_HOME": "/cache/hf", "NEMOTRON_RUN_ID": "r1"}, signal="USR1@120")
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    assert "--container-env=HF_HOME,NEMOTRON_RUN_ID,MASTER_ADDR,MASTER_PORT,NEMOTRON_ATTEMPT " in srun
    assert "--container-writable " in srun and "--no-container-mount-home " in srun
    docker = render_sbatch(job_name="j", command=["true"], log_file="/l", container_runtime="docker",
                           container_image="img", env={"A": "1"})  # fmt: skip
    assert "--container-" not in docker  # pyxis flags only where pyxis runs the step


def test_pyxis_signals_reach_the_batch_shell_and_then_only_the_ranks():
    script = _pyxis_script(signal="USR1@120")
    lines = script.splitlines()
    assert "#SBATCH --signal=B:USR1@120" in lines  # never Slurm's own delivery to every process of the step
    forwarding = 'echo "forwarding SIGUSR1 to the ranks of the step" >&2; signal_ranks USR1'
    assert f"trap 'signalled_at=$(date +%s); {forwarding}' USR1" in lines
    helper = next(line for line in lines if "srun --overlap" in line)
    assert helper.startswith("  srun --overlap --nodes=2 --ntasks-per-node=1 bash -c ")
    none = render_sbatch(job_name="j", command=["true"], log_file="/l", signal="USR1@120")
    assert "#SBATCH --signal=USR1@120" in none.splitlines() and "signal_ranks" not in none


def test_the_rank_filter_picks_the_tasks_of_other_steps(tmp_path):
    """``scontrol listpids`` output as Slurm 22.05 prints it (a pyxis step 0, this helper as step 1)."""
    rows = [("batch", "0"), ("batch", "-"), ("0", "0"), ("0", "1"), ("0", "-"), ("1", "0"), ("1", "-")]
    listing = "PID JOBID STEPID LOCALID GLOBALID\n"
    listing += "".join(f"{5000 + i} 23 {step} {local} {local}\n" for i, (step, local) in enumerate(rows))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\ncat <<'EOF'\n{listing}EOF\n")
    (bin_dir / "kill").write_text('#!/bin/sh\necho "kill $*"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_ID": "23", "SLURM_STEP_ID": "1"}
    done = subprocess.run(["bash", "-c", LIST_RANKS, "USR1"], env=env, capture_output=True, text=True)
    assert done.stdout == "kill -USR1 5002 5003\n", done.stderr  # step 0's tasks: not its squashfuse, not step 1


def test_inputs_outside_the_mounts_are_mounted_read_only_at_their_path():
    mounts = ["/lustre:/lustre", "/data/root:/data/root", "/host/hf:/hf:ro"]
    inputs = ["/lustre/a/ds", "/data/root", "/scratch/user/ds", "/hf/models", "/scratch/user/ds"]
    assert input_mounts(inputs, mounts) == ["/scratch/user/ds:/scratch/user/ds:ro", "/hf/models:/hf/models:ro"]


# ------------------------------------------------------------------------------------------ the build path
def test_a_dockerfile_option_replaces_only_the_dockerfile(tmp_path):
    from nemotron.launcher.containers import recipe_context

    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    own, other = recipe_context("nano2", "base:1"), recipe_context("nano2", "base:1", tmp_path / "Dockerfile")
    assert own.files == other.files and own.build_args == other.build_args  # same context, same .dockerignore
    assert other.dockerfile == tmp_path / "Dockerfile" and own.digest() != other.digest()


@pytest.mark.docker
def test_an_image_enroot_cannot_import_is_refused_in_one_line(docker_engine, monkeypatch):
    from nemotron.launcher.containers import BuildError, check_importable

    monkeypatch.setenv("DOCKER_HOST", docker_engine.host)
    docker_engine.docker("import", "-", "nemotron-test/nocmd:1", input=_one_file_tar())  # as `docker import` makes
    with pytest.raises(BuildError, match=r"neither CMD nor ENTRYPOINT.*add CMD \[\"/bin/bash\"\]") as raised:
        check_importable("nemotron-test/nocmd:1")
    assert "\n" not in str(raised.value)
    check_importable(docker_engine.base_image)  # the test base has a CMD, as real bases do


def _one_file_tar() -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("marker")
        tar.addfile(info, io.BytesIO(b""))
    return buffer.getvalue()
