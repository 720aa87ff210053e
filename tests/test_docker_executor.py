"""The Docker executor on a real dockerd: order, artifacts on the host, failure, cancel, secrets, golden text."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from nemotron.launcher.code_identity import code_digest
from nemotron.launcher.executors.docker import SECRETS_IN_CONTAINER, docker_run_command
from nemotron.launcher.plan import build_plan
from nemotron.launcher.profiles import load_profile

TESTS = Path(__file__).resolve().parent
SECRET_VALUE = "hf_docker-test-s3cret-7f3a9"  # unique, so any occurrence anywhere is a leak


def memlock_hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    return -1 if hard == resource.RLIM_INFINITY else hard


def write_profile(
    launcher_env, image: str, engine, name: str = "dockertest", secrets: bool = False, mounts=(), env=None, tables=""
) -> str:
    mounts = [*engine.python_mounts, f"{TESTS}:{TESTS}:ro", *mounts]
    lines = [
        'extends = "docker"',
        f"secrets = {json.dumps(['HF_TOKEN'] if secrets else [])}",
        "[container]",
        f"image = {json.dumps(image)}",
        f"mounts = {json.dumps(mounts)}",
        "[env]",
        f'PYTHONPATH = "/opt/nemotron/src:{TESTS}"',  # the image's code first, then the toy recipe
        # The offline test image has no C++ compiler (NGC images do): megatron's torch.compile'd helpers run eagerly.
        'TORCH_COMPILE_DISABLE = "1"',
        *(f"{key} = {json.dumps(value)}" for key, value in (env or {}).items()),
        tables,
        "[docker]",
        'shm_size = "256m"',
        "[docker.ulimits]",  # this machine may itself be a container: ask for no more than its own hard limit
        f'memlock = "{memlock_hard_limit()}"',
    ]
    (launcher_env.profiles / f"{name}.toml").write_text("\n".join(lines) + "\n")
    return name


# --------------------------------------------------------------------------------------------- golden text
GOLDEN_RUN = """\
docker run --name nemotron-toy-20261124-120000-abcd-stage0_toy-training --label nemotron.run=toy-20261124-120000-abcd \
--label nemotron.job=stage0_toy.training --init --user 1000:1000 --gpus all --ipc=host --shm-size=8g \
--ulimit memlock=-1 --ulimit stack=67108864 -v <root>:<root> -v /data/hf:/data/hf:ro -e PYTHONUNBUFFERED=1 \
-e NEMOTRON_ARTIFACT_ROOT=<root> -e NEMOTRON_CODE_DIGEST=<code> -e NEMOTRON_HANG_TIMEOUT=1800 \
-e NEMOTRON_RUN_ID=toy-20261124-120000-abcd -e NEMOTRON_IMAGE_ID=nemotron/toy:ctx-0123456789ab -e NEMOTRON_ATTEMPT \
-v /runs/r1/secrets.env:/run/secrets/nemotron.env:ro nemotron/toy:ctx-0123456789ab sh -c \
'set -a; . /run/secrets/nemotron.env; set +a; exec "$@"' nemotron-step python -m launcher_toy.stage0_toy.training \
--output-dir <output> --dataset-path <dataset>"""


def test_docker_run_command_golden(launcher_env, monkeypatch, tmp_path):
    for key, value in launcher_env.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(TESTS))
    profile_file = tmp_path / "gpu.toml"
    profile_file.write_text(
        'extends = "docker"\nsecrets = ["HF_TOKEN"]\n[env]\nPYTHONUNBUFFERED = "1"\n'
        '[container]\nmounts = ["/data/hf:/data/hf:ro"]\n[docker]\ngpus = "all"\n'
    )
    profile = load_profile(str(profile_file))
    plan = build_plan("toy.stage0", profile, artifact_root=tmp_path / "root", overrides=())
    job = plan.job("training")
    words = docker_run_command(
        job, plan, profile, "nemotron/toy:ctx-0123456789ab", "toy-20261124-120000-abcd", "/runs/r1", "1000:1000"
    )
    text = shlex.join(words)
    code = f"NEMOTRON_CODE_DIGEST={code_digest(plan.code)}"  # changes with every edit of the sources
    for value, placeholder in (
        (job.inputs["dataset"], "<dataset>"),
        (job.output, "<output>"),
        (code, "NEMOTRON_CODE_DIGEST=<code>"),
    ):
        text = text.replace(str(value), placeholder)
    assert text == GOLDEN_RUN.replace("<root>", str(tmp_path / "root"))
    assert "--env-file" not in words and not any(w.startswith("HF_TOKEN=") for w in words)


def test_dry_run_shows_docker_run_lines_and_no_secret(launcher_env):
    (launcher_env.profiles / "dryrun.toml").write_text('extends = "docker"\nsecrets = ["HF_TOKEN"]\n')
    done = launcher_env.launch("toy.stage0", "--profile", "dryrun", "--dry-run", HF_TOKEN=SECRET_VALUE)
    assert done.returncode == 0, done.stderr
    rendered = done.document["rendered"]
    assert list(rendered) == ["stage0_toy.data_curation", "stage0_toy.training", "stage0_toy.evaluation"]
    training = rendered["stage0_toy.training"]
    run_dir = f"{launcher_env.root}/runs/{{run_id}}"
    assert training.startswith(f"# after: stage0_toy.data_curation\n# {run_dir}/secrets.env (0600): HF_TOKEN from")
    assert "docker run --name 'nemotron-{run_id}-stage0_toy-training' --label 'nemotron.run={run_id}'" in training
    assert f"-v '{run_dir}/secrets.env:/run/secrets/nemotron.env:ro' nemotron/nano2:latest sh -c" in training
    assert SECRET_VALUE not in done.stdout + done.stderr
    assert launcher_env.files() == []  # a dry run writes nothing


# ------------------------------------------------------------------------------------------------ real runs


@pytest.mark.docker
def test_toy_stage0_runs_in_containers_and_keeps_secrets_out(docker_env):
    launcher_env, engine, image = docker_env
    profile = write_profile(launcher_env, image.tag, engine, secrets=True)
    dry = launcher_env.launch("toy.stage0", "--profile", profile, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    done = launcher_env.launch("toy.stage0", "--profile", profile, HF_TOKEN=SECRET_VALUE)
    assert done.returncode == 0, done.stderr
    summary = done.document
    assert summary["state"] == "completed" and summary["executor"] == "docker"
    run_dir = Path(summary["run_dir"])
    plan_code = code_digest(json.loads((run_dir / "run.json").read_text())["plan"]["code"])
    for step in summary["steps"].values():  # artifacts landed on the host, at the planned paths
        metadata = json.loads((Path(step["artifact"]) / "metadata.json").read_text())
        assert metadata["path"] == step["artifact"]
        # what produced it, as the executor told the step: the pinned image and the code the plan fingerprinted
        assert (metadata["image_id"], metadata["code_digest"]) == (image.image_id, plan_code)
    containers = engine.containers(f"label=nemotron.run={summary['run_id']}")
    assert len(containers) == 3
    assert not (run_dir / "secrets.env").exists()  # removed when the run ended
    # The secret appears nowhere: container configs, command lines in logs and the run record, image history.
    inspected = engine.docker("inspect", *containers).stdout.decode()
    history = engine.docker("history", "--no-trunc", image.tag).stdout.decode()
    logs = "".join(p.read_text() for p in (run_dir / "logs").iterdir())
    for where, text in (("inspect", inspected), ("history", history), ("logs", logs), ("record", done.stdout)):
        assert SECRET_VALUE not in text, where
    assert SECRET_VALUE not in (run_dir / "run.json").read_text()
    assert 'exec "$@"\' nemotron-step python -m launcher_toy.stage0_toy.training' in logs  # the step's own CLI
    # What ran is what --dry-run showed, with the run filled in and naming the image pinned by id, not its tag
    for name, text in dry.document["rendered"].items():
        bound = text.replace("{run_id}", summary["run_id"])
        bound = bound.replace(image.tag, image.image_id)
        executed = (run_dir / "logs" / f"{name}.log").read_text().splitlines()[0]  # the runner's "$ command" line
        assert executed == f"$ {shlex.join(shlex.split(bound, comments=True))}", name


@pytest.mark.docker
@pytest.mark.slow
def test_a_hung_step_in_a_container_is_ended_by_its_watchdog_and_retried(docker_env, curated_dataset):
    """The fault hooks (nemotron.heartbeat): attempt 1 stops making progress at iteration 6; the watchdog in the
    container ends it (exit 76), the runner starts a second container that resumes from the checkpoint and completes."""
    launcher_env, engine, image = docker_env
    data = Path(curated_dataset.path)
    profile = write_profile(
        launcher_env, image.tag, engine, name="hangs", mounts=[f"{data}:{data}"],
        env={"NEMOTRON_FAULT_HANG_AT": "6"}, tables="[fault_tolerance]\nhang_timeout = 5",
    )  # fmt: skip
    done = launcher_env.launch(
        "nano2.stage0.training", "--profile", profile, f"training.dataset_path={data}", "training.train_iters=10",
        "training.warmup_iters=2", "training.save_interval=5", timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    step = done.document["steps"]["stage0_pretrain.training"]
    first, second = step["attempts"]
    assert (first["failure"], first["exit_code"], first["decision"]) == ("hang", 76, "retry")
    assert second["failure"] == "completed" and step["state"] == "completed"
    log = (Path(done.document["run_dir"]) / "logs" / "stage0_pretrain.training.log").read_text()
    assert "watchdog: rank 0 made no progress for" in log and "resumed from" in log


@pytest.mark.docker
def test_secret_file_reaches_the_step_not_its_config(docker_env, tmp_path):
    """The same words the executor runs, with the step replaced by a probe that reports what it received."""
    launcher_env, engine, image = docker_env
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"HF_TOKEN={shlex.quote(SECRET_VALUE)}\n")
    secrets.chmod(0o600)
    probe = "import hashlib, os; print(hashlib.sha256(os.environ['HF_TOKEN'].encode()).hexdigest(), end='')"
    source = f'set -a; . {SECRETS_IN_CONTAINER}; set +a; exec "$@"'
    mounts = [a for m in engine.python_mounts for a in ("-v", m)]
    user = f"{os.getuid()}:{os.getgid()}"  # as the executor does: the 0600 file belongs to whoever launched
    words = ["run", "--name", "probe-secret", "--user", user, *mounts, "-v", f"{secrets}:{SECRETS_IN_CONTAINER}:ro"]
    result = engine.docker(*words, image.tag, "sh", "-c", source, "probe", "python", "-c", probe)
    assert result.stdout.decode() == hashlib.sha256(SECRET_VALUE.encode()).hexdigest()
    assert SECRET_VALUE not in json.dumps(json.loads(engine.docker("inspect", "probe-secret").stdout)[0]["Config"])
    engine.docker("rm", "probe-secret")


@pytest.mark.docker
def test_failing_step_stops_the_run_and_names_it(docker_env):
    launcher_env, engine, image = docker_env
    profile = write_profile(launcher_env, image.tag, engine)
    done = launcher_env.launch("toy.stage0", "--profile", profile, "training.fail=true")
    assert done.returncode == 1
    assert "step stage0_toy.training failed (exit code 3" in done.stderr
    assert "toy training failed on purpose" in done.stderr  # the log tail, on screen
    steps = done.document["steps"]
    assert steps["stage0_toy.data_curation"]["state"] == "completed"
    assert steps["stage0_toy.training"]["state"] == "failed"
    assert steps["stage0_toy.evaluation"]["state"] != "completed"
    started = engine.containers(f"label=nemotron.run={done.document['run_id']}")
    assert len(started) == 2  # evaluation never got a container
    logs = launcher_env.launch("logs", done.document["run_id"], "training")
    assert logs.returncode == 0 and "toy training failed on purpose" in logs.stderr


@pytest.mark.docker
def test_cancel_stops_the_running_container(docker_env):
    launcher_env, engine, image = docker_env
    profile = write_profile(launcher_env, image.tag, engine)
    done = launcher_env.launch("toy.stage0", "--profile", profile, "--detach", "training.sleep_s=120")
    assert done.returncode == 0, done.stderr
    run_id = done.document["run_id"]
    label = "label=nemotron.job=stage0_toy.training"
    deadline = time.monotonic() + 60
    while not engine.containers(label, "status=running") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert engine.containers(label, "status=running"), "training never started"
    status = launcher_env.launch("status", run_id)
    assert status.document["steps"]["stage0_toy.training"]["state"] == "running"
    assert status.document["steps"]["stage0_toy.training"]["job_id"].startswith(f"nemotron-{run_id}")
    # The runner dies (OOM-killed, SIGKILL...): its step's container stops with it, and status says so from the
    # container (the truth once the runner is gone); cancel still works and signals nothing that is gone.
    runner = json.loads((Path(done.document["run_dir"]) / "run.json").read_text())["executor_data"]["runner"]
    os.kill(int(runner.partition(":")[0]), signal.SIGKILL)
    deadline = time.monotonic() + 60
    while engine.containers(label, "status=running") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not engine.containers(label, "status=running"), "the step outlived its runner"
    status = launcher_env.launch("status", run_id)
    assert status.document["steps"]["stage0_toy.training"]["state"] == "cancelled"
    assert status.document["steps"]["stage0_toy.evaluation"]["state"] == "cancelled"
    cancelled = launcher_env.launch("cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert not engine.containers(f"label=nemotron.run={run_id}", "status=running")
    assert cancelled.document["steps"]["stage0_toy.training"]["state"] == "cancelled"
    assert cancelled.document["steps"]["stage0_toy.evaluation"]["state"] == "cancelled"


@pytest.mark.docker
def test_missing_image_is_one_line_and_starts_nothing(docker_env):
    launcher_env, engine, _image = docker_env
    profile = write_profile(launcher_env, "nemotron-test/absent:nope", engine, name="noimage")
    done = launcher_env.launch("toy.stage0", "--profile", profile)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: image nemotron-test/absent:nope is not in")
    assert not (launcher_env.root / "runs").exists()  # checked before the run was recorded
    assert "Traceback" not in done.stderr


def test_docker_missing_at_submit_is_one_line(launcher_env):
    done = launcher_env.launch("toy.stage0", "--executor", "docker", PATH="/nonexistent")
    assert done.returncode == 2 and done.stdout == "" and launcher_env.files() == []  # no run recorded
    assert done.stderr.strip().splitlines()[-1] == (
        "error: docker is not installed (or not on PATH): install Docker Engine (Debian: apt-get install docker.io)"
    )


@pytest.mark.docker
@pytest.mark.slow
def test_nano2_stage0_tiny_runs_through_docker(docker_env):
    launcher_env, engine, image = docker_env
    profile = write_profile(launcher_env, image.tag, engine, name="nano2docker")
    # Fewer steps than the tiny preset (300): this test is about the container path, the local e2e covers training.
    lean = ("training.train_iters=30", "evaluation.limit=16")
    done = launcher_env.launch("nano2.stage0", "--executor", "docker", "--profile", profile, "--scale", "tiny", *lean,
                               timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for name, step in done.document["steps"].items():
        assert step["state"] == "completed", name
        assert (Path(step["artifact"]) / "metadata.json").is_file()
    assert subprocess.run(["test", "-d", str(launcher_env.root / "nano2")]).returncode == 0
