"""The recipe author's kit: one declaration drives both the launcher's plan and the in-process stage chaining, for
stages of any number of steps; a declared input its Config cannot take is an error naming both; recipes never import
the launcher."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from launcher_env import TESTS, LauncherEnv
from launcher_toy import shapes
from launcher_toy.stage0_toy import data_curation, evaluation, training

from nemotron.declaration import DeclarationError, Input, Recipe, Stage, Step
from nemotron.stage import LaterStageOptions, StageOptions, chain_steps

SRC = Path(__file__).resolve().parents[1] / "src" / "nemotron"


@pytest.fixture
def kit_env(launcher_env: LauncherEnv) -> LauncherEnv:
    launcher_env.env["NEMOTRON_RECIPES"] += ",shapes=launcher_toy.shapes,broken=launcher_toy.broken"
    return launcher_env


def _artifact(path: str | Path) -> dict:
    return json.loads((Path(path) / "metadata.json").read_text())


def test_the_launcher_runs_a_two_step_and_a_four_step_stage_wired_by_the_declaration(kit_env: LauncherEnv) -> None:
    listed = kit_env.launch("list")
    assert listed.returncode == 0, listed.stderr
    assert list(listed.document["recipes"]["shapes"]["stages"]["four"]["steps"]) == [
        "data_curation",
        "training",
        "finetune",
        "evaluation",
    ]
    done = kit_env.launch("shapes", "--executor", "local", "data_curation.num_examples=4")
    assert done.returncode == 0, done.stderr
    steps = done.document["steps"]
    assert {name: s["state"] for name, s in steps.items()} == dict.fromkeys(
        [
            "two.data_curation",
            "two.training",
            "four.data_curation",
            "four.training",
            "four.finetune",
            "four.evaluation",
        ],
        "completed",
    )
    record = json.loads((Path(done.document["run_dir"]) / "run.json").read_text())
    depends = {job["name"]: sorted(job["depends_on"]) for job in record["plan"]["jobs"]}
    assert depends["four.training"] == ["four.data_curation", "two.training"]
    assert depends["four.finetune"] == ["four.data_curation", "four.training"]
    assert depends["four.evaluation"] == ["four.finetune"]
    # 4 examples seeded 1234: each training adds their sum to the checkpoint it starts from
    data_sum = sum(1234 + i for i in range(4))
    totals = {
        name: _artifact(steps[name]["artifact"]).get("total") for name in steps if "train" in name or "fine" in name
    }
    assert totals == {"two.training": data_sum, "four.training": 2 * data_sum, "four.finetune": 3 * data_sum}
    lineage = _artifact(steps["four.evaluation"]["artifact"])["lineage"]
    assert Path(lineage[0]["path"]) == Path(steps["four.finetune"]["artifact"])


@dataclass
class TwoStage(StageOptions):
    data: data_curation.Config = field(default_factory=data_curation.Config)
    train: training.Config = field(default_factory=training.Config)


@dataclass
class FourStage(LaterStageOptions):
    data: data_curation.Config = field(default_factory=lambda: data_curation.Config(num_examples=4))
    train: training.Config = field(default_factory=training.Config)
    finetune: training.Config = field(default_factory=training.Config)
    eval: evaluation.Config = field(default_factory=evaluation.Config)


def test_a_stage_module_chains_any_number_of_steps_from_the_same_declaration(tmp_path: Path) -> None:
    two = chain_steps(
        TwoStage(output_root=tmp_path / "two", data=data_curation.Config(num_examples=4)), shapes.RECIPE, "two"
    )
    assert list(two) == ["data_curation", "training"]
    four = chain_steps(
        FourStage(output_root=tmp_path / "four", init_checkpoint_path=Path(two["training"].path), seed=7),
        shapes.RECIPE,
        "four",
    )
    assert list(four) == ["data_curation", "training", "finetune", "evaluation"]
    first, data_sum = sum(1234 + i for i in range(4)), sum(7 + i for i in range(4))  # the stage's seed reaches steps
    assert [four[s].total for s in ("training", "finetune")] == [first + data_sum, first + 2 * data_sum]
    assert Path(four["finetune"].path) == tmp_path / "four" / "finetune"
    assert four["evaluation"].lineage[0].path == four["finetune"].path


def test_a_declared_input_the_config_cannot_take_is_one_line_naming_both(kit_env: LauncherEnv, tmp_path: Path) -> None:
    done = kit_env.launch("broken", "--executor", "local", "--dry-run")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "input 'tokenizer'" in done.stderr and "no tokenizer_path field" in done.stderr
    assert "launcher_toy.stage0_toy.evaluation.Config" in done.stderr
    assert not kit_env.files()

    # the stage module's chaining refuses it too, before its first step writes anything
    declared = Stage(
        "one",
        "s1",
        (
            Step("data_curation", data_curation.__name__, "Dataset", option="data"),
            Step("evaluation", evaluation.__name__, "Results", (Input("tokenizer", "data_curation"),), option="eval"),
        ),
    )
    with pytest.raises(DeclarationError, match="one.evaluation declares input 'tokenizer'.*no tokenizer_path field"):
        chain_steps(EvalStage(output_root=tmp_path / "one"), Recipe("one", "p", (declared,)), "one")
    assert not (tmp_path / "one").exists()


@dataclass
class EvalStage(StageOptions):
    data: data_curation.Config = field(default_factory=data_curation.Config)
    eval: evaluation.Config = field(default_factory=evaluation.Config)


def test_a_step_may_only_take_inputs_from_earlier_steps_of_its_stage() -> None:
    training = Step("training", "m.training", "Checkpoint", (Input("dataset", "data_curation"),))
    with pytest.raises(ValueError, match="training takes 'dataset' from data_curation, which is not an earlier step"):
        Stage("bad", "b", (training, Step("data_curation", "m.data_curation", "Dataset")))
    assert Stage("good", "g", (Step("data_curation", "m.data_curation", "Dataset"), training)).step("training")


def test_no_recipe_module_imports_the_launcher() -> None:
    offenders = []
    for path in [*(SRC / "recipes").rglob("*.py"), *(TESTS / "launcher_toy").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path}: {n}" for n in names if n.startswith("nemotron.launcher")]
    assert not offenders


def test_every_step_of_every_recipe_offers_what_the_launcher_reads() -> None:
    import importlib

    from nemotron.launcher.targets import builtin_recipes, load_recipe

    assert {"nano2", "nemotron4"} <= set(builtin_recipes())
    for name in builtin_recipes():
        for stage in load_recipe(name).stages:
            for step in stage.steps:
                module = importlib.import_module(step.module)
                missing = [n for n in ("Config", "main", "validate") if not callable(getattr(module, n, None))]
                assert not missing, f"{step.module} lacks {missing}"


def test_every_step_module_of_the_shipped_recipes_is_a_thin_binding_of_the_kit() -> None:
    """The kit holds the work (pretraining, SFT and DPO blocks): a recipe's step module states its Config and what it
    chooses (presets, models) in a few lines, so a second recipe gets a stage without copying one."""
    from nemotron.launcher.targets import builtin_recipes, load_recipe

    too_long = {}
    for name in builtin_recipes():
        recipe = load_recipe(name)
        assert [stage.alias for stage in recipe.stages] == ["stage0", "stage1", "stage2"], name
        for stage in recipe.stages:
            for step in stage.steps:
                path = SRC.parent / Path(*step.module.split(".")).with_suffix(".py")
                if (lines := len(path.read_text().splitlines())) > 45:
                    too_long[step.module] = lines
    assert too_long == {}
