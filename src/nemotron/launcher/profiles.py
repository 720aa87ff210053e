"""Cluster profiles: typed (Pydantic) TOML files with ``extends`` inheritance; unknown keys suggest the nearest one.

Search path, later entries winning on a name clash: the repository's ``cluster_profiles/``, the user's
``~/.config/nemotron/profiles`` (``$XDG_CONFIG_HOME``), then the directories (or files) listed in
``$NEMOTRON_PROFILES`` (``os.pathsep``-separated). ``--profile`` also takes a path to a ``.toml`` file.

Secrets are referenced by NAME only (``secrets = ["HF_TOKEN"]``): executors forward the value from the submitting
environment at submit time; a profile never holds one, so nothing rendered from a profile can leak one.
``artifact_root``, ``container.image`` and ``container.mounts`` expand ``~``, ``${VAR}`` and ``${VAR:-default}``.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, create_model, field_validator

from nemotron.errors import UserError
from nemotron.launcher.executors.registry import EXECUTORS, profile_tables
from nemotron.launcher.failures import RETRIABLE_CLASSES
from nemotron.launcher.options import StrictModel, check_time
from nemotron.scale import Scale

REPO_PROFILES = Path(__file__).resolve().parents[3] / "cluster_profiles"
PROFILES_ENV = "NEMOTRON_PROFILES"
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HANG_TIMEOUT_ENV = "NEMOTRON_HANG_TIMEOUT"  # read by nemotron.heartbeat inside the job


class ProfileError(UserError):
    pass


class ContainerOptions(StrictModel):
    image: str | None = None  # image reference, or a .sqsh path for pyxis
    mounts: list[str] = Field(default_factory=list)  # "SRC:DST[:ro]"; the artifact root is always mounted


class StepResources(StrictModel):
    """Resources of one step at one scale: ``[steps.<step>.scale.<scale>]``."""

    nodes: int | None = Field(default=None, ge=1)
    gpus_per_node: int | None = Field(default=None, ge=0)
    nproc_per_node: int | None = Field(default=None, ge=1)
    cpus_per_task: int | None = Field(default=None, ge=1)
    mem: str | None = None
    time: str | None = None
    partition: str | None = None

    @field_validator("time")
    @classmethod
    def _time_format(cls, value: str | None) -> str | None:
        return check_time(value)


class StepOverrides(StepResources):
    """``[steps.<step>]`` (every stage) or ``[steps."<stage>.<step>"]`` (one stage, alias or name): resources over the
    recipe's defaults and ``[slurm]``'s, at every scale; its ``scale.<scale>`` tables at one scale
    (``nemotron.launcher.resources.profile_step_values`` says which value wins)."""

    scale: dict[Scale, StepResources] = Field(default_factory=dict)


Policy = Literal["retry", "stop"]


class FaultTolerance(StrictModel):
    """``[fault_tolerance]``: what happens after each class of failure (``nemotron.launcher.failures``).

    ``retry`` resumes the step from its last checkpoint in a new attempt of the same job (its dependents keep
    waiting on it): after a node failure without the failed nodes, after a time limit only if the attempt saved a
    newer checkpoint. ``stop`` fails the step and cancels its dependents. ``max_attempts`` bounds the attempts that
    ended in a failure (the running one included); an attempt that reached its time limit after saving a newer
    checkpoint is a *segment* of a long run, not a failure, and ``max_segments`` bounds those: a plan whose cost
    preview needs more is refused at ``--dry-run``."""

    max_attempts: int = Field(default=4, ge=1)
    max_segments: int = Field(default=500, ge=1)  # 500 segments of 4 h: 83 days of one job
    preempted: Policy = "retry"
    node_failure: Policy = "retry"
    time_limit: Policy = "retry"
    hang: Policy = "retry"
    application_error: Policy = "stop"
    # a step exiting with this code asks not to be restarted (nvidia-resiliency-ext's convention)
    stop_exit_code: int = Field(default=93, ge=1, le=255)
    # seconds without progress before the watchdog in the job dumps every rank's stacks and ends the attempt;
    # 0: off. It watches the steps in ``watch_steps`` (training reports every iteration; others coarsely).
    hang_timeout: int = Field(default=1800, ge=0)
    watch_steps: list[str] = Field(default_factory=lambda: ["training"])

    def retried_classes(self) -> list[str]:
        return [name for name in RETRIABLE_CLASSES if getattr(self, name) == "retry"]

    def job_env(self, step: str) -> dict[str, str]:
        """The environment that arms the watchdog of one step (empty when it is not watched)."""
        return {HANG_TIMEOUT_ENV: str(self.hang_timeout)} if self.hang_timeout and step in self.watch_steps else {}


class GPUOptions(StrictModel):
    """``[gpu]``: what one GPU of the cluster holds and does, for the plan's memory check and cost preview."""

    memory_gb: float | None = Field(default=None, gt=0)  # None: not stated (no memory check), e.g. 80 for H100 SXM
    peak_tflops: float = Field(default=989.0, gt=0)  # dense BF16 of an H100 SXM (NVIDIA's datasheet)
    # model FLOPs utilisation the cost preview assumes: Megatron-LM's 41-42 % for Nemotron-4 340B on H100s (its
    # technical report's Table 2), rounded down
    mfu: float = Field(default=0.40, gt=0, le=1)


class ArrayOptions(StrictModel):
    """``[arrays]``: job arrays (a step run as many tasks, e.g. ``data_curation.shards=N``), whatever the executor."""

    # tasks of one array running at once: Slurm's ``--array=...%M`` throttle, processes locally, containers in Docker
    max_parallel: int = Field(default=4, ge=1)


class TrackingOptions(StrictModel):
    """``[tracking]``: Weights & Biases for every step of a run (``uv sync --extra tracking`` where jobs run). Each step
    is a W&B run of ``project`` (``entity``: a team, else the API key's user) with its curves, summary and artifact
    logged with its lineage; TensorBoard event files are written whatever this says. Online, W&B's API key
    ``WANDB_API_KEY`` is one of the profile's secrets (added here when missing): forwarded from the submitting shell,
    never written."""

    project: str = Field(min_length=1)
    entity: str | None = None
    mode: Literal["online", "offline", "disabled"] = "online"  # offline: a run directory in each step's output

    def job_env(self) -> dict[str, str]:
        from nemotron import tracking

        env = {tracking.PROJECT_ENV: self.project, tracking.MODE_ENV: self.mode}
        return env | ({tracking.ENTITY_ENV: self.entity} if self.entity else {})

    def secret_names(self) -> list[str]:
        from nemotron.tracking import API_KEY_SECRET

        return [API_KEY_SECRET] if self.mode == "online" else []


class ProfileBase(StrictModel):
    """What every profile has, whatever its executor; ``Profile`` adds the tables the registered executors own
    (``executors.registry``: ``[slurm]``, ``[ssh]``, ``[docker]``, ``[local]``, ``[nemo_run]``)."""

    name: str
    description: str = ""
    extends: str | None = None
    executor: str = "local"
    artifact_root: Path | None = None  # None: nemotron.artifact.default_artifact_root()
    env: dict[str, str] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list)  # names of environment variables, never values
    container: ContainerOptions = Field(default_factory=ContainerOptions)
    fault_tolerance: FaultTolerance = Field(default_factory=FaultTolerance)
    gpu: GPUOptions = Field(default_factory=GPUOptions)
    arrays: ArrayOptions = Field(default_factory=ArrayOptions)
    steps: dict[str, StepOverrides] = Field(default_factory=dict)
    tracking: TrackingOptions | None = None  # None: TensorBoard event files only

    @field_validator("executor")
    @classmethod
    def _registered(cls, value: str) -> str:
        if value not in EXECUTORS:
            raise ValueError(f"unknown executor {value!r}: valid executors are {', '.join(EXECUTORS)}")
        return value

    @field_validator("env", "secrets")
    @classmethod
    def _env_names(cls, value: Any) -> Any:
        for name in value:
            if not ENV_NAME_RE.match(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
        return value

    @field_validator("artifact_root", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        # As a Path, '' (e.g. "${UNSET:-}") would silently be the current directory.
        if isinstance(value, str) and not value.strip():
            raise ValueError("empty: give a directory, or leave the key out for the default")
        return value

    def job_env(self) -> dict[str, str]:
        """The environment every job of this profile gets: ``[env]`` and what ``[tracking]`` tells the steps."""
        return {**self.env, **(self.tracking.job_env() if self.tracking else {})}

    def secret_names(self) -> list[str]:
        """``secrets`` and the ones ``[tracking]`` needs, each once."""
        needed = self.tracking.secret_names() if self.tracking else []
        return [*self.secrets, *(name for name in needed if name not in self.secrets)]

    def resolved_artifact_root(self) -> Path:
        from nemotron.artifact import default_artifact_root

        return Path(self.artifact_root) if self.artifact_root is not None else default_artifact_root()


# Every registered executor's tables, each validated by the model its executor owns.
Profile = create_model("Profile", __base__=ProfileBase, __module__=__name__, **profile_tables())


# ------------------------------------------------------------------------------------------------- discovery
def profile_dirs() -> list[Path]:
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    dirs = [REPO_PROFILES, config_home / "nemotron" / "profiles"]
    dirs += [Path(p).expanduser() for p in os.environ.get(PROFILES_ENV, "").split(os.pathsep) if p]
    return dirs


def available_profiles() -> dict[str, Path]:
    """Profile name -> file, later search-path entries overriding earlier ones."""
    found: dict[str, Path] = {}
    for entry in profile_dirs():
        if entry.is_file() and entry.suffix == ".toml":
            found[entry.stem] = entry
        elif entry.is_dir():
            found.update({p.stem: p for p in sorted(entry.glob("*.toml")) if p.is_file()})
    return found


def load_profile(name_or_path: str) -> Profile:
    """Load, merge (``extends``), expand and validate a profile; every problem is one ``ProfileError`` line."""
    available = available_profiles()
    data = _merged(name_or_path, available, chain=())
    source = data.pop("__source__")
    data.setdefault("name", Path(name_or_path).stem if name_or_path.endswith(".toml") else name_or_path)
    _check_keys(data, Profile, where="", source=source)
    _expand_paths(data, source)
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "profile"
        message = err["msg"].removeprefix("Value error, ")
        got = f" (got {err['input']!r})" if not isinstance(err.get("input"), dict | list) else ""
        raise ProfileError(f"profile {source}: {where}: {message}{got}") from None


def _read_toml(
    name_or_path: str, available: dict[str, Path], extended_by: Path | None = None
) -> tuple[dict[str, Any], Path]:
    """The profile's table and file; ``extended_by`` is the file whose ``extends`` named it, for the message."""
    is_path = name_or_path.endswith(".toml") or os.sep in name_or_path
    path = Path(name_or_path).expanduser() if is_path else available.get(name_or_path)
    valid = ", ".join(sorted(available)) or "none found"
    if path is not None and path.is_dir():
        raise ProfileError(f"profile {name_or_path!r} is a directory: give a .toml file or a profile name ({valid})")
    if path is None:
        close = difflib.get_close_matches(name_or_path, list(available), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        whose = f"profile {extended_by} extends an " if extended_by else ""
        raise ProfileError(f"{whose}unknown profile {name_or_path!r}{hint}: valid profiles are {valid}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")), path
    except FileNotFoundError:
        raise ProfileError(f"profile file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ProfileError(f"profile {path} is not UTF-8 text (byte {exc.start}): TOML files are UTF-8") from None
    except OSError as exc:  # no permission, a special file, an I/O error
        raise ProfileError(f"cannot read profile {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {path} is not valid TOML: {exc}") from None


def _merged(
    name_or_path: str, available: dict[str, Path], chain: tuple[str, ...], extended_by: Path | None = None
) -> dict[str, Any]:
    if name_or_path in chain:
        raise ProfileError(f"profile {chain[0]!r} extends itself: {' -> '.join((*chain, name_or_path))}")
    data, path = _read_toml(name_or_path, available, extended_by)
    parent = data.get("extends")
    if parent is None:
        return {**data, "__source__": path}
    if not isinstance(parent, str):
        raise ProfileError(f"profile {path}: extends must be a profile name, got {parent!r}")
    base = _merged(parent, available, (*chain, name_or_path), extended_by=path)
    base.pop("name", None)
    return {**_deep_merge(base, data), "__source__": path}


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value (lists included) replaces the parent's."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# Keys of an earlier release -> where the setting lives now (and how its meaning changed): a profile written for it
# is refused naming the new key, not with the list of valid ones.
MOVED_KEYS = {
    "slurm.max_requeues": "use 'fault_tolerance.max_attempts' ([fault_tolerance] max_attempts = requeues + 1: it "
    "counts every attempt of a step, under every executor)",
}


def _check_keys(data: Any, model: type[BaseModel], where: str, source: Path) -> None:
    """Reject unknown keys, naming the nearest valid one — before Pydantic, whose message would not suggest any."""
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    for key, value in data.items():
        if f"{where}{key}" in MOVED_KEYS:
            raise ProfileError(f"profile {source}: key '{where}{key}' is gone: {MOVED_KEYS[f'{where}{key}']}")
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.5)
            hint = f"did you mean '{where}{close[0]}'?" if close else f"valid keys are {', '.join(fields)}"
            raise ProfileError(f"profile {source}: unknown key '{where}{key}': {hint}")
        _check_value(value, fields[key].annotation, f"{where}{_quoted(key)}.", source)


def _check_value(value: Any, annotation: Any, where: str, source: Path) -> None:
    """A nested table: a model's keys, or a ``dict[K, V]``'s keys (when K is a Literal) and each of its values."""
    nested = _model_in(annotation)
    if nested is not None:
        _check_keys(value, nested, where, source)
    elif typing.get_origin(annotation) is dict and isinstance(value, dict):
        key_type, value_type = typing.get_args(annotation)
        allowed = list(typing.get_args(key_type)) if typing.get_origin(key_type) is Literal else None
        for key, item in value.items():
            if allowed is not None and key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.5)
                hint = f"did you mean '{where}{close[0]}'?" if close else f"valid keys are {', '.join(allowed)}"
                raise ProfileError(f"profile {source}: unknown key '{where}{_quoted(key)}': {hint}")
            _check_value(item, value_type, f"{where}{_quoted(key)}.", source)


def _quoted(key: Any) -> str:
    return f'"{key}"' if "." in str(key) else str(key)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    candidates = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


# A default holds no "$", "{" or "}": nested references (``${A:-${B:-x}/y}``) resolve innermost first.
_VAR_RE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^${}]*))?\}")


def expand(value: str, source: Path | str = "profile") -> str:
    """``~``, ``${VAR}`` and ``${VAR:-default}``; an unset variable without a default is an error, not ''."""

    def substitute(match: re.Match[str]) -> str:
        name, default = match["name"], match["default"]
        if os.environ.get(name):
            return os.environ[name]
        if default is not None:
            return default
        raise ProfileError(f"profile {source}: environment variable {name} is not set (use ${{{name}:-DEFAULT}})")

    while True:
        expanded = _VAR_RE.sub(substitute, value)
        if expanded == value:
            return os.path.expanduser(expanded)
        value = expanded


def _expand_paths(data: dict[str, Any], source: Path) -> None:
    if isinstance(data.get("artifact_root"), str):
        data["artifact_root"] = expand(data["artifact_root"], source)
    container = data.get("container")
    if isinstance(container, dict):
        if isinstance(container.get("image"), str):
            container["image"] = expand(container["image"], source)
        if isinstance(container.get("mounts"), list):
            container["mounts"] = [expand(m, source) if isinstance(m, str) else m for m in container["mounts"]]


def profile_for(profile: str | None, executor: str | None) -> Profile:
    """The profile a launch uses: ``--profile``, else the one named after ``--executor``, else ``local``.

    ``--executor`` then overrides the profile's own executor.
    """
    if executor is not None and executor not in EXECUTORS:
        raise ProfileError(f"unknown executor {executor!r}: valid executors are {', '.join(EXECUTORS)}")
    if profile is None:
        profile = executor or "local"
        available = available_profiles()
        if profile not in available:  # a cluster has no default profile: which one is for the user to say
            valid = ", ".join(sorted(available))
            raise ProfileError(f"--executor {executor} needs a cluster profile: pass --profile NAME (one of {valid})")
    loaded = load_profile(profile)
    if executor is not None and executor != loaded.executor:
        loaded = loaded.model_copy(update={"executor": executor})
    return loaded
