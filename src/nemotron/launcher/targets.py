"""Targets: ``nano2`` (every stage), ``nano2.stage0`` / ``nano2.stage0_pretrain`` (a stage), ``nano2.stage0.training``.

Recipes are listed here by the dotted path of their light declaration module: an explicit table, not a registry
filled as an import side effect. ``$NEMOTRON_RECIPES`` (``name=dotted.module,...``) adds out-of-tree recipes.
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass

from nemotron.errors import UserError
from nemotron.launcher.declaration import Recipe, Stage, Step

BUILTIN_RECIPES = {"nano2": "nemotron.recipes.nano2.recipe"}
RECIPES_ENV = "NEMOTRON_RECIPES"


def recipe_modules() -> dict[str, str]:
    modules = dict(BUILTIN_RECIPES)
    for entry in filter(None, os.environ.get(RECIPES_ENV, "").split(",")):
        name, sep, module = entry.partition("=")
        if not sep or not name.strip() or not module.strip():
            raise TargetError(f"invalid {RECIPES_ENV} entry {entry!r}: expected NAME=dotted.module")
        modules[name.strip()] = module.strip()
    return modules


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
    return importlib.import_module(modules[name]).RECIPE


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
