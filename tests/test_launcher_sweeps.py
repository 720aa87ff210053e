"""Sweeps without a cluster (the toy recipe's real, fast steps): bad input refused in one line with nothing written,
the dry-run's task table and array scripts, and a local sweep whose tasks run two at once, each evaluation on its own
training task's checkpoint, a failed task the only one a rerun runs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

SWEEP = ["--sweep", "training.lr=0.1,0.2", "--sweep", "training.seed=1,2", "--max-parallel", "2"]
TRAINING, EVALUATION = "stage0_toy.training", "stage0_toy.evaluation"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--sweep", "training.lr="], "--sweep 'training.lr=' has an empty value"),
        (["--sweep", "training.lr=0.1,,0.2"], "has an empty value"),
        (["--sweep", "training.lrr=0.1,0.2"], "unknown field 'lrr' for step stage0_toy.training: did you mean lr?"),
        (["--sweep", "training.lr=0.1,fast"], "invalid value 'fast' for stage0_toy.training.lr: expected float"),
        (["--sweep", "training.lr=0.1,-1"], "lr must be positive"),  # the step's own check, at plan time
        (["--sweep", "training.lr=0.1", "--max-parallel", "0"], "--max-parallel 0: give how many tasks"),
        (["--sweep", "curation.seed=1,2"], "--sweep 'curation.seed=1,2' names no step of target toy.stage0"),
        (["--sweep", "training.lr=0.1", "--sweep", "training.lr=0.2"], "training.lr=0.2': lr is swept twice"),
        (["--sweep", "training.lr=0.1,1e-1"], "tasks 0 and 1 of stage0_toy.training are the same configuration"),
        (["--sweep", "training.tags=a,b"], "tags is a list"),
        (["training.lr=0.3", "--sweep", "training.lr=0.1,0.2"], "is both overridden ('training.lr=0.3') and swept"),
        (["--sweep", "training.lr=0.1", "--sweep", "evaluation.seed=1"], "a sweep varies fields of one step"),
        (["--sweep", "lr=0.1"], "invalid --sweep 'lr=0.1': expected STEP.FIELD=v1,v2,..."),
    ],
)
def test_bad_sweeps_are_one_line_exit_2_and_nothing_written(launcher_env, monkeypatch, capsys, args, expected):
    """In this process (the CLI's own entry point: 13 launches in well under a second each)."""
    from nemotron.launcher import cli

    for key, value in launcher_env.env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exited:
        cli.entrypoint(["toy.stage0", "--executor", "local", *args])
    out, err = capsys.readouterr()
    assert exited.value.code == 2 and out == "", (out, err)
    assert err.strip().count("\n") == 0 and expected in err, err
    assert launcher_env.files() == []


def test_a_sweep_over_a_step_of_several_stages_must_name_one(launcher_env) -> None:
    refused = launcher_env.launch("toy", "--executor", "local", "--sweep", "training.lr=0.1,0.2")
    assert refused.returncode == 2 and refused.stderr.strip().count("\n") == 0, refused.stderr
    assert "names 2 steps of target toy (stage0.training, stage1.training): name one, e.g. stage0.training.lr" in (
        refused.stderr
    )


def test_the_dry_run_shows_the_task_table_and_one_array_script_per_step(launcher_env) -> None:
    odd = "a b;$(touch /tmp/pwned)"  # a value that needs quoting reaches the script quoted, never as code
    done = launcher_env.launch(
        "toy.stage0", "--profile", "slurm-test", *SWEEP, f"data_curation.note={odd}", "--dry-run"
    )
    assert done.returncode == 0, done.stderr
    document = done.document
    assert list(document["rendered"]) == ["stage0_toy.data_curation", TRAINING, EVALUATION]  # one script per step
    training, evaluation = document["rendered"][TRAINING], document["rendered"][EVALUATION]
    assert "#SBATCH --array=0-3%2" in training and "#SBATCH --array=0-3%2" in evaluation
    assert "#SBATCH --dependency=afterok:{stage0_toy.data_curation}" in training
    assert "#SBATCH --dependency=aftercorr:{stage0_toy.training}" in evaluation  # task i after task i
    tasks = document["sweeps"][TRAINING]["tasks"]
    assert [t["values"] for t in tasks] == [
        {"training.lr": lr, "training.seed": seed} for lr in ("0.1", "0.2") for seed in ("1", "2")
    ]
    for task in tasks:  # each task picks its own flags and output by its index
        assert f"  {task['index']})\n    task_args=(--seed {task['values']['training.seed']} --output-dir " in training
        assert f"--output-dir {task['artifact']} " in training
    assert len({t["artifact"] for t in tasks}) == 4
    for task, evaluated in zip(tasks, document["sweeps"][EVALUATION]["tasks"], strict=True):
        assert f"--checkpoint-path {task['artifact']})" in evaluation.split(f"  {evaluated['index']})\n")[1]
    assert "'--note' " not in document["rendered"]["stage0_toy.data_curation"]
    assert "--note 'a b;$(touch /tmp/pwned)'" in document["rendered"]["stage0_toy.data_curation"]
    table = done.stderr[done.stderr.index(f"  sweep {TRAINING}: 4 task(s), 4 to run, 2 at once") :].splitlines()
    assert table[1].split() == ["task", "training.lr", "training.seed", "state", "output"]
    assert table[2].split() == ["0", "0.1", "1", "run", str(Path(tasks[0]["artifact"]).relative_to(launcher_env.root))]


def spans(steps: dict, prefix: str = "") -> list[tuple[dt.datetime, dt.datetime]]:
    """(start, end) of every attempt of the steps (of a run document) whose name starts with ``prefix``."""
    return [
        (dt.datetime.fromisoformat(a["started_at"]), dt.datetime.fromisoformat(a["ended_at"]))
        for name, step in steps.items()
        if name.startswith(prefix)
        for a in step["attempts"]
    ]


def peak(intervals) -> int:
    """The most of ``intervals`` open at once (one that ends in the second another starts does not overlap it)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def test_a_local_sweep_runs_per_task_and_a_rerun_runs_only_the_failed_task(launcher_env) -> None:
    args = ["toy.stage0", "--executor", "local", *SWEEP, "training.sleep_s=1"]
    planned = launcher_env.launch(*args, "--dry-run").document["sweeps"][TRAINING]["tasks"]
    blocked = Path(planned[1]["artifact"])  # task 1 cannot write its output: a file is in the way
    blocked.parent.mkdir(parents=True)
    blocked.write_text("in the way")

    first = launcher_env.launch(*args)
    assert first.returncode == 1, first.stderr[-2000:]
    steps = first.document["steps"]
    states = {name: step["state"] for name, step in steps.items()}
    assert states == {
        "stage0_toy.data_curation": "completed",
        **{f"{TRAINING}.{i}": "failed" if i == 1 else "completed" for i in range(4)},
        **{f"{EVALUATION}.{i}": "cancelled" if i == 1 else "completed" for i in range(4)},  # its own upstream
    }
    assert steps[f"{EVALUATION}.1"]["reason"] == f"upstream {TRAINING}.1 did not complete"
    log = launcher_env.launch("logs", first.document["run_id"], "stage0.training.1")  # a task by its stage's alias
    assert log.document["step"] == f"{TRAINING}.1" and str(blocked) in log.stderr, log.stderr
    assert peak(spans(steps, TRAINING)) == 2  # two at once, never more
    for i in (0, 2, 3):
        checkpoint = json.loads((Path(steps[f"{TRAINING}.{i}"]["artifact"]) / "metadata.json").read_text())
        assert (checkpoint["config"]["lr"], checkpoint["config"]["seed"]) == (0.1 * (1 + i // 2), 1 + i % 2)
        results = json.loads((Path(steps[f"{EVALUATION}.{i}"]["artifact"]) / "metadata.json").read_text())
        assert results["lineage"][0]["path"] == steps[f"{TRAINING}.{i}"]["artifact"]  # its own task's checkpoint

    # on Slurm the rerun would be the failed task's training and evaluation alone, task 1 after task 1
    on_slurm = ["toy.stage0", "--profile", "slurm-test", *SWEEP, "training.sleep_s=1", "--dry-run"]
    rendered = launcher_env.launch(*on_slurm).document["rendered"]
    assert "#SBATCH --array=1%2" in rendered[TRAINING] and "#SBATCH --array=1%2" in rendered[EVALUATION]
    assert "#SBATCH --dependency=aftercorr:{stage0_toy.training}\n" in rendered[EVALUATION]
    # an evaluation task whose training task is reused has no task to wait for there: the array waits for all
    (Path(steps[f"{EVALUATION}.0"]["artifact"]) / "metadata.json").unlink()
    rendered = launcher_env.launch(*on_slurm).document["rendered"]
    assert "#SBATCH --array=0-1%2" in rendered[EVALUATION]
    assert "#SBATCH --dependency=afterok:{stage0_toy.training}\n" in rendered[EVALUATION]

    blocked.unlink()
    rerun = launcher_env.launch(*args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    states = {name: step["state"] for name, step in rerun.document["steps"].items()}
    ran = sorted(name for name, state in states.items() if state == "completed")
    assert ran == [f"{EVALUATION}.0", f"{EVALUATION}.1", f"{TRAINING}.1"]  # the rest reused, task by task
    assert {state for name, state in states.items() if name not in ran} == {"reused"}

    forced = launcher_env.launch(*args, "--force", "--dry-run").document["sweeps"][TRAINING]["tasks"]
    assert [task["state"] for task in forced] == ["run"] * 4
