"""One validation per step: the planner runs each step's own ``validate`` with the job's placement and what its inputs
will carry, so a plan that builds is a set of jobs that start, and a step refuses at start exactly what the planner
refuses."""

from __future__ import annotations

import functools
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tyro

from nemotron.errors import UserError
from nemotron.launcher.plan import build_plan, job_placement
from nemotron.launcher.profiles import REPO_PROFILES, load_profile
from nemotron.launcher.targets import all_targets, load_recipe
from nemotron.scale import SCALES
from nemotron.step import Placement

SHIPPED_PROFILES = sorted(p.stem for p in REPO_PROFILES.glob("*.toml"))
TRAINING = "nemotron.recipes.nano2.stage0_pretrain.training"


@pytest.fixture
def planning_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Only the shipped recipes and profiles, an empty artifact root, no torchrun/srun world of this process."""
    for name in ("NEMOTRON_RECIPES", "NEMOTRON_PROFILES", "RANK", "WORLD_SIZE", "SLURM_JOB_ID", "NEMOTRON_IMAGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NEMOTRON_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("USER", "alice")
    return tmp_path


@functools.cache
def _started_config(module_name: str, args: tuple[str, ...]):
    """The Config the job's own command line gives the step at start (as ``run_step`` parses it)."""
    return tyro.cli(importlib.import_module(module_name).Config, args=list(args))


def test_every_target_scale_and_shipped_profile_plans_only_jobs_that_start(planning_env: Path) -> None:
    assert {"eos", "slurm-test", "local", "docker"} <= set(SHIPPED_PROFILES)
    targets = all_targets()
    recipes = {"nano2", "nemotron4"}
    assert len(targets) >= 27 and {t.split(".")[0] for t in targets} == recipes
    step_names = {f"{st.name}.{sp.name}" for r in recipes for st in load_recipe(r).stages for sp in st.steps}
    started = time.perf_counter()
    planned = refused = validated = 0
    for profile_name in SHIPPED_PROFILES:
        profile = load_profile(profile_name)
        for scale in SCALES:
            for target in targets:
                try:
                    plan = build_plan(target, profile, scale)
                except UserError as err:
                    # e.g. a later step alone, whose inputs are not on disk: exit 2, one line naming the step
                    message = str(err)
                    assert "\n" not in message and any(name in message for name in step_names), (target, message)
                    refused += 1
                    continue
                planned += 1
                for job in plan.jobs:
                    module = importlib.import_module(job.module)
                    config = _started_config(job.module, tuple(job.args))
                    # the function main() calls first, with what the plan knows the job's inputs carry
                    module.validate(config, job_placement(job.resources), frozenset(job.carried))
                    validated += 1
    elapsed = time.perf_counter() - started
    print(f"{planned} plans, {refused} refused, {validated} jobs validated in {elapsed:.2f}s")
    assert planned >= len(SHIPPED_PROFILES) * len(SCALES) * 4  # the recipe and each stage at least start to finish
    assert validated > planned


class _Validated(Exception):
    pass


def test_every_nano2_step_has_one_validation_its_main_calls_first(
    planning_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for stage in load_recipe("nano2").stages:
        for step in stage.steps:
            module = importlib.import_module(step.module)
            # a step built on a building block (its Config from nemotron.data.pretraining, ...) reaches the block's
            # validate from its main: the step's own validate is that one, or binds the recipe's tables to it
            block = importlib.import_module(module.Config.__module__)
            seen: list[tuple[object, Placement, frozenset[str]]] = []

            def validate(config, placement, carried, *recipe_tables, seen=seen):
                seen.append((config, placement, carried))
                raise _Validated

            for owner in {module, block}:
                monkeypatch.setattr(owner, "validate", validate)
            config = module.Config()
            with pytest.raises(_Validated):  # before any input is loaded (no input given: nothing carried in)
                module.main(config)
            assert seen == [(config, Placement(world_size=2), frozenset())], step.module


def _three_ranks(planning_env: Path, monkeypatch: pytest.MonkeyPatch):
    profiles = planning_env / "profiles"
    profiles.mkdir()
    (profiles / "three-ranks.toml").write_text('extends = "local"\n[local]\nnproc_per_node = 3\n')
    monkeypatch.setenv("NEMOTRON_PROFILES", str(profiles))
    return load_profile("three-ranks")


def test_a_step_started_on_ranks_its_batch_does_not_split_over_fails_as_the_planner_said(
    planning_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UserError) as planned:
        build_plan("nano2.stage0", _three_ranks(planning_env, monkeypatch), "tiny")
    assert str(planned.value).startswith("invalid config for stage0_pretrain.training: --global-batch-size 16:")

    training = importlib.import_module(TRAINING)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")  # what torchrun --nproc-per-node 3 gives each rank
    with pytest.raises(UserError) as started:
        training.main(training.Config(dataset_path=planning_env / "not-yet"))  # refused before any input is read
    assert str(planned.value) == f"invalid config for stage0_pretrain.training: {started.value}"


def test_srun_tasks_are_the_world_a_step_validates_against(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_NTASKS", "16")
    assert Placement.from_environment().world_size == 1  # the batch script itself: one process, no peers
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "16")
    assert Placement.from_environment().world_size == 16


def test_the_step_cli_refuses_at_start_in_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "RANK": "0", "WORLD_SIZE": "3", "NEMOTRON_ARTIFACT_ROOT": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", TRAINING, "--scale", "tiny"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "error: --global-batch-size 16: must be a multiple of the data-parallel size 3 "
        "(ranks / tensor_parallel x pipeline_parallel)"
    ]


def test_an_input_already_on_disk_of_another_type_is_refused_at_plan_time(planning_env: Path) -> None:
    results = planning_env / "results"
    results.mkdir()
    (results / "metadata.json").write_text(f'{{"path": "{results}", "type": "Results"}}')
    training = importlib.import_module(TRAINING)
    with pytest.raises(UserError, match=r"--init-checkpoint-path .*results: holds a Results artifact, not the Checkp"):
        training.validate(training.Config(init_checkpoint_path=results), Placement(), frozenset())


def test_a_step_refuses_at_start_what_its_inputs_lack_as_the_planner_said(planning_env: Path) -> None:
    """What the inputs carry is read at start from their metadata and lineage (a checkpoint trained on a user's corpus
    carries no held-out facts) and given to the same ``validate`` the planner calls."""
    from nemotron.artifact import LineageEntry
    from nemotron.training.artifacts import Checkpoint

    corpus = planning_env / "user-corpus"
    corpus.mkdir()
    (corpus / "metadata.json").write_text(json.dumps({"path": str(corpus), "type": "Dataset", "provides": []}))
    trained = planning_env / "trained"
    Checkpoint(
        path=trained,
        num_steps=1,
        training_loss=1.0,
        checkpoint_path=trained / "checkpoints",
        tokens_seen=1,
        model={},
        world_size=1,
        tokenizer_path=corpus / "tokenizer.json",
        dataset_path=corpus,
        lineage=[LineageEntry(type="Dataset", path=corpus, step="data_curation")],
    ).save()
    overrides = [f"evaluation.checkpoint_path={trained}", "evaluation.tasks=valid_ppl,facts_mc"]
    with pytest.raises(UserError) as planned:
        build_plan("nano2.stage0.evaluation", load_profile("local"), "tiny", overrides)

    evaluation = importlib.import_module("nemotron.recipes.nano2.stage0_pretrain.evaluation")
    with pytest.raises(UserError) as started:
        evaluation.main(evaluation.Config(checkpoint_path=trained, tasks=("valid_ppl", "facts_mc")))
    assert "--tasks facts_mc" in str(started.value)
    assert str(planned.value) == f"invalid config for stage0_pretrain.evaluation: {started.value}"
