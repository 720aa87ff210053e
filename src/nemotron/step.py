"""Running a step: ``main(config) -> Artifact`` behind a tyro CLI, as a file, a module, or in a pipe.

Every step module ends with ``if __name__ == "__main__": run_step(main, Config, "training")``. The CLI is the
Config dataclass (``--scale tiny --dataset-path DIR``); stdout gets exactly one JSON document (``print_complete``);
people's output goes to stderr; bad input is one line on stderr and exit code 2.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from nemotron.artifact import Artifact, default_artifact_root, print_complete
from nemotron.errors import UserError

C = TypeVar("C")


def config_snapshot(config: Any) -> dict[str, Any]:
    """A JSON-ready copy of a (possibly nested) Config dataclass, for ``Artifact.config``."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return plain(config)


def resolve_output_dir(output_dir: Path | None, recipe: str, stage: str, step: str, scale: str, seed: int) -> Path:
    """An explicit ``--output-dir``, or a user-writable default under ``default_artifact_root()``."""
    if output_dir is not None:
        return Path(output_dir).expanduser().resolve()
    return default_artifact_root() / recipe / stage / f"{scale}-seed{seed}" / step


def is_rank_zero() -> bool:
    return os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) == "0"


def run_step(
    main: Callable[[C], Artifact],
    config_cls: type[C],
    step_name: str,
    argv: Sequence[str] | None = None,
) -> None:
    """Parse the Config from argv with tyro, run ``main``, print the step's JSON; user errors exit 2 in one line."""
    import tyro

    try:
        # a Config checks its own values when built (``__post_init__``), so a bad flag fails here, before any work
        config = tyro.cli(config_cls, args=argv, description=(sys.modules[main.__module__].__doc__ or "").strip())
        artifact = main(config)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    if is_rank_zero():
        print_complete({step_name: artifact})


def run_stage(main: Callable[[C], dict[str, Artifact]], config_cls: type[C], argv: Sequence[str] | None = None) -> None:
    """Entry point of a stage module (``python -m ...stage0_pretrain``): like ``run_step``, for all its artifacts."""
    import tyro

    try:
        # a Config checks its own values when built (``__post_init__``), so a bad flag fails here, before any work
        config = tyro.cli(config_cls, args=argv, description=(sys.modules[main.__module__].__doc__ or "").strip())
        artifacts = main(config)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    if is_rank_zero():
        print_complete(artifacts)
