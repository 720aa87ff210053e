"""The nemotron-launch CLI as people use it: real subprocesses, one JSON document on stdout, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from launcher_env import LauncherEnv


def _write_artifact(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "metadata.json").write_text(text)
    return directory


def _profile(env: LauncherEnv, name: str, text: str) -> None:
    (env.profiles / f"{name}.toml").write_text(textwrap.dedent(text))


def _bad_inputs(env: LauncherEnv, tmp: Path) -> list[tuple[list[str], str, dict[str, str]]]:
    """(argv, a fragment the one-line error must contain, extra env) for each bad input."""
    corrupt = _write_artifact(tmp / "corrupt", '{"path": "x", "type": ')
    results = _write_artifact(
        tmp / "results", json.dumps({"path": str(tmp / "results"), "type": "Results", "score": 1.0})
    )
    _profile(env, "typo", '[slurm]\nacount = "x"\n')
    _profile(env, "badtype", 'executor = "slurm"\n[slurm]\nnodes = "many"\n')
    _profile(env, "loop-a", 'extends = "loop-b"\n')
    _profile(env, "loop-b", 'extends = "loop-a"\n')
    _profile(env, "secretive", 'secrets = ["NEMOTRON_TEST_NOT_SET"]\n')
    _profile(env, "badstep", "[steps.trainin]\nnodes = 2\n")
    _profile(env, "unsetvar", 'artifact_root = "${NEMOTRON_TEST_NOT_SET}/x"\n')
    return [
        (["nano3"], "unknown target 'nano3'", {}),
        (["toy.stage9"], "valid targets are", {}),
        (["toy", "--profile", "nope"], "unknown profile 'nope'", {}),
        (["toy", "--profile", "typo"], "did you mean 'slurm.account'", {}),
        (["toy", "--profile", "badtype"], "slurm.nodes", {}),
        (["toy", "--profile", "loop-a"], "extends itself", {}),
        (["toy", "--profile", "badstep"], "did you mean 'training'", {}),
        (["toy", "--profile", "unsetvar"], "NEMOTRON_TEST_NOT_SET is not set", {}),
        (["toy", "--executor", "kubernetes"], "unknown executor 'kubernetes'", {}),
        (["toy", "--executor", "slurm"], "needs a cluster profile", {}),
        (["toy", "--scale", "huge"], "unknown scale 'huge'", {}),
        (["toy.stage0", "training.lrr=1"], "did you mean lr", {}),
        (["toy.stage0", "training.lr=fast"], "expected float", {}),
        (["toy.stage0", "training.lr=-1"], "lr must be positive", {}),
        (["toy.stage0", "training.lr"], "expected STEP.FIELD=VALUE", {}),
        (["toy.stage0.data_curation", "training.lr=1"], "names no step of target", {}),
        (["toy.stage0", "training.output_dir=/x"], "output_dir is planned", {}),
        (["toy.stage0", "data_curation.num_examples=1.5"], "expected int", {}),
        (["toy.stage0.training"], "needs a dataset artifact", {}),
        (["toy.stage0.training", f"training.dataset_path={corrupt}"], "corrupt", {}),
        (["toy.stage0.training", f"training.dataset_path={results}"], "not the Dataset", {}),
        (["toy.stage0.training", f"training.dataset_path={tmp / 'absent'}"], "does not exist", {}),
        # a step's own value checks run at plan time, not after the upstream jobs ran
        (["nano2.stage0", "evaluation.limit=0"], "--limit 0: must be a positive number", {}),
        (["nano2.stage0", "training.warmup_iters=-1"], "--warmup-iters -1: must be in [0, train_iters=300)", {}),
        (["nano2", "stage2_alignment.training.beta=0"], "--beta 0.0: must be positive", {}),
        (["toy.stage0.training", "training.dataset_artifact=nothing:latest"], "no tracked artifact", {}),
        (["toy", "--artifact-root", "/dev/null/artifacts"], "not a directory", {}),
        (["toy", "--profile", "secretive"], "secret NEMOTRON_TEST_NOT_SET is not set", {}),
        (["toy", "--bogus-flag"], "--bogus-flag", {}),
        (["status", "toy-20000101-000000-ffff"], "unknown run", {}),
        (["logs"], "run", {}),
        (["profiles", "nope"], "unknown profile", {}),
    ]


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(launcher_env: LauncherEnv, tmp_path: Path) -> None:
    cases = _bad_inputs(launcher_env, tmp_path)
    assert len(cases) >= 15
    for argv, fragment, extra_env in cases:
        result = launcher_env.launch(*argv, **extra_env)
        where = f"{argv}: rc={result.returncode} stderr={result.stderr!r}"
        assert result.returncode == 2, where
        assert result.stdout == "", where
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), where
        assert fragment in lines[0], where
        assert "Traceback" not in result.stderr, where
        assert launcher_env.files() == [], f"{argv} wrote {launcher_env.files()}"


def test_help_lists_subcommands(launcher_env: LauncherEnv) -> None:
    result = launcher_env.launch("--help")
    assert result.returncode == 0
    for name in ("run", "status", "logs", "cancel", "list", "profiles", "build"):
        assert name in result.stdout


def test_list_names_every_target(launcher_env: LauncherEnv) -> None:
    result = launcher_env.launch("list")
    assert result.returncode == 0, result.stderr
    document = result.document
    assert {"nano2", "nano2.stage0", "nano2.stage0_pretrain", "nano2.stage0.training"} <= set(document["targets"])
    steps = document["recipes"]["nano2"]["stages"]["stage0_pretrain"]["steps"]
    assert list(steps) == ["data_curation", "training", "evaluation"]
    assert steps["training"]["inputs"] == {"dataset": "stage0_pretrain.data_curation"}
    assert steps["training"]["resources"]["resource_class"] == "gpu"


def test_profiles_list_and_show_resolved(launcher_env: LauncherEnv) -> None:
    listed = launcher_env.launch("profiles").document["profiles"]
    assert {"local", "docker", "eos", "slurm-test"} <= set(listed)
    docker = launcher_env.launch("profiles", "docker").document
    assert docker["executor"] == "docker" and docker["extends"] == "local"
    assert docker["env"] == {"PYTHONUNBUFFERED": "1"}  # inherited from local
    eos = launcher_env.launch("profiles", "eos", USER="alice").document
    assert eos["slurm"]["partitions"] == {"gpu": "batch", "cpu": "cpu"}
    assert eos["steps"]["training"]["nodes"] == 8
    assert eos["artifact_root"] == str(launcher_env.root)  # ${NEMOTRON_ARTIFACT_ROOT:-...} took the variable


def test_dry_run_prints_plan_json_and_runs_nothing(launcher_env: LauncherEnv) -> None:
    result = launcher_env.launch("toy", "--dry-run", "training.lr=0.5")
    assert result.returncode == 0, result.stderr
    document = result.document
    assert document["dry_run"] is True
    assert list(document["jobs"]) == [
        f"stage{s}_toy.{step}" for s in (0, 1) for step in ("data_curation", "training", "evaluation")
    ]
    training = document["jobs"]["stage1_toy.training"]
    assert training["depends_on"] == ["stage1_toy.data_curation", "stage0_toy.training"]
    assert "--lr 0.5" in training["command"] and "--init-checkpoint-path" in training["command"]
    assert set(document["rendered"]) == set(document["jobs"])  # the local executor renders every job
    assert "python -m launcher_toy.stage0_toy.training" in result.stderr
    assert launcher_env.files() == []


def test_importing_cli_and_rendering_a_plan_stays_light(launcher_env: LauncherEnv) -> None:
    code = textwrap.dedent(
        """
        import sys
        import nemotron.launcher.cli
        from nemotron.launcher.executors.base import get_executor
        from nemotron.launcher.plan import build_plan, describe
        from nemotron.launcher.profiles import profile_for
        for target, profile in (("nano2", "eos"), ("nano2.stage0", "local"), ("toy.stage0", "local")):
            plan = build_plan(target, profile_for(profile, None), "tiny", ["training.lr=0.5"])
            describe(plan)
        get_executor("local").render(plan, profile_for("local", None))
        heavy = sorted(m for m in ("torch", "megatron", "lm_eval", "pyarrow", "tokenizers", "matplotlib")
                       if m in sys.modules)
        print(",".join(heavy))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=launcher_env.env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"heavy modules imported: {done.stdout.strip()}"


@pytest.mark.parametrize("target", ["nano2", "nano2.stage0"])
def test_nano2_eos_dry_run_without_a_cluster(launcher_env: LauncherEnv, target: str) -> None:
    result = launcher_env.launch(target, "--profile", "eos", "--dry-run", "--scale", "full", USER="alice")
    assert result.returncode == 0, result.stderr
    document = result.document
    assert document["executor"] == "slurm"
    training = document["jobs"]["stage0_pretrain.training"]
    assert training["resources"]["nodes"] == 8 and training["resources"]["gpus_per_node"] == 8
    assert training["resources"]["nproc_per_node"] == 8 and training["resources"]["partition"] == "batch"
    assert document["jobs"]["stage0_pretrain.data_curation"]["resources"]["partition"] == "cpu"
    assert training["command"].startswith("python -m nemotron.recipes.nano2.stage0_pretrain.training --scale full")
    assert training["depends_on"] == ["stage0_pretrain.data_curation"]
