"""Resources follow the scale and the stage: the recipe's defaults per scale, the profile's per-scale and
stage-scoped ``[steps...]`` tables, as the CLI plans and shows them."""

from __future__ import annotations

import textwrap

import pytest
from launcher_env import LauncherEnv

from nemotron.declaration import GPU_TRAINING, Resources
from nemotron.launcher.plan import build_plan
from nemotron.launcher.profiles import ProfileError, load_profile

TRAININGS = ("stage0_pretrain.training", "stage1_instruction_tuning.training", "stage2_alignment.training")


def _hours(time: str) -> float:
    """A Slurm time (D-HH:MM:SS, HH:MM:SS, MM:SS or MM) in hours."""
    days, _, clock = time.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if len(parts) == 1:
        parts = [0, parts[0], 0]
    elif len(parts) == 2:
        parts = [0, *parts]
    return int(days or 0) * 24 + parts[0] + parts[1] / 60 + parts[2] / 3600


def _dry_run(env: LauncherEnv, *argv: str) -> dict[str, dict]:
    result = env.launch(*argv, "--dry-run", USER="alice")
    assert result.returncode == 0, result.stderr
    return {name: job["resources"] for name, job in result.document["jobs"].items()}


def test_eos_tiny_is_a_smoke_test_for_every_step_of_every_stage(launcher_env: LauncherEnv) -> None:
    jobs = _dry_run(launcher_env, "nano2", "--profile", "eos", "--scale", "tiny")
    assert set(TRAININGS) <= set(jobs) and len(jobs) == 9
    for name, r in jobs.items():
        assert r["nodes"] <= 1 and r["gpus_per_node"] <= 8 and _hours(r["time"]) <= 1, (name, r)
    assert all(jobs[name]["gpus_per_node"] == 8 for name in TRAININGS)  # the GPUs of one node, not fewer


def test_eos_full_keeps_the_full_allocation_and_sizes_later_stages_apart(launcher_env: LauncherEnv) -> None:
    jobs = _dry_run(launcher_env, "nano2", "--profile", "eos", "--scale", "full")
    stage0 = jobs["stage0_pretrain.training"]
    assert (stage0["nodes"], stage0["gpus_per_node"], stage0["nproc_per_node"], stage0["time"]) == (8, 8, 8, "04:00:00")
    for name in TRAININGS[1:]:
        assert (jobs[name]["nodes"], jobs[name]["gpus_per_node"], jobs[name]["time"]) == (2, 8, "04:00:00")
    assert (jobs["stage0_pretrain.evaluation"]["nodes"], jobs["stage0_pretrain.evaluation"]["time"]) == (1, "01:00:00")


def test_a_stage_scoped_table_changes_only_that_stage(launcher_env: LauncherEnv) -> None:
    profiles = launcher_env.profiles
    (profiles / "stage1wide.toml").write_text('extends = "slurm-test"\n[steps."stage1.training"]\nnodes = 2\n')
    (profiles / "byname.toml").write_text(
        textwrap.dedent(
            """
            extends = "slurm-test"
            [steps.training]
            nodes = 3
            [steps."stage1_toy.training"]
            nodes = 2
            time = "00:20:00"
            """
        )
    )
    base = _dry_run(launcher_env, "toy", "--profile", "slurm-test")
    wide = _dry_run(launcher_env, "toy", "--profile", "stage1wide")
    changed = {name for name in base if base[name] != wide[name]}
    assert changed == {"stage1_toy.training"}
    assert wide["stage1_toy.training"] == base["stage1_toy.training"] | {"nodes": 2}
    # the stage's table (its name, not only its alias) wins over the bare one, which sizes the other stages
    by_name = _dry_run(launcher_env, "toy", "--profile", "byname")
    assert (by_name["stage1_toy.training"]["nodes"], by_name["stage1_toy.training"]["time"]) == (2, "00:20:00")
    assert by_name["stage0_toy.training"]["nodes"] == 3


def test_a_scale_table_wins_over_the_values_for_every_scale(toy_profiles) -> None:
    (toy_profiles / "scaled.toml").write_text(
        textwrap.dedent(
            """
            extends = "slurm-test"
            [steps.training]
            nodes = 4
            scale.tiny = { nodes = 1, time = "00:10:00" }
            [steps."stage0.training"]
            nodes = 8
            scale.small = { nodes = 2 }
            """
        )
    )
    profile = load_profile("scaled")

    def training(stage: str, scale: str) -> tuple[int, str]:
        job = build_plan("toy", profile, scale).job(f"{stage}_toy.training")
        return job.resources.nodes, job.resources.time

    assert training("stage0", "tiny") == (1, "00:10:00")  # the bare tiny table beats the stage's all-scales 8
    assert training("stage0", "small") == (2, "00:30:00")
    assert training("stage0", "full") == (8, "00:30:00")
    assert training("stage1", "tiny") == (1, "00:10:00")
    assert training("stage1", "full") == (4, "00:30:00")


def test_both_spellings_of_one_stage_are_refused(toy_profiles) -> None:
    (toy_profiles / "twice.toml").write_text('[steps."stage0.training"]\nnodes = 2\n[steps."stage0_toy.training"]\n')
    with pytest.raises(ProfileError, match="are one step"):
        build_plan("toy.stage0", load_profile("twice"))


def test_the_recipe_declares_resources_per_scale() -> None:
    assert GPU_TRAINING.at("tiny").time == "00:30:00" and GPU_TRAINING.at("full").time == "04:00:00"
    assert GPU_TRAINING.at("full").scales == {} and GPU_TRAINING.at("tiny").gpus_per_node == 8
    with pytest.raises(ValueError, match="'huge' is not a scale"):
        Resources(scales={"huge": {"nodes": 2}})
    with pytest.raises(ValueError, match="may not vary by scale"):
        Resources(scales={"tiny": {"resource_class": "gpu"}})


def test_list_and_profiles_show_allocations_per_scale(launcher_env: LauncherEnv) -> None:
    listed = launcher_env.launch("list")
    assert listed.returncode == 0, listed.stderr
    declared = listed.document["recipes"]["nano2"]["stages"]["stage0_pretrain"]["steps"]["training"]["resources"]
    assert list(declared) == ["tiny", "small", "medium", "full"]
    assert (declared["tiny"]["time"], declared["full"]["time"], declared["full"]["resource_class"]) == (
        "00:30:00",
        "04:00:00",
        "gpu",
    )
    assert "tiny 1x8 GPU 00:30:00" in listed.stderr
    shown = launcher_env.launch("profiles", "eos", USER="alice")
    assert shown.returncode == 0, shown.stderr
    nano2 = shown.document["allocations"]["nano2"]
    nodes = {job: {scale: r["nodes"] for scale, r in nano2[job].items()} for job in TRAININGS}
    assert nodes["stage0_pretrain.training"] == {"tiny": 1, "small": 1, "medium": 4, "full": 8}
    assert nodes["stage2_alignment.training"] == {"tiny": 1, "small": 1, "medium": 1, "full": 2}
    assert nano2["stage0_pretrain.training"]["full"]["time"] == "04:00:00"
    assert "stage0.training" in shown.stderr and "full 8x8 GPU 04:00:00" in shown.stderr


@pytest.fixture
def toy_profiles(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.setenv("NEMOTRON_RECIPES", "toy=launcher_toy.recipe")
    monkeypatch.setenv("NEMOTRON_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("NEMOTRON_PROFILES", str(tmp_path / "profiles"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (tmp_path / "profiles").mkdir()
    return tmp_path / "profiles"
