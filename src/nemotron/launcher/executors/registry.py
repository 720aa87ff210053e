"""The executors this installation knows: the one place their names are listed.

Each entry names the executor's class and the module of its options (``PROFILE_TABLES``: the profile tables it owns,
e.g. ``[slurm]`` and ``[ssh]``). Both are imported only when asked for, so the CLI stays light and an executor whose
backend is an optional extra (``nemo_run``) costs nothing until a profile chooses it.
"""

from __future__ import annotations

import importlib
from typing import Any

from nemotron.errors import UserError

_PACKAGE = "nemotron.launcher.executors"
EXECUTORS: dict[str, tuple[str, str]] = {  # name -> (module:class, options module)
    "local": (f"{_PACKAGE}.local:LocalExecutor", f"{_PACKAGE}.local_options"),
    "docker": (f"{_PACKAGE}.docker:DockerExecutor", f"{_PACKAGE}.docker_options"),
    "slurm": (f"{_PACKAGE}.slurm:SlurmExecutor", f"{_PACKAGE}.slurm_options"),
    "nemo_run": (f"{_PACKAGE}.nemo_run:NemoRunExecutor", f"{_PACKAGE}.nemo_run_options"),
}


class UnknownExecutor(UserError):
    pass


def check_name(name: str) -> str:
    if name not in EXECUTORS:
        raise UnknownExecutor(f"unknown executor {name!r}: valid executors are {', '.join(EXECUTORS)}")
    return name


def executor_class(name: str) -> type:
    module_name, _, class_name = EXECUTORS[check_name(name)][0].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def profile_tables() -> dict[str, tuple[Any, Any]]:
    """Every registered executor's profile tables: table name -> (annotation, default), as ``create_model`` takes."""
    tables: dict[str, tuple[Any, Any]] = {}
    for _executor, options_module in EXECUTORS.values():
        tables.update(importlib.import_module(options_module).PROFILE_TABLES)
    return tables
