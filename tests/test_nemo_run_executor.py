"""The NeMo-Run executor through the real CLI: dry-runs of the cloud backends, bad input, the real test Slurm cluster
(NeMo-Run's Slurm backend with a local tunnel; its status needs sacct, so the accounting cluster) and the real dockerd.

Without the ``nemo-run`` extra these tests skip on a laptop; under CI (which installs it) they fail instead.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
from test_slurm_executor import use_cluster, wait_for

TESTS = Path(__file__).resolve().parent
SECRET_VALUE = "hf_nemo-run-test-s3cret-5c1e"  # unique, so any occurrence anywhere is a leak

if importlib.util.find_spec("nemo_run") is None:
    message = "NeMo-Run is not installed (uv sync --extra nemo-run)"
    if os.environ.get("CI"):
        raise RuntimeError(f"{message}: CI installs the extra")
    pytest.skip(message, allow_module_level=True)


def write_profile(env, name: str, body: str) -> str:
    (env.profiles / f"{name}.toml").write_text(textwrap.dedent(body))
    return name


# ------------------------------------------------------------------------------------------------- dry-runs
CLOUD_PROFILES = {
    "skypilot": """
        executor = "nemo_run"
        artifact_root = "/nemotron"
        [container]
        image = "registry.example.com/nemotron/nano2:1"
        [nemo_run]
        backend = "skypilot"
        [nemo_run.skypilot]
        infra = "k8s"
        gpus = "H100"
        gpus_per_node = 8
        artifact_storage = { name = "nemotron-artifacts", store = "s3", mode = "MOUNT" }
        """,
    "dgxcloud": """
        executor = "nemo_run"
        artifact_root = "/pvc/nemotron"
        [container]
        image = "nvcr.io/example/nemotron-nano2:1"
        [nemo_run]
        backend = "dgxcloud"
        [nemo_run.dgxcloud]
        base_url = "https://dgx.example.com/api/v1"
        kube_apiserver_url = "https://dgx.example.com:6443"
        client_id = "nemotron"
        client_secret_env = "NEMOTRON_TEST_DGX_SECRET"
        project_name = "llm"
        pvc_nemo_run_dir = "/pvc/nemo_run"
        gpus_per_node = 8
        pvcs = [{ name = "workspace", path = "/pvc", existingPvc = true, claimName = "workspace" }]
        """,
    "lepton": """
        executor = "nemo_run"
        artifact_root = "/shared/nemotron"
        secrets = ["HF_TOKEN"]
        [container]
        image = "nvcr.io/example/nemotron-nano2:1"
        [nemo_run]
        backend = "lepton"
        [nemo_run.lepton]
        resource_shape = "gpu.8xh100-80gb"
        node_group = "nemotron-nodes"
        nemo_run_dir = "/shared/nemo_run"
        gpus_per_node = 8
        mounts = [{ path = "/", mount_path = "/shared", from = "node-nfs:lepton-shared-fs" }]
        secret_refs = { HF_TOKEN = "hf-token" }
        """,
}


def _backend_installed(backend: str) -> bool:
    return backend != "skypilot" or importlib.util.find_spec("sky") is not None


@pytest.mark.parametrize("backend", sorted(b for b in CLOUD_PROFILES if _backend_installed(b)))
def test_cloud_dry_run_shows_every_step_its_resources_and_dependencies(launcher_env, backend):
    profile = write_profile(launcher_env, f"nr-{backend}", CLOUD_PROFILES[backend])
    done = launcher_env.launch(
        "nano2.stage0", "--profile", profile, "--dry-run", HF_TOKEN=SECRET_VALUE, NEMOTRON_TEST_DGX_SECRET=SECRET_VALUE
    )
    assert done.returncode == 0, done.stderr[-3000:]
    document = done.document
    assert set(document["rendered"]) == set(document["jobs"]) and len(document["jobs"]) == 3
    for name, job in document["jobs"].items():
        text = document["rendered"][name]
        module_and_flags = job["command"].removeprefix("python -m ")
        assert module_and_flags.split()[0] in text and job["artifact"] in text, (name, text)
        assert f"# after: {', '.join(job['depends_on'])}" in text if job["depends_on"] else "# after" not in text
        if backend != "skypilot":  # SkyPilot's resources are its own fields (gpus_per_node, num_nodes)
            assert f"nodes={job['resources']['nodes']}" in text.replace(" ", "").replace("'", ""), text
        assert f"{job['resources']['gpus_per_node']}" in text
    training = document["rendered"]["stage0_pretrain.training"].replace(" ", "")
    assert ("gpus_per_node:8" in training) if backend == "skypilot" else ("gpus_per_node=8" in training), training
    if backend == "lepton":
        assert "'HF_TOKEN':'hf-token'" in training  # a reference to the workspace's secret, never its value
    if backend == "dgxcloud":
        assert "$NEMOTRON_TEST_DGX_SECRET" in training
    assert SECRET_VALUE not in done.stdout + done.stderr
    assert launcher_env.files() == []


@pytest.mark.skipif(importlib.util.find_spec("sky") is not None, reason="SkyPilot's SDK is installed here")
def test_a_backend_whose_sdk_is_missing_is_one_line_at_dry_run_and_submit_and_blocks_nothing(launcher_env):
    write_profile(launcher_env, "sky", CLOUD_PROFILES["skypilot"])
    for argv in (["--dry-run"], []):
        done = launcher_env.launch("nano2.stage0", "--profile", "sky", *argv)
        assert done.returncode == 2 and done.stdout == "", done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "needs the skypilot package" in lines[0] and "pip install skypilot" in lines[0]
    assert launcher_env.files() == []  # refused before a run was recorded: no claim can block the next launch


def _readable(data: bytes) -> bytes:
    """A file's bytes and, decompressed, every base64+zlib blob in it (NeMo-Run's ZlibJSONSerializer)."""
    texts = [data]
    for blob in re.findall(rb"[A-Za-z0-9_=-]{24,}", data):
        try:
            texts.append(zlib.decompress(base64.urlsafe_b64decode(blob + b"=" * (-len(blob) % 4))))
        except (ValueError, zlib.error):
            continue
    return b"\n".join(texts)


@pytest.mark.slow
def test_dgx_cloud_submit_keeps_its_api_secret_out_of_nemo_runs_files(launcher_env, tmp_path):
    with socket.socket() as probe:  # a port nothing listens on: the API refuses the connection at once
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    pvc = tmp_path / "pvc"
    body = CLOUD_PROFILES["dgxcloud"].replace("https://dgx.example.com/api/v1", f"http://127.0.0.1:{closed}/api/v1")
    body = body.replace('"/pvc', f'"{pvc}')
    write_profile(launcher_env, "dgx", body)
    home = tmp_path / "nemorun-home"
    done = launcher_env.launch(
        "toy.stage0.data_curation", "--profile", "dgx", NEMORUN_HOME=str(home), NEMOTRON_TEST_DGX_SECRET=SECRET_VALUE
    )
    assert done.returncode == 2 and done.stdout == "", done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [done.stderr.strip().splitlines()[-1]] and "Failed to get auth token" in errors[0]
    assert "Traceback" not in done.stderr
    written = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name.endswith("_executor.yaml") for p in written)  # NeMo-Run did save the executor
    for path in [*written, *pvc.rglob("*"), *launcher_env.files()]:
        if path.is_file():
            assert SECRET_VALUE.encode() not in _readable(path.read_bytes()), path
    [record] = pvc.glob("nemotron/runs/*/run.json")  # the profile's artifact root
    assert {s["state"] for s in json.loads(record.read_text())["steps"].values()} == {"failed"}


def test_nemo_run_slurm_profile_dry_run_is_an_sbatch_script_per_step(launcher_env):
    done = launcher_env.launch("nano2.stage0", "--profile", "nemo-run-slurm", "--scale", "full", "--dry-run")
    assert done.returncode == 0, done.stderr[-3000:]
    training = done.document["rendered"]["stage0_pretrain.training"]
    for line in ("#SBATCH --nodes=8", "#SBATCH --gpus-per-node=8", "#SBATCH --ntasks-per-node=8",
                 "#SBATCH --partition=batch", "#SBATCH --kill-on-invalid-dep=yes", "--container-image"):  # fmt: skip
        assert line in training, line
    assert "python -m nemotron.recipes.nano2.stage0_pretrain.training --scale full" in training
    assert "# after: stage0_pretrain.data_curation" in training


# ------------------------------------------------------------------------------------------------- bad input
BAD_PROFILES = {
    "unknown backend": ('executor = "nemo_run"\n[nemo_run]\nbackend = "k8s"\n', "nemo_run.backend"),
    "unknown option": (
        'executor = "nemo_run"\n[nemo_run]\nbackend = "slurm"\n[nemo_run.slurm]\nacount = "x"\n',
        "did you mean 'nemo_run.slurm.account'",
    ),
    "missing required option": (
        'executor = "nemo_run"\n[nemo_run]\nbackend = "lepton"\n[nemo_run.lepton]\nnode_group = "g"\n',
        "nemo_run.lepton.resource_shape",
    ),
    "missing backend table": ('executor = "nemo_run"\n[nemo_run]\nbackend = "dgxcloud"\n', "[nemo_run.dgxcloud]"),
    "no nemo_run table": ('executor = "nemo_run"\n', "needs a [nemo_run] table"),
}


@pytest.mark.parametrize("case", sorted(BAD_PROFILES))
def test_bad_nemo_run_profile_is_one_line_and_submits_nothing(launcher_env, case):
    body, expected = BAD_PROFILES[case]
    write_profile(launcher_env, "bad", body)
    done = launcher_env.launch("toy.stage0", "--profile", "bad")
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and expected in done.stderr, done.stderr
    assert launcher_env.files() == []


def test_a_secret_the_backend_cannot_carry_is_refused_naming_both(launcher_env):
    (launcher_env.profiles / "dockersecret.toml").write_text(
        'executor = "nemo_run"\nsecrets = ["HF_TOKEN"]\n[container]\nimage = "x:1"\n[nemo_run]\nbackend = "docker"\n'
    )
    done = launcher_env.launch("toy.stage0", "--profile", "dockersecret", HF_TOKEN=SECRET_VALUE)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "secret HF_TOKEN" in done.stderr and "docker backend" in done.stderr
    assert SECRET_VALUE not in done.stderr and launcher_env.files() == []


def test_without_the_extra_choosing_it_is_one_line_naming_the_install(launcher_env):
    write_profile(launcher_env, "nrlocal", 'executor = "nemo_run"\n[nemo_run]\nbackend = "local"\n')
    blocked = "import sys; sys.modules['nemo_run'] = None; from nemotron.launcher.cli import entrypoint; entrypoint()"
    done = subprocess.run(
        [sys.executable, "-c", blocked, "toy.stage0", "--profile", "nrlocal"],
        env=launcher_env.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "error: the nemo_run executor needs NeMo-Run, an optional extra: uv sync --extra nemo-run "
        "(pip: pip install 'nemotron-launch[nemo-run]')"
    ]
    assert launcher_env.files() == []


# ------------------------------------------------------------------------------------------- the real Slurm
SLURM_TEST_PROFILE = """
    description = "the accounting test cluster through NeMo-Run's Slurm backend"
    extends = "slurm-test"
    executor = "nemo_run"
    secrets = ["NEMOTRON_TEST_TOKEN"]
    [nemo_run]
    backend = "slurm"
    [nemo_run.slurm]
    account = "root"
    gpus_per_node = 0
    cpus_per_task = 1
    time = "00:30:00"
    partitions = { cpu = "debug", gpu = "debug" }
    """


@pytest.fixture
def on_nemo_slurm(launcher_env, slurm_cluster_acct, tmp_path):
    env = use_cluster(launcher_env, slurm_cluster_acct)
    env.env["NEMORUN_HOME"] = str(tmp_path / "nemorun-home")  # not ".../nemo_run...": see NemoRunExecutor.check
    env.env["NEMOTRON_TEST_TOKEN"] = SECRET_VALUE
    write_profile(env, "nrslurm", SLURM_TEST_PROFILE)
    return env


def _states(document: dict) -> dict[str, str]:
    return {name: step["state"] for name, step in document["steps"].items()}


@pytest.mark.slurm
@pytest.mark.slow
def test_nano2_stage0_runs_as_three_chained_nemo_run_jobs(on_nemo_slurm, tmp_path):
    lean = ("training.train_iters=5", "training.warmup_iters=1", "evaluation.limit=8")
    done = on_nemo_slurm.launch("nano2.stage0", "--profile", "nrslurm", "--scale", "tiny", *lean, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    document = done.document
    assert _states(document) == {
        f"stage0_pretrain.{s}": "completed" for s in ("data_curation", "training", "evaluation")
    }
    job_ids = [step["job_id"] for step in document["steps"].values()]
    assert all(job_id.isdigit() for job_id in job_ids) and len(set(job_ids)) == 3
    training = json.loads(
        (Path(document["steps"]["stage0_pretrain.training"]["artifact"]) / "metadata.json").read_text()
    )
    assert training["lineage"][0]["path"] == document["steps"]["stage0_pretrain.data_curation"]["artifact"]
    record = json.loads((Path(document["run_dir"]) / "run.json").read_text())
    experiment = record["executor_data"]["experiment_id"]
    assert experiment.startswith(document["run_id"] + "_")
    # status and logs from another shell: the run record names NeMo-Run's experiment
    status = on_nemo_slurm.launch("status", document["run_id"])
    assert status.returncode == 0 and _states(status.document) == _states(document)
    logs = on_nemo_slurm.launch("logs", document["run_id"], "training")
    assert logs.returncode == 0 and document["steps"]["stage0_pretrain.training"]["artifact"] in logs.stderr
    # the secret reached no script, log or record that NeMo-Run or we wrote
    for base in (on_nemo_slurm.root, on_nemo_slurm.state, Path(on_nemo_slurm.env["NEMORUN_HOME"])):
        for path in base.rglob("*"):
            if path.is_file():
                assert SECRET_VALUE.encode() not in path.read_bytes(), path


@pytest.mark.slurm
def test_a_secret_reaches_nemo_runs_slurm_jobs_through_a_private_file_only(on_nemo_slurm, slurm_cluster_acct):
    from test_secret_paths import files_holding

    done = on_nemo_slurm.launch("toy.stage0", "--profile", "nrslurm", "training.digest_of=NEMOTRON_TEST_TOKEN")
    assert done.returncode == 0, done.stderr[-3000:]
    logs = on_nemo_slurm.launch("logs", done.document["run_id"], "training")
    assert f"NEMOTRON_TEST_TOKEN sha256 {hashlib.sha256(SECRET_VALUE.encode()).hexdigest()}" in logs.stderr
    assert not (Path(done.document["run_dir"]) / "secrets.env").exists()  # gone once the run ended
    base = slurm_cluster_acct.base
    home = Path(on_nemo_slurm.env["NEMORUN_HOME"])
    assert files_holding(SECRET_VALUE, base / "state", base / "spool", on_nemo_slurm.root, home) == []
    for step in done.document["steps"].values():
        envs = slurm_cluster_acct.run("sacct", "-j", step["job_id"], "--env-vars").stdout
        assert "PATH=" in envs and SECRET_VALUE not in envs


@pytest.mark.slurm
def test_a_failed_step_leaves_its_dependents_unrun_and_status_names_it(on_nemo_slurm):
    done = on_nemo_slurm.launch("toy.stage0", "--profile", "nrslurm", "training.fail=true", timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]
    steps = done.document["steps"]
    assert _states(done.document) == {
        "stage0_toy.data_curation": "completed",
        "stage0_toy.training": "failed",
        "stage0_toy.evaluation": "cancelled",
    }
    assert steps["stage0_toy.evaluation"]["reason"] == "upstream stage0_toy.training failed"
    assert not (Path(steps["stage0_toy.evaluation"]["artifact"]) / "metadata.json").exists()
    status = on_nemo_slurm.launch("status", done.document["run_id"])
    assert "stage0_toy.training" in status.stderr and "failed" in status.stderr


@pytest.mark.slurm
def test_cancel_stops_a_running_nemo_run_experiment(on_nemo_slurm, slurm_cluster_acct):
    launched = on_nemo_slurm.launch("toy.stage0", "--profile", "nrslurm", "--detach", "training.sleep_s=300")
    assert launched.returncode == 0, launched.stderr[-3000:]
    run_id = launched.document["run_id"]
    try:
        wait_for(
            lambda: _states(on_nemo_slurm.launch("status", run_id).document)["stage0_toy.training"] == "running",
            timeout=180, what="training running",
        )  # fmt: skip
    finally:
        cancelled = on_nemo_slurm.launch("cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr[-3000:]
    assert _states(cancelled.document)["stage0_toy.training"] == "cancelled"
    assert _states(cancelled.document)["stage0_toy.evaluation"] == "cancelled"
    job_ids = {step["job_id"] for step in launched.document["steps"].values() if step["job_id"]}
    assert not job_ids & set(slurm_cluster_acct.queue_active())


# ------------------------------------------------------------------------------------------- the real dockerd
@pytest.mark.docker
@pytest.mark.slow
def test_one_nano2_step_runs_in_the_recipe_image_through_nemo_run_docker(launcher_env, docker_test_image,
                                                                         code_snapshot, tmp_path):  # fmt: skip
    from test_docker_executor import memlock_hard_limit

    engine, image = docker_test_image
    launcher_env.env["DOCKER_HOST"] = engine.host
    launcher_env.env["NEMORUN_HOME"] = str(tmp_path / "nemorun-home")
    launcher_env.env["PYTHONPATH"] = os.pathsep.join([str(code_snapshot / "src"), launcher_env.env["PYTHONPATH"]])
    mounts = [*engine.python_mounts, f"{TESTS}:{TESTS}:ro"]
    write_profile(launcher_env, "nrdocker", f"""
        executor = "nemo_run"
        [container]
        image = {json.dumps(image.tag)}
        mounts = {json.dumps(mounts)}
        [env]
        PYTHONPATH = "/opt/nemotron/src"
        TORCH_COMPILE_DISABLE = "1"
        [nemo_run]
        backend = "docker"
        [nemo_run.docker]
        shm_size = "256m"
        ulimits = ["memlock:{memlock_hard_limit()}"]
        """)  # fmt: skip
    done = launcher_env.launch("nano2.stage0.data_curation", "--profile", "nrdocker", "--scale", "tiny", timeout=600)
    if done.returncode != 0:  # the step's own log says why
        log = launcher_env.launch("logs", done.document["run_id"], "data_curation").stderr
        raise AssertionError(done.stderr[-2000:] + log[-3000:])
    step = done.document["steps"]["stage0_pretrain.data_curation"]
    assert step["state"] == "completed"
    metadata = json.loads((Path(step["artifact"]) / "metadata.json").read_text())
    assert metadata["path"] == step["artifact"] and Path(step["artifact"]).is_relative_to(launcher_env.root)
    assert Path(step["artifact"]).stat().st_uid == os.getuid()


@pytest.mark.docker
def test_a_chain_runs_in_containers_through_nemo_run_docker_and_lands_on_the_host(docker_env):
    from test_docker_executor import memlock_hard_limit

    launcher_env, engine, image = docker_env
    launcher_env.env["NEMORUN_HOME"] = str(launcher_env.root.parent / "nemorun-home")
    mounts = [*engine.python_mounts, f"{TESTS}:{TESTS}:ro"]
    write_profile(launcher_env, "nrchain", f"""
        executor = "nemo_run"
        [container]
        image = {json.dumps(image.tag)}
        mounts = {json.dumps(mounts)}
        [env]
        PYTHONPATH = "/opt/nemotron/src:{TESTS}"
        [nemo_run]
        backend = "docker"
        [nemo_run.docker]
        ulimits = ["memlock:{memlock_hard_limit()}"]
        """)  # fmt: skip
    done = launcher_env.launch("toy.stage0", "--profile", "nrchain", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = done.document["steps"]
    assert _states(done.document) == dict.fromkeys(steps, "completed") and len(steps) == 3
    training = json.loads((Path(steps["stage0_toy.training"]["artifact"]) / "metadata.json").read_text())
    assert training["lineage"][0]["path"] == steps["stage0_toy.data_curation"]["artifact"]  # chained on the host
    assert all(Path(step["artifact"]).is_relative_to(launcher_env.root) for step in steps.values())


@pytest.mark.slow
def test_nano2_stage0_runs_as_three_dependent_tasks_on_nemo_runs_local_backend(launcher_env, tmp_path):
    home = tmp_path / "nemorun-home"
    launcher_env.env["NEMORUN_HOME"] = str(home)
    profile = 'executor = "nemo_run"\nsecrets = ["NEMOTRON_TEST_TOKEN"]\n[nemo_run]\nbackend = "local"\n'
    write_profile(launcher_env, "nrlocal", profile)
    lean = ("training.train_iters=5", "training.warmup_iters=1", "evaluation.limit=8")
    done = launcher_env.launch("nano2.stage0", "--profile", "nrlocal", *lean, timeout=900,
                               NEMOTRON_TEST_TOKEN=SECRET_VALUE)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    status = launcher_env.launch("status", done.document["run_id"])
    assert status.returncode == 0
    assert _states(status.document) == {
        f"stage0_pretrain.{s}": "completed" for s in ("data_curation", "training", "evaluation")
    }
    steps = status.document["steps"]
    evaluation = json.loads((Path(steps["stage0_pretrain.evaluation"]["artifact"]) / "metadata.json").read_text())
    assert evaluation["lineage"][0]["path"] == steps["stage0_pretrain.training"]["artifact"]  # each after its input
    # the jobs inherit the secret from the launching process; no file NeMo-Run or we wrote holds it
    for path in [*home.rglob("*"), *launcher_env.files()]:
        if path.is_file():
            assert SECRET_VALUE.encode() not in _readable(path.read_bytes()), path
