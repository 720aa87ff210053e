"""Running a step: ``main(config) -> Artifact`` behind a tyro CLI, as a file, a module, or in a pipe.

Every step module ends with ``if __name__ == "__main__": run_step(main, Config, "training")``. The CLI is the
Config dataclass (``--scale tiny --dataset-path DIR``); stdout gets exactly one JSON document (``print_complete``);
people's output goes to stderr; bad input is one line on stderr and exit code 2.

A step module may also define ``validate(config, placement, carried) -> None``: every check the step makes before
doing work (values, choices, batch sizes against the ranks it runs on, inputs already on disk being the right artifact
type, evaluation tasks against the held-out data its inputs carry). ``carried`` is what the step's input artifacts
carry: their ``provides`` and their lineage's (``recorded_provides``). The step calls it first thing in ``main``, with
``Placement.from_environment()`` and what its inputs on disk record (``carried_by``); the launcher calls the same
function when it plans, with the ``Placement`` its job will get and what its planned inputs will carry, so a plan
that validates is a job that starts. A step module may define ``provides(config) -> frozenset[str]`` too: what its
own artifact adds for the steps downstream (``will_carry``).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from nemotron.artifact import (
    METADATA_FILE,
    Artifact,
    default_artifact_root,
    print_complete,
    recorded_provides,
    shown,
)
from nemotron.errors import UserError
from nemotron.scale import Scale

C = TypeVar("C")


@dataclass(frozen=True)
class GPUSpec:
    """What one GPU of a job holds and does, as its cluster profile states it (``[gpu]``)."""

    memory_gb: float | None  # None: not stated, no memory check
    peak_tflops: float  # dense BF16
    mfu: float  # the model FLOPs utilisation a cost preview assumes


@dataclass(frozen=True)
class Placement:
    """Where a step runs, as far as its checks care: ranks in all, and GPUs per node when known (None: not known,
    e.g. a local run that takes whatever devices the machine has). Torch-free: the launcher builds one per job."""

    world_size: int = 1
    gpus_per_node: int | None = None
    # Whether the step's filesystem is the checker's, so paths a person named (--sources, a tokenizer) are checked
    # too: always at the start of a step; at plan time only where the launcher sees the jobs' files (not through SSH).
    files_here: bool = True
    # At plan time, for a job on GPUs: what its GPUs are (a training step checks its memory and previews its cost)
    # and the job's time limit in seconds (the segments a long run takes); None in a running step.
    gpu: GPUSpec | None = None
    time_limit_s: int | None = None

    @classmethod
    def from_environment(cls) -> Placement:
        """This process's world: what torchrun (``WORLD_SIZE``) or srun (``SLURM_STEP_NUM_TASKS``) started, else 1."""
        launcher = launched_by()
        if launcher == "torchrun":
            return cls(world_size=int(os.environ["WORLD_SIZE"]))
        if launcher == "slurm":
            return cls(world_size=int(os.environ["SLURM_STEP_NUM_TASKS"]))
        return cls()


def launched_by() -> str:
    """Which launcher started this process: "torchrun", "slurm" (one rank per srun task) or "single"."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return "torchrun"
    # SLURM_STEP_NUM_TASKS exists only inside an srun step: a batch script running one python process must not wait
    # for SLURM_NTASKS peers that were never started.
    if "SLURM_JOB_ID" in os.environ and "SLURM_STEP_NUM_TASKS" in os.environ:
        return "slurm"
    return "single"


def check_input(path: Path | None, artifact_type: type[Artifact], flag: str) -> None:
    """An input artifact that already exists must be a valid ``artifact_type``; one not written yet (the output of a
    job planned upstream) is checked when the step loads it."""
    if path is None:
        return
    metadata = Path(path).expanduser()
    metadata = metadata if metadata.name == METADATA_FILE else metadata / METADATA_FILE
    if not metadata.exists():
        return
    try:
        found = Artifact.from_metadata_file(metadata).type  # any artifact's core fields, to name what it is
        if found != artifact_type.__name__:
            raise UserError(f"holds a {found} artifact, not the {artifact_type.__name__} this step needs")
        artifact_type.from_metadata_file(metadata)
    except UserError as err:
        raise UserError(f"{flag} {shown(path)}: {err}") from None


def carried_by(
    artifact_type: type[Artifact], path: Path | None, tracked: str | None = None, *, piped: bool = True
) -> frozenset[str]:
    """What one input artifact carries (``recorded_provides``), found as ``artifact_type.load`` finds it: its path, its
    tracked name, else (``piped``: the step's main input) the upstream step's JSON on stdin. Only metadata is read.

    A step reads it at start for its ``validate``: an input that is not there or cannot be read carries nothing here,
    and the step fails with one line when it loads it, as it would without this.
    """
    if path is None and tracked is None and not piped:
        return frozenset()
    try:
        artifact = artifact_type.load(path=path, tracked_artifact=tracked)
    except UserError:
        return frozenset()
    return recorded_provides(Path(artifact.path))


def validate_step(module: ModuleType, config: Any, placement: Placement, carried: frozenset[str]) -> Any:
    """A step module's own ``validate`` — the function its ``main`` calls first — for a planner or a stage that runs
    it ahead of the step. A module without one (a recipe of another kit) has only its Config's own checks. Returns
    what it returns: what it computed (a training step's settings, layout and ``estimate``), or None."""
    validate = getattr(module, "validate", None)
    return validate(config, placement, carried) if validate is not None else None


def will_carry(module: ModuleType, config: Any, carried: frozenset[str]) -> frozenset[str]:
    """What the artifact a step makes from ``config`` will carry for the steps downstream: what its inputs carry
    (``carried``) and what the step itself ``provides``. Torch-free: known before the step runs."""
    provides = getattr(module, "provides", None)
    return carried | (frozenset(provides(config)) if provides is not None else frozenset())


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


@dataclass
class StepConfig:
    """The fields every step's Config starts with (``@dataclass class Config(StepConfig): ...``): the launcher and
    a stage module set them for every step alike."""

    scale: Scale = "tiny"
    """tiny/small/medium/full = 1/10/30/100 % of the full-scale run."""
    seed: int = 1234
    output_dir: Path | None = None
    """Artifact directory (default: <artifact root>/<recipe>/<stage>/<scale>-seed<seed>/<step>)."""


def step_output_dir(config: Any, step_file: str) -> Path:
    """``config.output_dir``, else a user-writable default under ``default_artifact_root()`` named after where the
    step's file sits (``recipes/<recipe>/<stage>/<step>.py``, as the recipe's declaration names its module), so a
    step run as a file, a module or in a pipe finds the same directory and no step spells its own names."""
    path = Path(step_file)
    return resolve_output_dir(
        config.output_dir, path.parent.parent.name, path.parent.name, path.stem, config.scale, config.seed
    )


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
        # tyro refuses what the types refuse; ``main`` runs the step's ``validate`` before any work
        # the help is the program's own docstring: the step module run as a file or with -m (its main may be a
        # building block's, bound to the recipe's presets)
        description = (getattr(sys.modules.get("__main__"), "__doc__", None) or "").strip()
        config = tyro.cli(config_cls, args=argv, description=description)
        artifact = main(config)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)  # the only line bad input gets: the code location comes after
        raise SystemExit(err.exit_code) from None
    # None: an array task that did its part while others' are still to come (nemotron.array); no artifact to print
    if is_rank_zero() and artifact is not None:
        log_code_location(step_name)
        record_step(step_name, artifact)
        print_complete({step_name: artifact})


def record_step(step_name: str, artifact: Artifact) -> None:
    """The finished step's artifact, with its lineage, in the experiment tracker the job asks for (if any)."""
    from nemotron.tracking import record_step as record

    record(step_name, artifact)


def log_code_location(step_name: str) -> None:
    """One line naming the code a step ran and where it lives: a container job runs the image's copy (e.g.
    ``/opt/nemotron/src``), whatever the submitting checkout holds, and its log should say so."""
    import nemotron
    from nemotron._code_version import code_version
    from nemotron.log import get_logger

    where = Path(nemotron.__file__).resolve().parent
    get_logger("step").info("%s: nemotron %s from %s", step_name, code_version(), where)


def run_stage(
    main: Callable[[C], dict[str, Artifact]],
    config_cls: type[C],
    argv: Sequence[str] | None = None,
    description: str | None = None,
) -> None:
    """Entry point of a stage module (``python -m ...stage0_pretrain``): like ``run_step``, for all its artifacts;
    ``description`` (default: ``main``'s module docstring) heads its ``--help``."""
    import tyro

    if description is None:
        description = sys.modules[main.__module__].__doc__ or ""
    try:
        # tyro refuses what the types refuse; the stage validates every step's Config before its first step runs
        config = tyro.cli(config_cls, args=argv, description=description.strip())
        artifacts = main(config)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    if is_rank_zero():
        print_complete(artifacts)
