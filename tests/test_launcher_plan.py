"""Plans, profiles and run records in-process: resources, fingerprints, overrides -> the step's own CLI, inputs."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import pytest
import tyro
from hypothesis import given, settings
from hypothesis import strategies as st

from nemotron.launcher.claims import claim_outputs
from nemotron.launcher.executors.base import still_producing
from nemotron.launcher.overrides import cli_flags
from nemotron.launcher.plan import Plan, build_plan
from nemotron.launcher.profiles import ProfileError, expand, load_profile, profile_for
from nemotron.launcher.runs import create_run, find_run, read_run

CLAIM = functools.partial(claim_outputs, still_producing=still_producing)  # as the launch command claims


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("NEMOTRON_RECIPES", "toy=launcher_toy.recipe")
    monkeypatch.setenv("NEMOTRON_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("NEMOTRON_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("NEMOTRON_PROFILES", str(tmp_path / "profiles"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (tmp_path / "profiles").mkdir()
    return tmp_path


def _resources(plan: Plan) -> dict[str, dict]:
    return {job.step: job.resources.model_dump() for job in plan.jobs}


def test_resources_follow_recipe_then_profile_then_step_overrides(toy: Path) -> None:
    eos = _resources(build_plan("toy.stage0", profile_for("eos", None), "full"))
    assert eos["training"] | {"cpus_per_task": 16} == {
        "resource_class": "gpu",
        "distributed": True,
        "nodes": 8,
        "gpus_per_node": 8,
        "nproc_per_node": 8,
        "cpus_per_task": 16,
        "mem": "0",
        "time": "04:00:00",
        "partition": "batch",
    }
    assert (eos["evaluation"]["gpus_per_node"], eos["evaluation"]["nodes"]) == (1, 1)
    assert (eos["data_curation"]["gpus_per_node"], eos["data_curation"]["partition"]) == (0, "cpu")
    test = _resources(build_plan("toy.stage0", profile_for("slurm-test", None)))
    assert {r["partition"] for r in test.values()} == {"debug"}
    assert (test["training"]["gpus_per_node"], test["training"]["nproc_per_node"]) == (0, 1)
    (toy / "profiles" / "wide.toml").write_text(
        'extends = "local"\n[local]\nnproc_per_node = 4\n[steps.evaluation]\nnproc_per_node = 2\ntime = "10"\n'
    )
    wide = _resources(build_plan("toy.stage0", profile_for("wide", None)))
    assert (wide["training"]["nproc_per_node"], wide["data_curation"]["nproc_per_node"]) == (4, 1)
    assert (wide["evaluation"]["nproc_per_node"], wide["evaluation"]["time"]) == (2, "10")


def test_profiles_extend_override_and_expand(toy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (toy / "profiles" / "mine.toml").write_text(
        'extends = "eos"\nartifact_root = "${MY_ROOT:-${MY_BASE:-/base}/nemotron}"\n'
        '[slurm]\naccount = "me"\nsrun_args = []\n[env]\nEXTRA = "1"\n'
    )
    mine = load_profile("mine")
    assert mine.slurm.account == "me" and mine.slurm.partitions == {"gpu": "batch", "cpu": "cpu"}
    assert mine.slurm.srun_args == []  # lists replace, tables merge
    assert mine.env["EXTRA"] == "1" and mine.env["CUDA_DEVICE_MAX_CONNECTIONS"] == "1"
    assert mine.artifact_root == Path("/base/nemotron")
    monkeypatch.setenv("MY_BASE", "/other")
    assert load_profile("mine").artifact_root == Path("/other/nemotron")
    assert load_profile(str(toy / "profiles" / "mine.toml")).name == "mine"
    # a user profile named like a shipped one wins
    (toy / "profiles" / "local.toml").write_text('description = "mine"\n')
    assert load_profile("local").description == "mine"
    assert expand("~/x") == str(Path.home() / "x")
    with pytest.raises(ProfileError, match="UNSET_THING is not set"):
        expand("${UNSET_THING}/x")


def test_secrets_are_names_never_values(toy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_super_secret_value")
    monkeypatch.setenv("WANDB_API_KEY", "wandb_super_secret_value")
    profile = profile_for("eos", None)
    plan = build_plan("toy.stage0", profile, "full")
    snapshot = profile.model_dump(mode="json")
    run = create_run(plan.model_copy(update={"artifact_root": toy / "artifacts"}), snapshot, CLAIM)
    from nemotron.launcher.executors.local import LocalExecutor

    rendered = json.dumps(LocalExecutor().render(plan, profile))
    stored = (Path(run.run_dir) / "run.json").read_text()
    assert plan.secret_names == ["HF_TOKEN", "WANDB_API_KEY"] and "HF_TOKEN" in rendered
    for text in (rendered, stored, plan.model_dump_json()):
        assert "super_secret" not in text


def test_step_cli_has_only_non_default_values_and_round_trips_through_tyro(toy: Path) -> None:
    plan = build_plan(
        "toy.stage0",
        profile_for(None, None),
        "small",
        ["training.lr=2.5e-4", "training.tags=a,b c", "training.fail=false", "training.train_iters=None"],
    )
    training = plan.job("training")
    assert training.args[:2] == ["--scale", "small"]
    assert "--fail" not in training.args and "--train-iters" not in training.args  # defaults are left out
    from launcher_toy.stage0_toy.training import Config

    parsed = tyro.cli(Config, args=training.args)
    assert dataclasses.asdict(parsed) == {
        **dataclasses.asdict(Config()),
        "scale": "small",
        "lr": 2.5e-4,
        "tags": ["a", "b c"],
        "output_dir": training.output,
        "dataset_path": training.inputs["dataset"],
    }
    assert Plan.model_validate_json(plan.model_dump_json()) == plan


@settings(max_examples=40, deadline=None)
@given(
    note=st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30),
    num=st.integers(min_value=-(2**40), max_value=2**40),
)
def test_any_string_or_number_survives_the_step_cli(note: str, num: int) -> None:
    from launcher_toy.stage0_toy.data_curation import Config

    config = Config(note=note, num_examples=num)
    assert tyro.cli(Config, args=cli_flags(config)) == config


def test_fingerprints_follow_config_inputs_and_code(toy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = profile_for(None, None)

    def outputs(*overrides: str, scale: str = "tiny") -> dict[str, Path]:
        return {job.step: job.output for job in build_plan("toy.stage0", local, scale, overrides).jobs}

    base = outputs()
    assert outputs() == base  # deterministic: a DAG can be planned twice and land on the same paths
    assert base["training"].parent == toy / "artifacts" / "toy" / "stage0_toy" / "training"
    assert base["training"].name.startswith("tiny-")
    lr = outputs("training.lr=0.3")
    assert lr["data_curation"] == base["data_curation"]
    assert lr["training"] != base["training"] and lr["evaluation"] != base["evaluation"]
    upstream = outputs("data_curation.num_examples=3")
    assert all(upstream[step] != base[step] for step in base)
    assert outputs(scale="small")["training"].name.startswith("small-")
    import nemotron.launcher.plan as plan_module

    monkeypatch.setattr(plan_module, "source_hash", lambda package: f"edited {package}")  # any source edit
    assert all(path != base[step] for step, path in outputs().items())


def test_inputs_from_disk_overrides_and_the_registry(toy: Path) -> None:
    from launcher_toy.stage0_toy.data_curation import Config, main

    local = profile_for(None, None)
    with pytest.raises(Exception, match="needs a dataset artifact"):
        build_plan("toy.stage0.training", local)
    dataset = main(Config(output_dir=toy / "elsewhere" / "data"))
    given_path = build_plan("toy.stage0.training", local, overrides=[f"training.dataset_path={dataset.path}"])
    assert given_path.job("training").inputs["dataset"] == dataset.path and given_path.job("training").depends_on == []
    dataset.publish("toy-data", root=toy / "artifacts")
    tracked = build_plan("toy.stage0.training", local, overrides=["training.dataset_artifact=toy-data:latest"])
    assert tracked.job("training").inputs["dataset"] == dataset.path
    assert "--dataset-artifact" not in tracked.job("training").args  # resolved to a path at plan time
    # the newest complete Dataset at this scale under the step's directory is found without being named
    planned = build_plan("toy.stage0.data_curation", local).job("data_curation")
    main(Config(output_dir=planned.output))
    found = build_plan("toy.stage0.training", local).job("training")
    assert found.inputs["dataset"] == planned.output


def test_a_later_stage_is_compared_with_the_evaluation_of_the_checkpoint_it_starts_from(toy: Path) -> None:
    from launcher_toy.stage0_toy import data_curation, evaluation, training

    local = profile_for(None, None)
    whole = build_plan("toy", local)
    stage1_eval = whole.job("stage1_toy.evaluation")
    assert stage1_eval.inputs["baseline"] == whole.job("stage0_toy.evaluation").output
    assert "stage0_toy.evaluation" in stage1_eval.depends_on and "--baseline-path" in stage1_eval.args
    assert "baseline" not in whole.job("stage0_toy.evaluation").inputs  # the first stage has none

    # On disk: stage0 trained twice, only the older checkpoint evaluated. stage1 starts from the newest checkpoint,
    # so the older one's Results must not become its baseline (an optional input is left unset, not mismatched).
    step_dir = toy / "artifacts" / "toy" / "stage0_toy"
    data = data_curation.main(data_curation.Config(output_dir=step_dir / "data_curation" / "tiny-by-hand"))
    older, newer = (
        training.main(training.Config(dataset_path=Path(data.path), output_dir=step_dir / "training" / name))
        for name in ("tiny-older", "tiny-newer")
    )
    evaluation.main(evaluation.Config(checkpoint_path=Path(older.path), output_dir=step_dir / "evaluation" / "tiny-a"))
    stage1 = build_plan("toy.stage1", local)
    assert stage1.job("training").inputs["init_checkpoint"] == newer.path
    assert "baseline" not in stage1.job("evaluation").inputs
    assert "--baseline-path" not in stage1.job("evaluation").args
    scored_newer = evaluation.main(
        evaluation.Config(checkpoint_path=Path(newer.path), output_dir=step_dir / "evaluation" / "tiny-b")
    )
    # the older checkpoint evaluated again later: the newest Results overall, still not the baseline
    evaluation.main(evaluation.Config(checkpoint_path=Path(older.path), output_dir=step_dir / "evaluation" / "tiny-c"))
    assert build_plan("toy.stage1", local).job("evaluation").inputs["baseline"] == scored_newer.path


def test_run_records_are_found_by_id_directory_or_newest(toy: Path) -> None:
    plan = build_plan("toy.stage0", profile_for(None, None))
    first = create_run(plan, {}, CLAIM)
    other = build_plan("toy.stage0", profile_for(None, None), overrides=["data_curation.num_examples=11"])
    second = create_run(other, {}, CLAIM)  # other outputs: the same plan's are claimed by `first`
    assert first.run_id.startswith("toy-") and first.run_id != second.run_id
    with open(toy / "state" / "runs.jsonl", "ab") as index:  # lines the index skips, the newest naming `first`
        index.write(b'not json\n[1]\n"x"\n\xff\xfe\n{"run_id": "%s", "run_dir": 5}\n' % first.run_id.encode())
    assert find_run(None).run_id == second.run_id
    assert find_run(first.run_id).run_id == first.run_id
    assert find_run(str(first.run_dir)).run_id == first.run_id
    assert read_run(first.run_dir).plan == plan
    assert first.state == "planned" and set(first.steps) == {job.name for job in plan.jobs}


def test_an_executor_cannot_submit_other_text_than_its_dry_run() -> None:
    """``render`` and ``submit`` are the base class's: both take each job's text from the executor's ``prepare``."""
    from nemotron.launcher.executors.local import LocalExecutor

    with pytest.raises(TypeError, match="overrides submit: an executor implements prepare and schedule"):

        class Sneaky(LocalExecutor):
            def submit(self, plan, profile, run, detach=False):
                return run
