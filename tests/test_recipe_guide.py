"""docs/adding-a-recipe.md under test: every ``bash`` block runs, in order, in a copy of this checkout (so
``new-recipe`` writes there), and what each block claims is checked; every ``python`` excerpt is the named file's
own text; the README template shown is the one ``new-recipe`` writes. Also ``new-recipe``'s refusals."""

from __future__ import annotations

import json
import os
import re
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "adding-a-recipe.md"
TEMPLATES = REPO / "src" / "nemotron" / "launcher"
# `uv run X` in the guide is X in the environment running the tests (the checkout copy first on PYTHONPATH)
SHELL_PRELUDE = 'set -euo pipefail\nuv() { if [ "$1" = run ]; then shift; fi; "$@"; }\n'


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of what a contributor edits (sources, containers, profiles, docs) to scaffold a recipe into."""
    root = tmp_path_factory.mktemp("checkout")
    for name in ("src", "containers", "cluster_profiles", "docs"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, root / name)
    return root


def _env(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(root / "src"),
        "NEMOTRON_ARTIFACT_ROOT": str(root / "artifacts"),
        "NEMOTRON_STATE_DIR": str(root / "state"),
        "XDG_CONFIG_HOME": str(root / "config"),
        "HOME": str(root / "home"),
    }


def _run_block(root: Path, block: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        ["bash", "-c", SHELL_PRELUDE + block],
        cwd=root,
        env=_env(root),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"{block}\n{done.stderr[-3000:]}"
    return done


def _metadata(path: Path) -> dict:
    return json.loads((path / "metadata.json").read_text())


@pytest.mark.slow
def test_every_command_block_of_the_guide_runs(checkout: Path) -> None:
    blocks = _blocks("bash")
    assert len(blocks) == 5, "the checks below follow the guide's blocks one by one"
    scaffold, steps, piped, stage, launcher = blocks

    done = _run_block(checkout, scaffold)
    recipe = checkout / "src" / "nemotron" / "recipes" / "demo"
    assert (recipe / "recipe.py").is_file() and (checkout / "containers" / "demo" / "README.md").is_file()
    listed = json.loads(done.stdout.splitlines()[-1])  # `list`'s document (after new-recipe's)
    assert list(listed["recipes"]["demo"]["stages"]["stage0_pretrain"]["steps"]) == [
        "data_curation",
        "training",
        "evaluation",
    ]
    assert not (REPO / "src" / "nemotron" / "recipes" / "demo").exists()  # written into the copy only

    _run_block(checkout, steps)
    runs = checkout / "runs" / "demo"
    assert _metadata(runs / "training")["num_steps"] == 20
    assert Path(_metadata(runs / "evaluation")["lineage"][0]["path"]) == runs / "training"

    done = _run_block(checkout, piped)
    results = json.loads(done.stdout)["artifacts"]["evaluation"]
    assert Path(results["path"]).is_relative_to(checkout / "artifacts" / "demo" / "stage0_pretrain")

    done = _run_block(checkout, stage)
    assert list(json.loads(done.stdout)["artifacts"]) == ["data_curation", "training", "evaluation"]
    assert _metadata(runs / "stage" / "training")["num_steps"] == 20

    done = _run_block(checkout, launcher)
    local, dry_run = (json.loads(line) for line in done.stdout.splitlines())
    assert {s["state"] for s in local["steps"].values()} == {"completed"}
    assert dry_run["executor"] == "slurm" and len(dry_run["jobs"]) == 3
    assert "python -m nemotron.recipes.demo.stage0_pretrain.training" in done.stdout


def test_code_shown_in_the_guide_is_the_kit_s_own() -> None:
    excerpts = _blocks("python")
    assert excerpts
    for excerpt in excerpts:
        first, _, code = excerpt.partition("\n")
        source = REPO / first.removeprefix("# ").strip()
        assert source.is_file(), first
        assert code in source.read_text(), f"{source} no longer holds:\n{code}"


def test_the_readme_template_shown_is_the_one_new_recipe_writes() -> None:
    (shown,) = _blocks("markdown")
    assert shown == (TEMPLATES / "recipe_template" / "README.md.tmpl").read_text()


def _new_recipe(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nemotron.launcher.cli", "new-recipe", *args],
        cwd=root,
        env=_env(root),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "name, why",
    [
        ("Demo2", "invalid recipe name 'Demo2'"),
        ("../escape", "invalid recipe name '../escape'"),
        ("class", "invalid recipe name 'class'"),
        ("list", "it is a nemotron-launch command"),
        ("nano2", "recipe 'nano2' already exists"),
    ],
)
def test_a_bad_or_taken_name_is_one_line_and_writes_nothing(checkout: Path, name: str, why: str) -> None:
    before = sorted(p for p in (checkout / "src").rglob("*") if "__pycache__" not in p.parts)
    containers = sorted((checkout / "containers").rglob("*"))
    done = _new_recipe(checkout, name)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and why in done.stderr, done.stderr
    assert sorted(p for p in (checkout / "src").rglob("*") if "__pycache__" not in p.parts) == before
    assert sorted((checkout / "containers").rglob("*")) == containers


def test_the_template_renders_every_file_with_the_name() -> None:
    from nemotron.launcher.scaffold import render_tree

    files = render_tree(TEMPLATES / "recipe_template", "demo")
    assert set(map(str, files)) >= {
        "recipe.py",
        "README.md",
        "stage0_pretrain/training.py",
        "stage0_pretrain/__main__.py",
    }
    assert all("$" not in text for text in files.values())
    assert string.Template("$recipe").substitute(recipe="demo") in files[Path("recipe.py")]
