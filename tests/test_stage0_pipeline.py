"""nano2 stage0 end to end, as people run it: the stage module, the steps as files in a real shell pipe, the eval step.

One tiny stage run (session-scoped) serves every assertion on learning; the pipe test trains for a few steps only.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from stage_runs import assert_steps_reported_progress

STAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "nemotron" / "recipes" / "nano2" / "stage0_pretrain"
MODULE = "nemotron.recipes.nano2.stage0_pretrain"


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "NEMOTRON_ARTIFACT_ROOT": str(tmp / "artifact_root")}


def _run(args: list[str], tmp: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=_env(tmp), timeout=1800, **kwargs)


@pytest.fixture(scope="session")
def tiny_stage(stage0_tiny_run):
    """The stage at --scale tiny, run as ``python -m nemotron.recipes.nano2.stage0_pretrain`` (shared with stage1)."""
    return stage0_tiny_run


@pytest.mark.slow
def test_stage_prints_three_wired_artifacts(tiny_stage):
    tmp, artifacts = tiny_stage
    assert list(artifacts) == ["data_curation", "training", "evaluation"]
    data, train, results = (artifacts[k] for k in artifacts)
    assert [a["type"] for a in (data, train, results)] == ["Dataset", "Checkpoint", "Results"]
    assert data["path"] == str(tmp / "run" / "data_curation")
    assert train["dataset_path"] == data["path"]
    # The published layer kinds on every machine: Mamba-2 layers trained (in plain PyTorch on CPU), none replaced.
    assert train["model"]["hybrid_override_pattern"] == "M-*-" and train["substitutions"] == []
    assert results["checkpoint_path"] == train["path"] and results["dataset_path"] == data["path"]
    assert [(e["type"], e["path"]) for e in results["lineage"]] == [
        ("Checkpoint", train["path"]),
        ("Dataset", data["path"]),
    ]
    for artifact in (data, train, results):  # top-level scale/seed reached every step
        assert (artifact["config"]["scale"], artifact["config"]["seed"]) == ("tiny", 1234)
        assert (Path(artifact["path"]) / "metadata.json").is_file()


@pytest.mark.slow
def test_every_step_reports_its_progress_in_its_output_dir(tiny_stage):
    from nemotron.heartbeat import PROGRESS_FILE, read_progress

    _, artifacts = tiny_stage
    assert_steps_reported_progress(artifacts)
    tasks = artifacts["evaluation"]["config"]["tasks"]  # evaluation counts tasks
    assert read_progress(Path(artifacts["evaluation"]["path"]) / PROGRESS_FILE)["total"] == len(tasks)


@pytest.mark.slow
def test_tiny_stage_learns_held_out_facts(tiny_stage):
    _, artifacts = tiny_stage
    metrics = artifacts["evaluation"]["metrics"]
    chance = metrics["facts_mc/chance_acc"]
    assert chance == pytest.approx(0.25)
    # The held-out phrasing was never trained on: only learned facts beat guessing by this margin.
    assert metrics["facts_mc/acc"] >= chance + 0.15, metrics
    assert 0.0 <= metrics["facts_gen/exact_match"] <= 1.0
    # Token perplexity of the validation documents, through lm-eval, agrees with training's own validation loss.
    valid_loss = artifacts["training"]["metrics"]["valid_loss"]
    assert metrics["valid_perplexity"] == pytest.approx(math.exp(valid_loss), rel=0.35)
    assert set(artifacts["evaluation"]["tasks"]) == {"facts_mc", "facts_gen", "valid_ppl"}


@pytest.mark.slow
def test_steps_as_files_in_a_real_shell_pipe(tmp_path):
    out = tmp_path / "pipe"
    pipeline = (
        f"{sys.executable} {STAGE_DIR / 'data_curation.py'} --scale tiny --output-dir {out / 'data'}"
        f" | {sys.executable} {STAGE_DIR / 'training.py'} --scale tiny --train-iters 3 --warmup-iters 1"
        f" --output-dir {out / 'train'}"
        f" | {sys.executable} {STAGE_DIR / 'evaluation.py'} --scale tiny --limit 4 --output-dir {out / 'eval'}"
    )
    done = _run(["bash", "-o", "pipefail", "-c", pipeline], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (results,) = json.loads(done.stdout)["artifacts"].values()
    assert results["type"] == "Results" and results["checkpoint_path"] == str(out / "train")
    assert results["num_samples"] == {"facts_mc": 4, "facts_gen": 4, "valid_ppl": 4}
    assert json.loads((out / "eval" / "metadata.json").read_text())["metrics"] == results["metrics"]


@pytest.mark.slow
def test_evaluation_module_on_a_tracked_checkpoint_with_chosen_tasks(tiny_stage):
    tmp, artifacts = tiny_stage
    from nemotron.training.artifacts import Checkpoint

    Checkpoint.load(artifacts["training"]["path"]).publish("stage0-ckpt", root=tmp / "artifact_root")
    done = _run(
        [sys.executable, "-m", f"{MODULE}.evaluation", "--checkpoint-artifact", "stage0-ckpt:latest",
         "--tasks", "facts_mc", "--limit", "6", "--batch-size", "2", "--output-dir", str(tmp / "eval_mc")],
        tmp,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)["artifacts"]["evaluation"]
    assert set(results["tasks"]) == {"facts_mc"} and results["num_samples"] == {"facts_mc": 6}
    assert results["lineage"][0]["name"] == "stage0-ckpt" and results["lineage"][0]["version"] == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint-path", "/nonexistent/ckpt"], "no artifact at /nonexistent/ckpt"),
        (["--tasks", "hellaswag"], "task 'hellaswag' needs dataset 'Rowan/hellaswag'"),
        (["--tasks", "facts_mc", "facts_mc"], "task 'facts_mc' is listed twice"),
        (["--limit", "0"], "--limit 0: must be a positive number"),
    ],
)
def test_evaluation_bad_input_is_one_line_exit_2(tiny_stage, tmp_path, args, message):
    _, artifacts = tiny_stage
    base = ["--checkpoint-path", artifacts["training"]["path"], "--output-dir", str(tmp_path / "eval")]
    done = _run([sys.executable, str(STAGE_DIR / "evaluation.py"), *base, *args], tmp_path, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines()[-1].startswith("error: ") and message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "eval" / "metadata.json").exists()


def test_a_bad_value_of_a_later_step_fails_before_the_first_step_runs(tmp_path):
    args = ["--train.train-iters", "20", "--train.warmup-iters", "20", "--output-root", str(tmp_path / "run")]
    done = _run([sys.executable, "-m", MODULE, *args], tmp_path, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == ["error: --warmup-iters 20: must be in [0, train_iters=20)"]
    assert not (tmp_path / "run").exists()  # data_curation never started


def test_stage_help_shows_nested_step_configs(tmp_path):
    done = _run([sys.executable, "-m", MODULE, "--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    for flag in ("--scale", "--seed", "--output-root", "--data.", "--train.", "--eval.tasks"):
        assert flag in done.stdout


def test_stage_config_propagates_scale_and_seed_unless_a_step_sets_its_own(tmp_path):
    from nemotron.recipes.nano2.stage0_pretrain import evaluation
    from nemotron.recipes.nano2.stage0_pretrain.__main__ import StageConfig
    from nemotron.stage import step_config

    stage = StageConfig(scale="small", seed=7, output_root=tmp_path, eval=evaluation.Config(seed=5))
    cfg = step_config(stage, stage.eval, "evaluation", checkpoint_path=tmp_path / "ckpt")
    assert (cfg.scale, cfg.seed, cfg.output_dir, cfg.checkpoint_path) == (
        "small",
        5,
        tmp_path.resolve() / "evaluation",
        tmp_path / "ckpt",
    )
    data_cfg = step_config(stage, stage.data, "data_curation")
    assert (data_cfg.scale, data_cfg.seed) == ("small", 7)


def test_stage_package_import_is_light():
    code = (
        "import sys, nemotron.recipes.nano2.stage0_pretrain as s, nemotron.recipes.nano2.stage0_pretrain.evaluation;"
        "heavy = {'torch', 'lm_eval', 'megatron', 'pyarrow', 'tokenizers'} & {m.split('.')[0] for m in sys.modules};"
        "assert not heavy, heavy; print(s.STEPS)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "data_curation" in done.stdout


def _readme_commands() -> list[list[str]]:
    """Every ``uv run python ...`` command in the recipe README's bash blocks, as argv lists (pipes split)."""
    import re
    import shlex

    readme = (STAGE_DIR.parent / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            for segment in line.split("#")[0].split("|"):
                argv = shlex.split(segment)
                if argv[:3] == ["uv", "run", "python"]:
                    commands.append(argv[3:])
    return commands


def _accepts(config_cls: type, flag: str) -> bool:
    """Whether tyro's CLI for ``config_cls`` has ``--flag`` (``--a.b-c`` walks nested dataclass fields)."""
    import dataclasses
    import typing

    cls = config_cls
    *parents, leaf = flag.removeprefix("--").split(".")
    for parent in parents:
        hints = typing.get_type_hints(cls)
        if parent not in hints or not dataclasses.is_dataclass(hints[parent]):
            return False
        cls = hints[parent]
    return leaf.replace("-", "_") in {f.name for f in dataclasses.fields(cls)}


def test_readme_commands_name_real_steps_and_options():
    import importlib

    commands = _readme_commands()
    assert len(commands) >= 10
    for argv in commands:
        if argv[0] == "-m":
            module = importlib.import_module(argv[1])
            if not hasattr(module, "Config"):  # a stage package: its CLI is the package's __main__
                module = importlib.import_module(f"{argv[1]}.__main__")
            flags = argv[2:]
        else:
            path = Path(__file__).resolve().parents[1] / argv[0]
            assert path.is_file(), argv
            module = importlib.import_module(f"{MODULE.rsplit('.', 1)[0]}.{path.parent.name}.{path.stem}")
            flags = argv[1:]
        config_cls = getattr(module, "StageConfig", None) or module.Config
        for flag in (f for f in flags if f.startswith("--")):
            assert _accepts(config_cls, flag), f"{' '.join(argv)}: {flag} is not an option of {config_cls.__name__}"
