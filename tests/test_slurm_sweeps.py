"""A sweep of 2 learning rates x 2 seeds over nano2 stage0 training (a few iterations) as job arrays on the real test
cluster, each task's evaluation after its own training task (the local executor's sweeps: test_launcher_sweeps.py)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sharded_corpus import write_corpus
from test_launcher_sweeps import peak

pytestmark = [pytest.mark.slurm]

SHORT = ["training.train_iters=2", "training.warmup_iters=1"]
SWEEP = ["--sweep", "training.lr=1e-3,3e-3", "--sweep", "training.seed=1,2", "--max-parallel", "2"]
VALUES = [("1e-3", "1"), ("1e-3", "2"), ("3e-3", "1"), ("3e-3", "2")]  # task index -> (lr, seed), first slowest
TRAINING, EVALUATION = "stage0_pretrain.training", "stage0_pretrain.evaluation"


def metadata(path: str | Path) -> dict:
    return json.loads((Path(path) / "metadata.json").read_text())


def _tasks(cluster, array_id: str) -> dict[int, tuple[dt.datetime, dt.datetime, str]]:
    """Each task of an array as Slurm has it (finished ones stay in the queue for MinJobAge): index -> (start, end,
    state)."""
    listed = cluster.run("squeue", "-h", "-r", "--states=all", "-j", array_id, "-o", "%i|%S|%e|%T").stdout
    tasks = {}
    for line in listed.splitlines():
        job, start, end, state = line.strip().split("|")
        tasks[int(job.split("_")[1])] = (dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end), state)
    return tasks


def test_a_sweep_runs_as_throttled_arrays_each_evaluation_after_its_own_training(
    launcher_env, slurm_cluster, tmp_path
) -> None:
    launcher_env.env["SLURM_CONF"] = str(slurm_cluster.conf)
    corpus = write_corpus(tmp_path / "corpus", files=2, documents_per_file=30)
    curation = [f"data_curation.sources={corpus}", "data_curation.shards=2"]  # an array upstream of the sweep
    args = ["nano2.stage0", "--profile", "slurm-test", *curation, *SHORT, "evaluation.limit=4", *SWEEP]
    launched = launcher_env.launch(*args, timeout=900)
    assert launched.returncode == 0, launched.stderr[-3000:]
    steps, run_dir = launched.document["steps"], Path(launched.document["run_dir"])
    assert [s["state"] for s in steps.values()] == ["completed"] * 9

    training = {i: steps[f"{TRAINING}.{i}"] for i in range(4)}
    evaluation = {i: steps[f"{EVALUATION}.{i}"] for i in range(4)}
    (train_array,) = {s["job_id"].split("_")[0] for s in training.values()}  # one array for the 4 tasks
    (eval_array,) = {s["job_id"].split("_")[0] for s in evaluation.values()}
    assert [training[i]["job_id"] for i in range(4)] == [f"{train_array}_{i}" for i in range(4)]
    trained, evaluated = _tasks(slurm_cluster, train_array), _tasks(slurm_cluster, eval_array)
    assert sorted(trained) == sorted(evaluated) == [0, 1, 2, 3]
    assert {state for *_, state in [*trained.values(), *evaluated.values()]} == {"COMPLETED"}
    assert peak([(start, end) for start, end, _ in trained.values()]) == 2  # throttled to 2, and 2 did run
    assert peak([(start, end) for start, end, _ in evaluated.values()]) <= 2
    for i in range(4):  # each evaluation task after its own training task (aftercorr), not after all of them
        assert evaluated[i][0] >= trained[i][1], (i, trained[i], evaluated[i])

    sbatch = run_dir / "sbatch"
    curation_id = steps["stage0_pretrain.data_curation"]["job_id"]
    training_script = (sbatch / f"{TRAINING}.sbatch").read_text()
    assert "#SBATCH --array=0-3%2" in training_script
    assert f"#SBATCH --dependency=afterok:{curation_id}\n" in training_script  # every shard of the curation array
    assert f"#SBATCH --dependency=aftercorr:{train_array}\n" in (sbatch / f"{EVALUATION}.sbatch").read_text()

    dataset = steps["stage0_pretrain.data_curation"]["artifact"]
    assert len({s["artifact"] for s in training.values()}) == 4  # each task its own fingerprinted output
    for i, (lr, seed) in enumerate(VALUES):
        checkpoint = metadata(training[i]["artifact"])
        assert (checkpoint["config"]["lr"], checkpoint["config"]["seed"]) == (float(lr), int(seed))
        assert checkpoint["lineage"][0]["path"] == dataset  # trained on the sharded Dataset (all its shards)
        assert metadata(evaluation[i]["artifact"])["lineage"][0]["path"] == training[i]["artifact"]

    status = launcher_env.launch("status", launched.document["run_id"])
    assert status.returncode == 0, status.stderr
    _assert_task_rows(status.stderr, status.document["steps"])


def _assert_task_rows(table: str, steps: dict) -> None:
    """``status``: one row per training task, with its values and its checkpoint's headline metric."""
    from nemotron.launcher.inputs import headline_metric

    rows = [line for line in table.splitlines() if f" {TRAINING}." in line]
    assert len(rows) == 4, table
    for i, (lr, seed) in enumerate(VALUES):
        row = next(line for line in rows if f" {TRAINING}.{i} " in line)
        metric = headline_metric(Path(steps[f"{TRAINING}.{i}"]["artifact"]))
        assert metric and f"training.lr={lr} training.seed={seed}" in row and metric.split("=")[0] in row, row
        assert "completed" in row
