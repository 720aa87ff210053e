"""``nemotron-launch new-recipe NAME``: a new recipe package that runs as written, from the recipe template.

The template (``recipe_template/``, ``container_template/``: ``*.tmpl`` files with ``$recipe`` where the name goes)
is a pretraining stage of three thin steps over the kit's building blocks (``docs/adding-a-recipe.md`` walks
through it). All or nothing: the name is checked and every file rendered before the first one is written, and the
files go in through one rename per directory, so a failure leaves no half recipe behind.
"""

from __future__ import annotations

import keyword
import os
import re
import shutil
import string
import tempfile
from pathlib import Path

from nemotron.errors import UserError

TEMPLATES = Path(__file__).resolve().parent
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class ScaffoldError(UserError):
    pass


def check_name(name: str, taken: set[str], reserved: tuple[str, ...]) -> str:
    """A recipe name is a Python package name (lowercase) that is not a recipe yet, nor a launcher command."""
    if not NAME_RE.match(name) or keyword.iskeyword(name):
        raise ScaffoldError(
            f"invalid recipe name {name!r}: use a lowercase letter, then lowercase letters, digits or '_' "
            "(at most 32 characters; it becomes a Python package and the first part of every target)"
        )
    if name in reserved:
        raise ScaffoldError(f"invalid recipe name {name!r}: it is a nemotron-launch command ({', '.join(reserved)})")
    if name in taken:
        raise ScaffoldError(f"recipe {name!r} already exists: choose another name (taken: {', '.join(sorted(taken))})")
    return name


def render_tree(template: Path, name: str) -> dict[Path, str]:
    """Every ``*.tmpl`` file under ``template``, by its path relative to the new directory, with the name filled in."""
    files = {}
    for source in sorted(template.rglob("*.tmpl")):
        relative = source.relative_to(template).with_suffix("")  # training.py.tmpl -> training.py
        files[relative] = string.Template(source.read_text()).substitute(recipe=name)
    return files


def new_recipe(name: str, repo: Path, taken: set[str], reserved: tuple[str, ...]) -> dict[str, Path]:
    """Write ``src/nemotron/recipes/<name>/`` and ``containers/<name>/`` under ``repo``; their paths, by kind."""
    check_name(name, taken, reserved)
    targets = {
        "recipe": repo / "src" / "nemotron" / "recipes" / name,
        "container": repo / "containers" / name,
    }
    for path in targets.values():
        if path.exists():
            raise ScaffoldError(f"recipe {name!r} already exists: {path} is there (choose another name)")
        if not path.parent.is_dir():
            raise ScaffoldError(f"{repo} is not a nemotron-launch checkout: {path.parent} does not exist")
    trees = {
        "recipe": render_tree(TEMPLATES / "recipe_template", name),
        "container": render_tree(TEMPLATES / "container_template", name),
    }
    staged: list[tuple[Path, Path]] = []
    try:
        for kind, files in trees.items():
            staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=targets[kind].parent))
            staged.append((staging, targets[kind]))
            for relative, text in files.items():
                (staging / relative).parent.mkdir(parents=True, exist_ok=True)
                (staging / relative).write_text(text)
            os.chmod(staging, 0o755)  # mkdtemp makes it 0700
        for staging, target in staged:
            staging.rename(target)
    except OSError:
        for staging, target in staged:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(target, ignore_errors=True)
        raise
    return targets
