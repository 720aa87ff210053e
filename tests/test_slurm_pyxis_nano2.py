"""nano2 in the recipe's squashfs through real pyxis: stage0's three jobs, cancel, two nodes, preemption + requeue.

Every run plans from the code the image holds (the session's code snapshot) and submits through the CLI, as a user
would; the image comes from ``nemotron-launch build`` (``pyxis_image.py``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from pyxis_image import CODE_IN_IMAGE, PROFILE_NAME
from test_slurm_nano2 import _job_state, _read, _wait  # the same polling as the runs without containers

from nemotron.launcher.executors.sbatch import render_sbatch

pytestmark = [pytest.mark.slurm, pytest.mark.pyxis, pytest.mark.slow]
SECRET_NAME = "NEMOTRON_TEST_TOKEN"
SHORT = ["training.train_iters=10", "training.warmup_iters=2"]  # orchestration, not learning
STAGE0 = ("data_curation", "training", "evaluation")
PREEMPTED_ITERATIONS = 200  # the preempted run's length: see its test
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")


def metadata(path: str | Path) -> dict:
    return json.loads((Path(path) / "metadata.json").read_text())


def write_profile(image, name: str, text: str) -> str:
    (image.profiles / f"{name}.toml").write_text(f'extends = "{PROFILE_NAME}"\n{text}')
    return name


class RankWatcher:
    """Samples the ranks of nano2 steps from /proc while a run goes: the root they see, the environment they got.
    Only this cluster's jobs count (their environment names its slurm.conf): others may test on this machine too."""

    def __init__(self, secret: str, cluster, runs: Path):
        self.secret, self.seen, self._stop = secret.encode(), {}, threading.Event()
        self.ours = f"SLURM_CONF={cluster.conf}\0".encode()
        self.runs, self.secret_modes = runs, set()  # the run's secrets file, as the jobs found it
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> RankWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            for secrets in self.runs.glob("*/secrets.env"):
                try:
                    self.secret_modes.add(secrets.stat().st_mode & 0o777)
                except OSError:
                    continue
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    argv = (proc / "cmdline").read_bytes().split(b"\0")
                    if len(argv) < 3 or argv[1] != b"-m" or not argv[2].startswith(b"nemotron.recipes.nano2."):
                        continue  # not a rank (srun's command line names the module too, further on)
                    environ = (proc / "environ").read_bytes()
                    if self.ours not in environ:
                        continue
                    in_image = (proc / "root" / CODE_IN_IMAGE.lstrip("/")).is_dir()
                    has_secret = b"%s=%s\0" % (SECRET_NAME.encode(), self.secret) in environ
                except OSError:
                    continue
                self.seen.setdefault(argv[2].decode().rsplit(".", 1)[-1], set()).add((in_image, has_secret))


@pytest.fixture(scope="module")
def stage0_run(tmp_path_factory, pyxis_cluster, pyxis_nano2_image):
    """nano2.stage0 at tiny scale through pyxis on the single-node cluster, with a secret (shared by this module)."""
    image = pyxis_nano2_image
    env = image.launcher_env(tmp_path_factory.mktemp("pyxis-stage0"), pyxis_cluster)
    profile = write_profile(image, "pyxis-secret", f'secrets = ["{SECRET_NAME}"]\n')
    secret = "tok-" + os.urandom(6).hex()
    started = time.monotonic()
    with RankWatcher(secret, pyxis_cluster, env.root / "runs") as watcher:
        launched = env.launch("nano2.stage0", "--profile", profile, "--scale", "tiny", *SHORT, timeout=1200,
                              **{SECRET_NAME: secret})  # fmt: skip
    print(f"\nnano2.stage0 tiny through pyxis: {time.monotonic() - started:.0f}s")
    return env, launched, watcher, secret


def test_stage0_runs_every_step_inside_the_image(stage0_run, pyxis_nano2_image):
    env, launched, watcher, secret = stage0_run
    assert launched.returncode == 0, launched.stderr[-3000:]
    document = launched.document
    steps = document["steps"]
    run_dir = Path(document["run_dir"])
    assert [s["state"] for s in steps.values()] == ["completed"] * 3
    for name in STAGE0:
        job = f"stage0_pretrain.{name}"
        log = (run_dir / "logs" / f"{job}.{steps[job]['job_id']}.log").read_text()
        assert f"{name}: nemotron " in log and f" from {CODE_IN_IMAGE}\n" in log, log[-2000:]  # the image's code
        script = (run_dir / "sbatch" / f"{job}.sbatch").read_text()
        assert f"--container-image={pyxis_nano2_image.squashfs} " in script  # the content-named file, not the link
        assert str(env.root / "nano2") in steps[job]["artifact"] and metadata(steps[job]["artifact"])  # on the host
        assert secret not in script + log
        assert watcher.seen.get(name) == {(True, True)}, watcher.seen  # its rank saw the image as / and the secret
    for job, upstream in (("training", "data_curation"), ("evaluation", "training")):
        script = (run_dir / "sbatch" / f"stage0_pretrain.{job}.sbatch").read_text()
        assert f"--dependency=afterok:{steps[f'stage0_pretrain.{upstream}']['job_id']}\n" in script
    checkpoint = metadata(steps["stage0_pretrain.training"]["artifact"])
    assert checkpoint["lineage"][0]["path"] == steps["stage0_pretrain.data_curation"]["artifact"]
    assert checkpoint["num_steps"] == 10
    assert watcher.secret_modes == {0o600}
    assert not (run_dir / "secrets.env").exists()  # gone once no job of the run can start


def test_status_and_logs_of_a_container_run(stage0_run):
    env, launched, _watcher, _secret = stage0_run
    run_id = launched.document["run_id"]
    status = env.launch("status", run_id)
    assert status.returncode == 0, status.stderr
    assert [(s["state"], s["job_id"]) for s in status.document["steps"].values()] == [
        ("completed", s["job_id"]) for s in launched.document["steps"].values()
    ]
    logs = env.launch("logs", run_id, "stage0_pretrain.training")
    assert logs.returncode == 0, logs.stderr
    assert "training: nemotron " in logs.stdout + logs.stderr and CODE_IN_IMAGE in logs.stdout + logs.stderr


def test_cancel_stops_a_running_container_job_and_its_image_mount(stage0_run, pyxis_cluster, pyxis_nano2_image):
    env, launched, _watcher, _secret = stage0_run
    dataset = launched.document["steps"]["stage0_pretrain.data_curation"]["artifact"]
    args = ["nano2.stage0.training", f"training.dataset_path={dataset}", "training.train_iters=100000", "--force"]
    running = env.launch(*args, "--profile", PROFILE_NAME, "--artifact-root", str(env.root / "cancel"), "--detach")
    assert running.returncode == 0, running.stderr
    run_id = running.document["run_id"]
    job_id = running.document["steps"]["stage0_pretrain.training"]["job_id"]
    log = Path(running.document["run_dir"]) / "logs" / f"stage0_pretrain.training.{job_id}.log"
    try:
        _wait(lambda: "nemotron.training.loop step " in _read(log), 300, "the step training in the image")
    finally:  # a job of 100000 iterations left running would take the machine from every later test
        cancelled = env.launch("cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.document["steps"]["stage0_pretrain.training"]["state"] == "cancelled"
    assert job_id not in pyxis_cluster.queue_active()
    _wait(lambda: not _squashfuse_of(pyxis_nano2_image.squashfs), 60, "the image unmounted")


def test_a_profile_env_wins_over_the_image_env_and_the_root_is_writable(pyxis_cluster, pyxis_nano2_image, tmp_path):
    """The rendered flags, run for real: pyxis lets the image's ENV win unless --container-env names the variable,
    and without the home mounted $HOME lies in the read-only image unless --container-writable."""
    script = render_sbatch(
        job_name="env-probe", log_file=str(tmp_path / "probe.log"), container_runtime="pyxis",
        container_image=str(pyxis_nano2_image.squashfs), env={"PYTHONPATH": "/from/the/profile"},
        command=["sh", "-c", 'echo "PYTHONPATH=$PYTHONPATH"; mkdir -p "$HOME/.cache/probe" && echo writable'],
    )  # fmt: skip
    (tmp_path / "probe.sbatch").write_text(script)
    job_id = pyxis_cluster.run("sbatch", "--parsable", str(tmp_path / "probe.sbatch")).stdout.strip()
    _wait(lambda: job_id not in pyxis_cluster.queue_active(), 120, "probe job")
    log = (tmp_path / "probe.log").read_text()
    assert "PYTHONPATH=/from/the/profile\n" in log and "writable\n" in log, log  # the image says /opt/nemotron/src


def test_two_ranks_on_two_nodes_in_containers_match_the_run_without(stage0_run, pyxis_cluster_2nodes,
                                                                    pyxis_nano2_image, tmp_path):  # fmt: skip
    """The same 2-rank training in the image (pyxis) and on the hosts (runtime none) gives the same checkpoint."""
    _env, launched, _watcher, _secret = stage0_run
    image = pyxis_nano2_image
    env = image.launcher_env(tmp_path, pyxis_cluster_2nodes)
    two_nodes = "[steps.training]\nnodes = 2\n"
    contained = write_profile(image, "pyxis-2nodes", two_nodes)
    bare = write_profile(image, "bare-2nodes", f'[slurm]\ncontainer_runtime = "none"\n{two_nodes}')
    dataset = launched.document["steps"]["stage0_pretrain.data_curation"]["artifact"]
    args = [
        "nano2.stage0.training",
        f"training.dataset_path={dataset}",
        "training.train_iters=5",
        "training.warmup_iters=1",
        "training.micro_batch_size=8",
    ]  # fmt: skip   (2 data-parallel ranks)
    runs = {}
    for profile in (contained, bare):  # detached: the two jobs share the two nodes (one core each)
        done = env.launch(*args, "--profile", profile, "--artifact-root", str(tmp_path / profile), "--detach")
        assert done.returncode == 0, done.stderr
        runs[profile] = done.document
    for profile, document in runs.items():
        _wait(lambda d=document: _finished(env, d["run_id"]), 900, f"{profile} training")
        step = env.launch("status", document["run_id"]).document["steps"]["stage0_pretrain.training"]
        assert step["state"] == "completed", _log_tail(document)
        assert metadata(step["artifact"])["world_size"] == 2
        script = (Path(document["run_dir"]) / "sbatch" / "stage0_pretrain.training.sbatch").read_text()
        assert "#SBATCH --nodes=2" in script and ("--container-image=" in script) == (profile == contained)
        nodes = pyxis_cluster_2nodes.run("scontrol", "show", "job", step["job_id"]).stdout
        assert "NodeList=n[1-2]" in nodes
    assert f" from {CODE_IN_IMAGE}\n" in _log_text(runs[contained]) and CODE_IN_IMAGE not in _log_text(runs[bare])
    ours, theirs = (_checkpoint_dir(runs[p]) for p in (contained, bare))
    assert (ours / "state.json").read_bytes() == (theirs / "state.json").read_bytes()
    import torch

    from nemotron.training.checkpointing import checkpoint_tensors

    mine, other = checkpoint_tensors(ours), checkpoint_tensors(theirs)
    assert mine.keys() == other.keys() and all(torch.equal(mine[k], other[k]) for k in mine)  # bitwise

    for rank in (0, 1):  # the torch generator is the training's; Python's and NumPy's global ones are never seeded
        a, b = (torch.load(d / f"rng_rank{rank:05d}.pt", weights_only=False) for d in (ours, theirs))
        assert torch.equal(a["torch"], b["torch"])


def test_preempted_container_job_checkpoints_is_requeued_and_resumes(stage0_run, pyxis_cluster, pyxis_nano2_image):
    env, launched, _watcher, _secret = stage0_run
    dataset = launched.document["steps"]["stage0_pretrain.data_curation"]["artifact"]
    # 200 iterations: on an idle machine 30 ran out (~1 s) before USR1 went through srun --overlap to the rank, and a
    # signal after the loop meets the default handler (the step gives its handlers back when training ends)
    args = ["nano2.stage0.training", f"training.dataset_path={dataset}", f"training.train_iters={PREEMPTED_ITERATIONS}",
            "training.warmup_iters=2", "training.save_interval=10", "--force"]  # fmt: skip
    preempted = env.launch(*args, "--profile", PROFILE_NAME, "--artifact-root", str(env.root / "preempted"), "--detach")
    assert preempted.returncode == 0, preempted.stderr
    job_id = preempted.document["steps"]["stage0_pretrain.training"]["job_id"]
    log = Path(preempted.document["run_dir"]) / "logs" / f"stage0_pretrain.training.{job_id}.log"
    _wait(lambda: "step 10 " in _read(log), 600, "training step 10")
    # what Slurm does at --signal=B:USR1@N before the time limit, now
    pyxis_cluster.run("scancel", "--batch", "--signal=USR1", job_id)
    # requeued: it starts again once the requeue delay (slurm_cluster.REQUEUE_DELAY_S) has passed
    _wait(lambda: "requeued" in _read(log), 300, "requeue")
    _wait(lambda: _job_state(pyxis_cluster, job_id) in ENDED, 900, "resumed job end")
    status = env.launch("status", preempted.document["run_id"])
    step = status.document["steps"]["stage0_pretrain.training"]
    text = _read(log)
    assert step["state"] == "completed", text[-3000:] + _scheduler_says(pyxis_cluster, job_id)
    assert "forwarding SIGUSR1 to the ranks of the step" in text
    assert "attempt 1 ended by preempted (exit code 75): requeued" in text
    assert "Bus error" not in text and "resumed from" in text  # the image's mount outlived the signal
    assert metadata(step["artifact"])["num_steps"] == PREEMPTED_ITERATIONS


# ------------------------------------------------------------------------------------------------ helpers
def _squashfuse_of(squashfs: Path) -> list[int]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"squashfuse") and str(squashfs).encode() in argv:
            found.append(int(proc.name))
    return found


def _scheduler_says(cluster, job_id: str) -> str:
    job = cluster.run("scontrol", "show", "job", job_id, check=False).stdout
    lines = []
    for daemon_log in sorted((cluster.base / "log").glob("slurm*.log")):
        lines += [line for line in daemon_log.read_text(errors="replace").splitlines() if job_id in line]
    return "\n" + job + "\n".join(lines[-40:])


def _finished(env, run_id: str) -> bool:
    status = env.launch("status", run_id)
    return status.returncode == 0 and status.document["state"] in ("completed", "failed", "cancelled")


def _checkpoint_dir(document: dict) -> Path:
    artifact = Path(document["steps"]["stage0_pretrain.training"]["artifact"])
    return Path(metadata(artifact)["checkpoint_path"])


def _log_text(document: dict) -> str:
    return "".join(p.read_text() for p in (Path(document["run_dir"]) / "logs").glob("*.log"))


def _log_tail(document: dict) -> str:
    return _log_text(document)[-3000:]
