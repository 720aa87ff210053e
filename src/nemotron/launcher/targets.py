"""Targets: ``nano2`` (every stage), ``nano2.stage0`` / ``nano2.stage0_pretrain`` (a stage), ``nano2.stage0.training``.

Recipes are found by their light declaration module: every ``nemotron/recipes/<name>/recipe.py`` (a directory
listing, not a registry filled as an import side effect), and ``$NEMOTRON_RECIPES`` (``NAME=package.module,...``)
adds out-of-tree recipes.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from nemotron.declaration import Recipe, Stage, Step
from nemotron.errors import UserError

RECIPES_PACKAGE = "nemotron.recipes"
RECIPES_ENV = "NEMOTRON_RECIPES"
RECIPE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
EXPECTED_ENTRY = "expected NAME=package.module, the module declaring RECIPE (e.g. toy=my_recipes.toy.recipe)"


def builtin_recipes() -> dict[str, str]:
    """Every ``nemotron/recipes/<name>/recipe.py``, by name: found by listing the directory, nothing imported, so a
    new recipe (``nemotron-launch new-recipe``) is found without registering it anywhere."""
    import nemotron.recipes

    found = {}
    for directory in nemotron.recipes.__path__:
        for package in sorted(Path(directory).iterdir()):
            if (package / "recipe.py").is_file() and package.name.isidentifier():
                found[package.name] = f"{RECIPES_PACKAGE}.{package.name}.recipe"
    return found


def recipe_modules() -> dict[str, str]:
    modules = builtin_recipes()
    for entry in filter(None, os.environ.get(RECIPES_ENV, "").split(",")):
        name, sep, module = (part.strip() for part in entry.partition("="))
        # A recipe name is the first part of a dotted target; a module must be importable by its dotted name.
        if not sep or not RECIPE_NAME_RE.match(name) or not all(p.isidentifier() for p in module.split(".")):
            raise _bad_entry(entry, EXPECTED_ENTRY)
        modules[name] = module
    return modules


def _bad_entry(entry: str, why: str) -> TargetError:
    return TargetError(f"invalid {RECIPES_ENV} entry {entry!r}: {why}")


class TargetError(UserError):
    pass


@dataclass(frozen=True)
class Target:
    """A resolved target: the recipe and the (stage, step) pairs it selects, in execution order."""

    text: str
    recipe: Recipe
    selected: tuple[tuple[Stage, Step], ...]

    def includes(self, stage: str, step: str) -> bool:
        return any(st.name == stage and sp.name == step for st, sp in self.selected)


def load_recipe(name: str) -> Recipe:
    modules = recipe_modules()
    if name not in modules:
        raise TargetError(f"unknown recipe {name!r}: valid recipes are {', '.join(modules)}")
    module_name = modules[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the named module (or a package above it) missing is a bad entry; a missing import inside it, or a
        # built-in recipe missing, is a bug.
        missing_named = exc.name is not None and f"{module_name}.".startswith(f"{exc.name}.")
        if not missing_named or builtin_recipes().get(name) == module_name:
            raise
        raise _bad_entry(f"{name}={module_name}", f"no module {module_name}: {EXPECTED_ENTRY}") from None
    recipe = getattr(module, "RECIPE", None)
    if not isinstance(recipe, Recipe):
        raise _bad_entry(f"{name}={module_name}", f"module {module_name} has no RECIPE declaration: {EXPECTED_ENTRY}")
    if recipe.name != name:  # targets, output directories and containers are all named by it
        raise TargetError(f"recipe {name!r} ({module_name}) declares the name {recipe.name!r}: they must be the same")
    return recipe


def all_targets() -> list[str]:
    """Every valid target name, for error messages, ``list`` and shell completion."""
    names: list[str] = []
    for recipe_name in recipe_modules():
        recipe = load_recipe(recipe_name)
        names.append(recipe_name)
        for stage in recipe.stages:
            names += [f"{recipe_name}.{stage.alias}", f"{recipe_name}.{stage.name}"]
            names += [f"{recipe_name}.{stage.alias}.{step.name}" for step in stage.steps]
    return names


def resolve_target(text: str) -> Target:
    parts = text.split(".")
    if parts[0] not in recipe_modules() or len(parts) > 3:
        _unknown(text)
    recipe = load_recipe(parts[0])
    if len(parts) == 1:
        return Target(text, recipe, tuple((st, sp) for st in recipe.stages for sp in st.steps))
    stage = recipe.stage(parts[1])
    if stage is None:
        _unknown(text)
    if len(parts) == 2:
        return Target(text, recipe, tuple((stage, sp) for sp in stage.steps))
    step = stage.step(parts[2])
    if step is None:
        _unknown(text)
    return Target(text, recipe, ((stage, step),))


def _unknown(text: str) -> None:
    valid = all_targets()
    close = difflib.get_close_matches(text, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise TargetError(f"unknown target {text!r}{hint}: valid targets are {', '.join(valid)}")
