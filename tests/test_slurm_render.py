"""Rendering sbatch scripts (pure): golden scripts for the eos profile, quoting under arbitrary input, no secrets."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nemotron.launcher.executors.sbatch import SbatchParameterError, render, render_sbatch
from nemotron.launcher.executors.slurm import SlurmExecutor
from nemotron.launcher.plan import Job, Plan
from nemotron.launcher.profiles import load_profile
from nemotron.launcher.resources import resolve_resources
from nemotron.recipes.nano2.recipe import RECIPE

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path("/lustre/fsw/nemotron")
SECRET = "s3cr3t-value-never-rendered"


@pytest.fixture
def eos(monkeypatch):
    monkeypatch.setenv("NEMOTRON_ARTIFACT_ROOT", str(ROOT))
    return load_profile("eos")


def nano2_stage0_plan(profile) -> Plan:
    """The plan the launcher makes for nano2.stage0 on ``profile``, with fixed paths (no step module imported)."""
    stage = RECIPE.stage("stage0")
    jobs, previous = [], None
    for step in stage.steps:
        output = ROOT / "nano2" / stage.name / step.name / "full-0123456789ab"
        inputs = {spec.name: jobs[-1].output for spec in step.inputs} if previous else {}
        args = ["--scale", "full", "--output-dir", str(output)]
        for name, path in inputs.items():
            args += [f"--{name}-path", str(path)]
        jobs.append(
            Job(
                name=f"{stage.name}.{step.name}",
                stage=stage.name,
                step=step.name,
                module=step.module,
                args=args,
                config={},
                resources=resolve_resources(stage, step, profile, "full"),
                inputs=inputs,
                depends_on=[previous] if previous else [],
                output=output,
                artifact_type=step.artifact_type,
                fingerprint="0123456789ab",
                env={**profile.env, "NEMOTRON_ARTIFACT_ROOT": str(ROOT), **profile.fault_tolerance.job_env(step.name)},
            )
        )
        previous = jobs[-1].name
    return Plan(
        recipe="nano2", target="nano2.stage0", scale="full", profile=profile.name, executor="slurm",
        artifact_root=ROOT, code_version="0.1.0", secret_names=list(profile.secrets), jobs=jobs,
    )  # fmt: skip


def test_eos_scripts_match_golden(eos):
    rendered = SlurmExecutor().render(nano2_stage0_plan(eos), eos)
    assert list(rendered) == [
        "stage0_pretrain.data_curation", "stage0_pretrain.training", "stage0_pretrain.evaluation", "secrets-cleanup"
    ]  # fmt: skip
    for name, text in rendered.items():
        golden = GOLDEN / f"eos_{name}.sbatch"
        if os.environ.get("NEMOTRON_UPDATE_GOLDEN"):
            golden.write_text(text)
        assert text == golden.read_text(), f"{name} differs from {golden} (NEMOTRON_UPDATE_GOLDEN=1 rewrites it)"


def test_eos_sharded_curation_is_one_throttled_array_script_matching_golden(eos):
    """data_curation.shards=256 on eos: one script, --array with the profile's throttle, each task its own index,
    log and attempts file, and no per-job exit marker (the tasks' completion markers say it)."""
    from nemotron.launcher.plan import ArrayTasks

    plan = nano2_stage0_plan(eos)
    plan.jobs[0].array = ArrayTasks(count=256, indices=[*range(40), *range(41, 256)], max_parallel=64)
    plan.jobs[0].env["NEMOTRON_ARRAY_TASKS"] = "256"
    text = SlurmExecutor().render(plan, eos)["stage0_pretrain.data_curation"]
    golden = GOLDEN / "eos_stage0_pretrain.data_curation.sharded.sbatch"
    if os.environ.get("NEMOTRON_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"differs from {golden} (NEMOTRON_UPDATE_GOLDEN=1 rewrites it)"
    lines = text.splitlines()
    assert "#SBATCH --array=0-39,41-255%64" in lines and 'export NEMOTRON_ARRAY_TASK="$SLURM_ARRAY_TASK_ID"' in lines
    assert f"#SBATCH --output={ROOT}/runs/{{run_id}}/logs/stage0_pretrain.data_curation.%A_%a.log" in lines
    assert ".exit'" not in text and "--container-env=" in text and ",NEMOTRON_ARRAY_TASK " in text


def _swept(plan: Plan, lrs: tuple[str, ...]) -> Plan:
    """``plan`` as ``--sweep training.lr=...`` plans it: its training and evaluation once per task, each task its own
    output, the evaluation of task i reading training task i's checkpoint (fixed fingerprints, as above)."""
    from nemotron.launcher.sweeps import SweepTask

    curation, training, evaluation = plan.jobs
    jobs, trained = [curation], []
    for job in (training, evaluation):
        for i, lr in enumerate(lrs):
            output = job.output.with_name(f"full-{i}{job.fingerprint[1:]}")
            inputs = {name: trained[i] for name in job.inputs} if job is evaluation else job.inputs
            moved = {str(job.output): str(output), **{str(job.inputs[n]): str(p) for n, p in inputs.items()}}
            args = [moved.get(arg, arg) for arg in job.args]
            task = SweepTask(group=job.name, index=i, count=len(lrs), values={"training.lr": lr}, max_parallel=2)
            jobs.append(job.model_copy(update={
                "name": f"{job.name}.{i}", "output": output, "inputs": inputs, "sweep": task,
                "args": [*args, "--lr", lr] if job is training else args,
                "depends_on": [f"{training.name}.{i}"] if job is evaluation else job.depends_on,
            }))  # fmt: skip
        trained = [j.output for j in jobs[1:]]
    return plan.model_copy(update={"jobs": jobs})


def test_eos_sweep_is_one_array_script_per_step_matching_golden(eos):
    """--sweep training.lr=1e-4,3e-4: training is one array of 2 tasks at the sweep's throttle, each task picking its
    own flags, output, attempts record and exit marker by its index; its evaluation one array whose task i waits for
    training task i alone (aftercorr) and reads its checkpoint."""
    rendered = SlurmExecutor().render(_swept(nano2_stage0_plan(eos), ("1e-4", "3e-4")), eos)
    assert list(rendered) == [
        "stage0_pretrain.data_curation", "stage0_pretrain.training", "stage0_pretrain.evaluation", "secrets-cleanup"
    ]  # fmt: skip
    for name in ("stage0_pretrain.training", "stage0_pretrain.evaluation"):
        golden = GOLDEN / f"eos_{name}.sweep.sbatch"
        if os.environ.get("NEMOTRON_UPDATE_GOLDEN"):
            golden.write_text(rendered[name])
        assert rendered[name] == golden.read_text(), f"differs from {golden} (NEMOTRON_UPDATE_GOLDEN=1 rewrites it)"
    training, evaluation = rendered["stage0_pretrain.training"], rendered["stage0_pretrain.evaluation"]
    assert (
        "#SBATCH --array=0-1%2" in training
        and "#SBATCH --dependency=afterok:{stage0_pretrain.data_curation}" in training
    )
    assert "#SBATCH --dependency=aftercorr:{stage0_pretrain.training}" in evaluation
    assert "NEMOTRON_ARRAY_TASK" not in training  # a sweep's task is a whole step, not a shard of one
    assert f"--checkpoint-path {ROOT}/nano2/stage0_pretrain/training/full-1123456789ab)" in evaluation
    assert rendered["secrets-cleanup"].count("afterany:{stage0_pretrain.data_curation}:{stage0_pretrain.training}:")


def test_eos_training_is_8_nodes_of_8_gpus_under_pyxis(eos):
    text = SlurmExecutor().render(nano2_stage0_plan(eos), eos)["stage0_pretrain.training"]
    for line in (
        "#SBATCH --nodes=8", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8", "#SBATCH --partition=batch",
        "#SBATCH --account=llmservice_nemotron", "#SBATCH --exclusive", "#SBATCH --signal=B:USR1@300",
        "#SBATCH --kill-on-invalid-dep=yes", "#SBATCH --requeue", "#SBATCH --open-mode=append",
        "export PYTHONNOUSERSITE=1",
    ):  # fmt: skip
        assert line in text.splitlines()
    srun = next(line for line in text.splitlines() if line.startswith("srun "))
    assert "--container-image=/lustre/fsw/portfolios/llmservice/containers/nemotron-nano2.sqsh" in srun
    assert srun.count("--container-mounts=") == 1 and f"{ROOT}:{ROOT}" in srun and "/lustre:/lustre" in srun
    assert "--no-container-mount-home" in srun and "--container-workdir=/opt/nemotron" in srun
    assert "python -m nemotron.recipes.nano2.stage0_pretrain.training --scale full" in srun
    assert "#SBATCH --dependency=afterok:{stage0_pretrain.data_curation}\n" in text
    data = SlurmExecutor().render(nano2_stage0_plan(eos), eos)["stage0_pretrain.data_curation"]
    assert "#SBATCH --partition=cpu" in data.splitlines() and "#SBATCH --ntasks-per-node=1" in data.splitlines()


def test_a_job_is_chained_only_on_upstream_jobs_that_run(eos):
    """A reused upstream job is submitted by no one: its output exists, and a dependency on it could never be met."""
    plan = nano2_stage0_plan(eos)
    plan.jobs[0].reuse = True
    rendered = SlurmExecutor().render(plan, eos)
    assert "--dependency" not in rendered["stage0_pretrain.training"]
    assert "#SBATCH --dependency=afterok:{stage0_pretrain.training}\n" in rendered["stage0_pretrain.evaluation"]
    cleanup = rendered["secrets-cleanup"]
    assert "#SBATCH --dependency=afterany:{stage0_pretrain.training}:{stage0_pretrain.evaluation}\n" in cleanup


def test_rendered_scripts_are_valid_bash(eos, tmp_path):
    for name, text in SlurmExecutor().render(nano2_stage0_plan(eos), eos).items():
        script = tmp_path / f"{name}.sh"
        script.write_text(text)
        assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0, name


def test_unknown_parameter_lists_the_valid_ones():
    with pytest.raises(SbatchParameterError, match=r"unknown sbatch parameter 'gpus'.*gpus_per_node"):
        render({"job_name": "x", "command": ["true"], "log_file": "/tmp/x.log", "gpus": 8})


def test_no_secret_in_any_rendered_script_or_dry_run(eos, monkeypatch, launcher_env):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    rendered = SlurmExecutor().render(nano2_stage0_plan(eos), eos)
    assert all(SECRET not in text for text in rendered.values())
    # the dry-run shows the job that removes the secrets file once every job of the run has ended, however
    cleanup = rendered.pop("secrets-cleanup")
    assert f"--dependency=afterany:{':'.join('{' + name + '}' for name in rendered)}" in cleanup
    assert cleanup.rstrip().endswith(f"rm -f -- {ROOT}/runs/{{run_id}}/secrets.env")
    assert all("secrets.env" in text and "set +vx" in text for text in rendered.values())
    dry = launcher_env.launch(
        "toy.stage0", "--profile", "eos", "--dry-run", HF_TOKEN=SECRET, WANDB_API_KEY=SECRET, NEMOTRON_IMAGE="x"
    )
    assert dry.returncode == 0, dry.stderr
    assert SECRET not in dry.stdout + dry.stderr and "#SBATCH" in dry.stderr


# -------------------------------------------------------------------------- quoting under arbitrary input
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.lists(TEXT, max_size=5), value=TEXT, path=TEXT.filter(bool))
@example(
    args=["; touch $SENTINEL", "'", '"', "$(touch $SENTINEL)"], value='$(touch "$SENTINEL")', path="`touch $SENTINEL`"
)
@example(args=["a\nb"], value="x'\n touch $SENTINEL #", path="/tmp/p\ntouch $SENTINEL")
def test_arbitrary_strings_survive_rendering(args, value, path, tmp_path):
    """Overrides, paths and env values reach the step exactly; nothing in them runs (bash executes the script)."""
    sentinel = tmp_path / "executed"
    params = {
        "job_name": path, "command": ["python", "-m", "step", *args, "--output-dir", path],
        "log_file": f"{path}/%j.log", "env": {"VALUE": value, "P": path}, "workdir": str(tmp_path),
        "pythonpath": path, "attempts_file": str(tmp_path / "attempts.jsonl"),
    }  # fmt: skip
    if "\n" in path or "\r" in path:  # cannot be carried by a #SBATCH line: refused, never half-rendered
        with pytest.raises(SbatchParameterError, match="line break"):
            render_sbatch(**params)
        params.update(job_name="job", log_file="/tmp/%j.log")
    script = tmp_path / "job.sbatch"
    script.write_text(render_sbatch(**params))
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    env = {
        "PATH": f"{FAKE_BIN}:{os.environ['PATH']}", "SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "n1",
        "PROBE": str(tmp_path / "probe"), "SENTINEL": str(sentinel),
    }  # fmt: skip
    done = subprocess.run(["bash", str(script)], capture_output=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    printed = [part.decode() for part in (tmp_path / "probe").read_bytes().split(b"\0")[:-1]]
    assert printed[:2] == [value, path]  # the environment the step sees
    assert printed[-(len(args) + 5) :] == ["python", "-m", "step", *args, "--output-dir", path]  # its argv
    assert not sentinel.exists()


FAKE_BIN = Path(__file__).parent / "golden" / "fake_slurm_bin"


# -------------------------------------------------------------------------- Slurm states -> step states
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("7|PENDING|0:0|Priority", ("pending", "Priority")),
        ("7|PENDING|0:0|DependencyNeverSatisfied", ("cancelled", "its dependency can never be satisfied")),
        ("7|RUNNING|0:0|None", ("running", None)),
        ("7|COMPLETED|0:0|None", ("completed", None)),
        ("7|FAILED|3:0|NonZeroExitCode", ("failed", None)),
        ("7|CANCELLED by 0|0:0|None", ("cancelled", "cancelled")),
        ("7|TIMEOUT|0:15|None", ("timeout", "time limit reached")),
        ("7|PREEMPTED|0:15|None", ("preempted", "preempted")),
        ("7|NODE_FAIL|0:0|None", ("failed", "a node of the job failed")),
        ("7|OUT_OF_MEMORY|0:125|None", ("failed", "out of memory")),
        ("7|REQUEUED|0:0|BeginTime", ("pending", "requeued; BeginTime")),
    ],
)
def test_every_slurm_state_maps_to_a_clear_step_state(line, expected):
    from nemotron.launcher.executors.slurm_state import map_state, query_jobs

    calls = []

    def sacct(argv):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout=line + "\n", stderr="")

    found, accounting = query_jobs(["7"], sacct)
    state, reason = map_state(found["7"])
    assert (state, reason if expected[1] is None else reason[: len(expected[1])]) == expected
    assert accounting is True and len(calls) == 1


def test_accounting_disabled_falls_back_to_squeue_once_then_only_squeue():
    from nemotron.launcher.executors.slurm_state import query_jobs

    calls = []

    def scheduler(argv):
        calls.append(argv[0])
        if argv[0] == "sacct":
            return subprocess.CompletedProcess(argv, 0, stdout="", stderr="Slurm accounting storage is disabled\n")
        return subprocess.CompletedProcess(argv, 0, stdout="7|RUNNING|None\n8|PENDING|Dependency\n", stderr="")

    found, accounting = query_jobs(["7", "8"], scheduler)
    assert accounting is False and calls == ["sacct", "squeue"]
    assert found["8"].reason == "Dependency" and found["7"].slurm_state == "RUNNING"
    query_jobs(["7", "8"], scheduler, accounting)
    assert calls == ["sacct", "squeue", "squeue"]
