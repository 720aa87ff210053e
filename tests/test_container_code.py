"""A container job runs the code its plan fingerprinted, in the image pinned when the run was submitted.

Real components: the test Slurm cluster running its steps with the docker runtime on the test dockerd, the Docker
executor, an image built offline from a snapshot of this repository (``snapshot_repo``) which the launcher also plans
from, so that one edit of the snapshot makes the image stale without touching the checkout.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from docker_engine import build_test_image, snapshot_repo

from nemotron.artifact import Artifact
from nemotron.launcher.code_identity import (
    CODE_LABEL,
    StaleImageError,
    check_image_code,
    code_digest,
    package_digest,
    pin_image,
)
from nemotron.launcher.containers import docker_build_command, recipe_context, record_squashfs
from nemotron.launcher.executors.slurm import SlurmExecutor
from nemotron.launcher.plan import build_plan
from nemotron.launcher.profiles import load_profile
from nemotron.launcher.remote import LocalShell

TESTS = Path(__file__).resolve().parent
REPOSITORY = "nemotron-test/pinned"
# a step of the nano2 recipe, in the snapshot: part of the nemotron package every plan fingerprints
EDITED_STEP = Path("src/nemotron/recipes/nano2/stage0_pretrain/training.py")


# ----------------------------------------------------------------------------------------- without engines
def test_build_records_the_digest_the_plan_fingerprints(tmp_path):
    context = recipe_context("nano2", None)
    assert context.code() == {"nemotron": package_digest("nemotron")}  # the image's copy, digested as the plan does
    labels = [w for w in docker_build_command(context, ["t"]) if w.startswith(f"{CODE_LABEL}=")]
    assert labels == [f"{CODE_LABEL}={json.dumps(context.code(), sort_keys=True)}"]
    record_squashfs(tmp_path, "sha256:" + "ab" * 32, tmp_path / "nano2-abababababab.sqsh", ["t"], "nano2", {"x": "1"})
    assert json.loads((tmp_path / "index.json").read_text())["images"]["sha256:" + "ab" * 32]["code"] == {"x": "1"}


def test_artifacts_record_the_code_and_image_they_were_made_with(tmp_path, monkeypatch):
    monkeypatch.setenv("NEMOTRON_CODE_DIGEST", "c0de")
    monkeypatch.setenv("NEMOTRON_IMAGE_ID", "sha256:1234")
    Artifact(path=tmp_path / "new").save()
    recorded = json.loads((tmp_path / "new" / "metadata.json").read_text())
    assert (recorded["code_digest"], recorded["image_id"]) == ("c0de", "sha256:1234")
    old = {k: v for k, v in recorded.items() if k not in ("code_digest", "image_id")}  # written before they existed
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metadata.json").write_text(json.dumps({**old, "path": str(tmp_path / "old")}))
    loaded = Artifact.load(tmp_path / "old")
    assert (loaded.code_digest, loaded.image_id) == (None, None)  # not the reading process's


def write_pyxis_profile(directory: Path, image: Path) -> Path:
    path = directory / "pyxistest.toml"
    path.write_text(f'extends = "slurm-test"\n[container]\nimage = "{image}"\n[slurm]\ncontainer_runtime = "pyxis"\n')
    return path


def test_pyxis_scripts_name_the_squashfs_the_symlink_points_at(launcher_env, monkeypatch, tmp_path):
    for key, value in launcher_env.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(TESTS))
    images = tmp_path / "containers"
    images.mkdir()
    link = images / "toy.sqsh"
    profile = load_profile(str(write_pyxis_profile(tmp_path, link)))
    plan = build_plan("toy.stage0", profile, artifact_root=tmp_path / "root")
    assert all(job.env["NEMOTRON_CODE_DIGEST"] == code_digest(plan.code) for job in plan.jobs)
    # Before any build the dry-run still renders, naming the profile's path; submit refuses, naming build.
    assert f"--container-image={link} " in SlurmExecutor().render(plan, profile)["stage0_toy.training"]
    with pytest.raises(StaleImageError, match=f"{link} does not exist: build it with `nemotron-launch build toy"):
        pin_image("pyxis", str(link), LocalShell(), "nemotron-launch build toy --profile pyxistest")
    # Two builds: the symlink points at the second; the index says which code each holds.
    for id12, code in (("1" * 12, {"nemotron": "0" * 16}), ("2" * 12, plan.code)):
        (images / f"toy-{id12}.sqsh").write_bytes(b"hsqs")
        record_squashfs(images, f"sha256:{id12 * 5}", images / f"toy-{id12}.sqsh", [], "toy", dict(code))
    link.symlink_to(f"toy-{'2' * 12}.sqsh")
    script = SlurmExecutor().render(plan, profile)["stage0_toy.training"]
    assert f"--container-image={images}/toy-{'2' * 12}.sqsh " in script and f"={link} " not in script
    assert f"export NEMOTRON_IMAGE_ID=sha256:{'2' * 60}\n" in script
    pinned = pin_image("pyxis", str(link), LocalShell(), "hint")
    assert pinned.reference == str(images / f"toy-{'2' * 12}.sqsh")
    assert check_image_code(plan.code, pinned, "hint") is None  # the same code: accepted, nothing to note
    # A build moves the symlink to a squashfs of other code: the next submit is refused, naming the build to run.
    link.unlink()
    link.symlink_to(f"toy-{'1' * 12}.sqsh")
    stale = pin_image("pyxis", str(link), LocalShell(), "hint")
    with pytest.raises(StaleImageError, match=r"holds other nemotron code .*: rebuild it with `nemotron-launch build"):
        check_image_code(plan.code, stale, "nemotron-launch build toy --profile pyxistest")


# ----------------------------------------------------------------------------------- Slurm + docker runtime
@pytest.fixture(scope="module")
def pinned_image(docker_engine, tmp_path_factory):
    """``(snapshot, BuiltImage)``: this module's own snapshot (its tests edit it) and the image built from it."""
    snapshot = snapshot_repo(tmp_path_factory.mktemp("pinned-code"))
    image = build_test_image(docker_engine, tmp_path_factory.mktemp("pinned-image"), REPOSITORY, root=snapshot)
    return snapshot, image


@pytest.fixture
def container_launcher(launcher_env, slurm_cluster, docker_engine, pinned_image):
    snapshot, image = pinned_image
    docker_engine.docker("tag", image.tag, f"{REPOSITORY}:latest")  # whatever an earlier test did to the tag
    env = launcher_env.env
    env.update(SLURM_CONF=str(slurm_cluster.conf), DOCKER_HOST=docker_engine.host)
    env["PYTHONPATH"] = os.pathsep.join([str(snapshot / "src"), env["PYTHONPATH"]])  # plan from the image's code
    mounts = json.dumps([*docker_engine.python_mounts, f"{TESTS}:{TESTS}:ro"])  # Python, the venv, the toy recipe
    common = f'[container]\nimage = "{REPOSITORY}:latest"\nmounts = {mounts}\n'
    common += f'[env]\nPYTHONPATH = "/opt/nemotron/src:{TESTS}"\n'  # the image's code first, then the toy recipe
    user = json.dumps(["--user", f"{os.getuid()}:{os.getgid()}"])  # the artifact root belongs to whoever launched
    (launcher_env.profiles / "slurmdocker.toml").write_text(
        f'extends = "slurm-test"\n{common}[slurm]\ncontainer_runtime = "docker"\n[docker]\nextra_args = {user}\n'
    )
    (launcher_env.profiles / "dockerpinned.toml").write_text(f'extends = "docker"\n{common}')
    return launcher_env, docker_engine, image


def wait_for(predicate, timeout: float = 90, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached in {timeout}s")


@pytest.mark.slurm
@pytest.mark.docker
def test_queued_jobs_run_the_image_pinned_at_submit(container_launcher, slurm_cluster):
    launcher_env, engine, image = container_launcher
    done = launcher_env.launch("toy.stage0", "--profile", "slurmdocker", "--detach")
    assert done.returncode == 0, done.stderr
    run_id, steps = done.document["run_id"], done.document["steps"]
    evaluation_job = steps["stage0_toy.evaluation"]["job_id"]
    assert evaluation_job in slurm_cluster.queue_active()  # still waiting on its upstream jobs...
    engine.docker("tag", engine.base_image, f"{REPOSITORY}:latest")  # ...when a build moves the tag (no code there)
    finished = wait_for(
        lambda: (s := launcher_env.launch("status", run_id).document)["state"] in ("completed", "failed") and s,
        what="the run's end",
    )
    run_dir = Path(done.document["run_dir"])
    assert finished["state"] == "completed", [p.read_text()[-800:] for p in (run_dir / "logs").glob("*.log")]
    plan_code = code_digest(json.loads((run_dir / "run.json").read_text())["plan"]["code"])
    for name, step in finished["steps"].items():
        script = (run_dir / "sbatch" / f"{name}.sbatch").read_text()
        assert f" {image.image_id} python -m " in script and f"{REPOSITORY}:latest" not in script  # by content id
        metadata = json.loads((Path(step["artifact"]) / "metadata.json").read_text())
        assert (metadata["image_id"], metadata["code_digest"]) == (image.image_id, plan_code), name


@pytest.mark.slurm
@pytest.mark.docker
def test_an_image_built_from_other_code_is_refused_naming_build(container_launcher, slurm_cluster, pinned_image):
    launcher_env, _engine, _image = container_launcher
    step = pinned_image[0] / EDITED_STEP
    original = step.read_text()
    step.write_text(original + "\n# an edit made after the image was built\n")
    try:
        for profile in ("slurmdocker", "dockerpinned"):  # Slurm (docker runtime), then the Docker executor
            done = launcher_env.launch("toy.stage0", "--profile", profile)
            assert done.returncode == 2 and done.stdout == "", done.stderr
            (line,) = done.stderr.strip().splitlines()
            assert line.startswith(f"error: image {REPOSITORY}:latest") and "holds other nemotron code" in line
            assert f"rebuild it with `nemotron-launch build toy --profile {profile}`" in line
            assert not (launcher_env.root / "runs").exists()  # refused before the run was recorded
        assert slurm_cluster.queue_active() == []  # nothing submitted
    finally:
        step.write_text(original)
