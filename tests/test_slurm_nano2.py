"""nano2 for real on the test clusters: the 9-job DAG across stages, two nodes (failures and requeues of nano2
training: test_slurm_fault_tolerance.py)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
TRAIN_ITERS = 20  # orchestration, not learning
TP_ITERATIONS = 50  # the preempted tensor-parallel run's length: see its test


def metadata(path: str | Path) -> dict:
    return json.loads((Path(path) / "metadata.json").read_text())


@pytest.fixture(scope="module")
def nano2_run(tmp_path_factory, slurm_cluster):
    """One real run of all of nano2 (9 jobs) on the single-node cluster through the CLI (shared by this module)."""
    from launcher_env import LauncherEnv

    base = tmp_path_factory.mktemp("nano2")
    env = _launcher_env(base, slurm_cluster)
    short = [f"stage0.training.train_iters={TRAIN_ITERS}", "stage1.training.train_iters=10",
             "stage2.training.train_iters=10"] + [f"stage{i}.training.warmup_iters=2" for i in range(3)]  # fmt: skip
    launched = env.launch("nano2", "--profile", "slurm-test", "--scale", "tiny", *short, timeout=2400)
    assert isinstance(env, LauncherEnv)
    return env, launched


def _launcher_env(base: Path, cluster):
    import os

    from launcher_env import LauncherEnv

    root, state, profiles = base / "artifacts", base / "state", base / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ, "NEMOTRON_ARTIFACT_ROOT": str(root), "NEMOTRON_STATE_DIR": str(state),
        "NEMOTRON_PROFILES": str(profiles), "XDG_CONFIG_HOME": str(base / "config"), "COLUMNS": "160",
        "SLURM_CONF": str(cluster.conf),
    }  # fmt: skip
    return LauncherEnv(root, state, profiles, env)


def test_stage0_completes_on_slurm_with_chained_artifacts(nano2_run):
    env, launched = nano2_run
    assert launched.returncode == 0, launched.stderr[-3000:]
    steps = launched.document["steps"]
    assert [s["state"] for s in steps.values()] == ["completed"] * 9
    checkpoint = metadata(steps["stage0_pretrain.training"]["artifact"])
    results = metadata(steps["stage0_pretrain.evaluation"]["artifact"])
    assert checkpoint["lineage"][0]["path"] == steps["stage0_pretrain.data_curation"]["artifact"]
    assert results["lineage"][0]["path"] == steps["stage0_pretrain.training"]["artifact"]
    assert checkpoint["num_steps"] == TRAIN_ITERS and checkpoint["world_size"] == 1
    status = env.launch("status", launched.document["run_id"])
    assert [(s["state"], s["job_id"]) for s in status.document["steps"].values()] == [
        ("completed", s["job_id"]) for s in steps.values()
    ]


def test_the_nine_job_dag_chains_across_stages_with_afterok(nano2_run):
    env, launched = nano2_run
    assert launched.returncode == 0, launched.stderr[-3000:]
    steps = launched.document["steps"]
    run_dir = Path(launched.document["run_dir"])
    for job, upstream in [
        ("stage1_instruction_tuning.data_curation", "stage0_pretrain.training"),
        ("stage1_instruction_tuning.training", "stage0_pretrain.training"),
        ("stage2_alignment.training", "stage1_instruction_tuning.training"),
        ("stage1_instruction_tuning.evaluation", "stage0_pretrain.evaluation"),  # its baseline
        ("stage2_alignment.evaluation", "stage1_instruction_tuning.evaluation"),
    ]:
        script = (run_dir / "sbatch" / f"{job}.sbatch").read_text()
        dependency = next(line for line in script.splitlines() if "--dependency=afterok:" in line)
        assert steps[upstream]["job_id"] in dependency.split("afterok:")[1], (job, dependency)
    # the final Results walks back through all 9 artifacts (each stage's evaluation is the next one's baseline)
    reached, frontier = set(), [steps["stage2_alignment.evaluation"]["artifact"]]
    while frontier:
        path = frontier.pop()
        if path not in reached:
            reached.add(path)
            frontier.extend(str(entry["path"]) for entry in metadata(path)["lineage"])
    assert reached == {step["artifact"] for step in steps.values()}


def test_tensor_parallel_training_across_two_nodes_is_preempted_and_resumes(nano2_run, slurm_cluster_2nodes, tmp_path):
    """One rank per node, the model split over the two (TP=2, sequence parallel): the tensor-parallel all-reduces
    cross the nodes' network. Preempted after its step-10 checkpoint (USR1, as Slurm signals before a time limit or
    a preemption), requeued, it resumes at that layout and completes."""
    _, launched = nano2_run
    env = _launcher_env(tmp_path, slurm_cluster_2nodes)
    (env.profiles / "twonodes.toml").write_text('extends = "slurm-test"\n[steps.training]\nnodes = 2\n')
    dataset = launched.document["steps"]["stage0_pretrain.data_curation"]["artifact"]
    # 50 iterations (~0.3 s each here): the signal, sent at step 10, reaches the ranks within 1-2 s, long before the end
    overrides = ["training.tensor_parallel=2", f"training.train_iters={TP_ITERATIONS}", "training.warmup_iters=1",
                 "training.save_interval=10"]  # fmt: skip
    run = env.launch("nano2.stage0.training", "--profile", "twonodes", f"training.dataset_path={dataset}", *overrides,
                     "--detach")  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    job_id = run.document["steps"]["stage0_pretrain.training"]["job_id"]
    log = Path(run.document["run_dir"]) / "logs" / f"stage0_pretrain.training.{job_id}.log"
    _wait(lambda: "step 10 " in _read(log), 600, "training step 10")
    slurm_cluster_2nodes.run("scancel", "--batch", "--signal=USR1", job_id)
    _wait(lambda: "requeued" in _read(log), 300, "requeue")
    _wait(lambda: _job_state(slurm_cluster_2nodes, job_id) in ("COMPLETED", "FAILED", "CANCELLED"), 900, "job end")
    step = env.launch("status", run.document["run_id"]).document["steps"]["stage0_pretrain.training"]
    text = _read(log)
    assert step["state"] == "completed", text[-3000:]
    # exit code 75 from the rank that stopped first, or 143: srun's --kill-on-bad-exit ends the other one, already
    # past the checkpoint's last barrier
    assert re.search(r"attempt 1 ended by preempted \(exit code (75|143)\): requeued", text), text[-3000:]
    assert "checkpoint saved; exiting 75" in text and "resumed from" in text
    checkpoint = metadata(step["artifact"])
    assert checkpoint["num_steps"] == TP_ITERATIONS and checkpoint["world_size"] == 2
    assert checkpoint["layout"] == {"tensor_parallel": 2, "pipeline_parallel": 1, "data_parallel": 1}
    script = (Path(run.document["run_dir"]) / "sbatch" / "stage0_pretrain.training.sbatch").read_text()
    assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=1" in script
    nodes = slurm_cluster_2nodes.run("scontrol", "show", "job", job_id).stdout
    assert "NodeList=n[1-2]" in nodes


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _job_state(cluster, job_id: str) -> str:
    out = cluster.run("squeue", "-h", "--states=all", "-j", job_id, "-o", "%T", check=False).stdout.strip()
    return out


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    raise AssertionError(f"{what}: not reached in {timeout}s")
