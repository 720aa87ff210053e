"""Artifacts: the contract between steps, whether they share a process, a Unix pipe or a Lustre filesystem.

An artifact is a directory of files described by ``metadata.json``. ``save()`` writes that file atomically
(temp file + fsync + rename), so a reader never sees a half-written artifact, even if the writer is killed.
Steps chain in three ways, resolved by ``Artifact.load`` in this order: an explicit path, a tracked name in the
file-based registry (``name:latest``, ``name:v3``), or the JSON an upstream step printed on stdin.

This module must stay light: the launcher imports it, so no torch/pyarrow/megatron here.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import stat
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nemotron._code_version import code_version
from nemotron.errors import UserError
from nemotron.fsutil import atomic_write_text
from nemotron.scale import SCALES, apply_scale

__all__ = [
    "SCALES",
    "Artifact",
    "ArtifactError",
    "LineageEntry",
    "apply_scale",
    "default_artifact_root",
    "print_complete",
    "read_stdin_document",
    "recorded_provides",
]

METADATA_FILE = "metadata.json"
STDOUT_SCHEMA = "nemotron.step-output/v1"
ARTIFACT_ROOT_ENV = "NEMOTRON_ARTIFACT_ROOT"
# Set by the launcher for every job it starts: the digest of the code the plan fingerprinted, and the content id of
# the container image the job runs in (absent outside containers). Recorded so an artifact says what produced it.
CODE_DIGEST_ENV = "NEMOTRON_CODE_DIGEST"
IMAGE_ID_ENV = "NEMOTRON_IMAGE_ID"


class ArtifactError(UserError):
    """A missing, corrupt or mismatched artifact; the message is one line meant for people."""


def default_artifact_root() -> Path:
    """Where steps run by hand keep their outputs: ``$NEMOTRON_ARTIFACT_ROOT`` or a user-writable cache dir."""
    env = os.environ.get(ARTIFACT_ROOT_ENV)
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "nemotron"


def _producer() -> str:
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        return f"slurm:{job}"
    return os.environ.get("NEMOTRON_PRODUCER", "local")


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


class LineageEntry(BaseModel):
    """One input artifact of a step: what it was, where it lives, and its tracked name/version if any."""

    model_config = ConfigDict(extra="forbid")

    type: str
    path: Path
    name: str | None = None
    version: int | None = None
    step: str | None = None
    # Its share of the training samples when the step read a weighted blend of inputs (None: not blended).
    weight: float | None = None


class Artifact(BaseModel):
    """Base of every step output. Subclasses add typed, validated fields (``num_examples: int = Field(gt=0)``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    path: Path
    type: str = ""
    created_at: _dt.datetime = Field(default_factory=_now)
    producer: str = Field(default_factory=_producer)
    metrics: dict[str, float] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    lineage: list[LineageEntry] = Field(default_factory=list)
    host: str = Field(default_factory=socket.gethostname)
    code_version: str = Field(default_factory=code_version)
    code_digest: str | None = Field(default_factory=lambda: os.environ.get(CODE_DIGEST_ENV) or None)
    image_id: str | None = Field(default_factory=lambda: os.environ.get(IMAGE_ID_ENV) or None)

    # Set by ``load`` when an artifact came through the registry, so downstream lineage records it.
    tracked_name: str | None = None
    tracked_version: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _check_type(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        declared = data.get("type") or cls.__name__
        if cls is not Artifact and declared != cls.__name__:
            raise ValueError(f"artifact is a {declared}, not a {cls.__name__}")
        return {**data, "type": declared}

    # ----------------------------------------------------------------------------------------------- writing
    @property
    def metadata_path(self) -> Path:
        return Path(self.path) / METADATA_FILE

    def save(self) -> Path:
        """Write ``<path>/metadata.json`` atomically (creating the directory) and return its path."""
        Path(self.path).mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.metadata_path, self.model_dump_json(indent=2) + "\n")
        return self.metadata_path

    def as_lineage(self, step: str | None = None, weight: float | None = None) -> LineageEntry:
        """How a downstream artifact records this one as an input (``weight``: its share of a blend)."""
        return LineageEntry(
            type=self.type,
            path=Path(self.path),
            name=self.tracked_name,
            version=self.tracked_version,
            step=step,
            weight=weight,
        )

    def publish(self, name: str, root: Path | None = None) -> int:
        """Register this (saved) artifact as the next version of ``name``; return the version number."""
        from nemotron.registry import Registry

        return Registry(root or default_artifact_root()).publish(name, self)

    # ----------------------------------------------------------------------------------------------- reading
    @classmethod
    def from_metadata_file(cls, metadata: Path) -> Artifact:
        """Every way a metadata file can be unreadable or corrupt is an ``ArtifactError`` (one line), never a
        traceback: the file may be a user's input, or a stray directory a plan scans for reusable outputs."""
        where = shown(metadata)
        try:
            text = metadata.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ArtifactError(f"no artifact at {shown(metadata.parent)}: {where} does not exist") from None
        except UnicodeDecodeError as exc:
            raise ArtifactError(f"corrupt {where}: not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:  # a directory, no permission, an I/O error
            raise ArtifactError(f"cannot read {where}: {exc.strerror or exc}") from None
        except ValueError as exc:  # a NUL byte in the path
            raise ArtifactError(f"cannot read {where}: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"corrupt {where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        except RecursionError:
            raise ArtifactError(f"corrupt {where}: JSON nested too deeply") from None
        except ValueError as exc:  # e.g. an integer longer than Python converts
            raise ArtifactError(f"corrupt {where}: {exc}") from None
        return cls.from_dict(data, source=where)

    @classmethod
    def from_dict(cls, data: Any, source: str) -> Artifact:
        if not isinstance(data, dict):
            raise ArtifactError(f"corrupt artifact in {source}: expected a JSON object")
        if cls is Artifact:  # the base class reads any artifact's core fields
            data = {k: v for k, v in data.items() if k in Artifact.model_fields}
        # An artifact written before these were recorded must not take the reading process's values for its own.
        data = {"code_digest": None, "image_id": None, **data}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ArtifactError(f"invalid artifact in {source}: {_first_error(exc)}") from None
        except RecursionError:  # valid JSON nested deeper than validation recurses (config is free-form)
            raise ArtifactError(f"corrupt artifact in {source}: nested too deeply") from None

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        tracked_artifact: str | None = None,
        root: str | os.PathLike[str] | None = None,
    ):
        """Resolve and validate an artifact: explicit path, then tracked name, then stdin pipe.

        ``path`` may be the artifact directory or its ``metadata.json``. ``tracked_artifact`` is ``name:latest``
        or ``name:vN`` in the registry under ``root`` (default: ``default_artifact_root()``).
        """
        if path is not None:
            p = Path(path).expanduser()
            return cls.from_metadata_file(p if p.name == METADATA_FILE else p / METADATA_FILE)
        if tracked_artifact is not None:
            from nemotron.registry import Registry

            registry = Registry(Path(root) if root else default_artifact_root())
            name, version, version_dir = registry.resolve(tracked_artifact)
            artifact = cls.from_metadata_file(version_dir / METADATA_FILE)
            artifact.tracked_name, artifact.tracked_version = name, version
            return artifact
        document = read_stdin_document()
        if document is not None:
            return cls._from_document(document)
        raise ArtifactError(
            f"no {cls.__name__} artifact given: pass its directory, a tracked name (NAME:latest or NAME:vN), "
            "or pipe the upstream step's output into stdin"
        )

    @classmethod
    def _from_document(cls, document: dict[str, Any]):
        artifacts = document.get("artifacts")
        if document.get("schema") != STDOUT_SCHEMA or not isinstance(artifacts, dict) or not artifacts:
            raise ArtifactError(f"stdin is not the output of a nemotron step (expected schema {STDOUT_SCHEMA})")
        candidates = [a for a in artifacts.values() if isinstance(a, dict)]
        if cls is not Artifact:
            candidates = [a for a in candidates if a.get("type") == cls.__name__]
            if not candidates:
                found = ", ".join(sorted({str(a.get("type")) for a in artifacts.values() if isinstance(a, dict)}))
                raise ArtifactError(f"stdin carries {found or 'no artifact'}, not a {cls.__name__}")
        # The JSON on stdin is a summary; the metadata on disk is the source of truth.
        return cls.load(path=candidates[-1]["path"])


def load_typed(type_name: str, path: Path | None = None, tracked_artifact: str | None = None) -> Artifact:
    """An artifact known only by its type's name (as a recipe declaration names it), found as ``Artifact.load`` finds
    one — path, tracked name, else the upstream JSON on stdin — and checked to be a ``type_name``; core fields only."""
    if path is None and tracked_artifact is None:
        document = read_stdin_document() or {}
        artifacts = document.get("artifacts") if isinstance(document.get("artifacts"), dict) else {}
        piped = [a.get("path") for a in artifacts.values() if isinstance(a, dict) and a.get("type") == type_name]
        if not piped or not piped[-1]:
            raise ArtifactError(
                f"no {type_name} artifact given: pass its directory, a tracked name (NAME:latest or NAME:vN), "
                "or pipe the upstream step's output into stdin"
            )
        path = Path(piped[-1])
    artifact = Artifact.load(path=path, tracked_artifact=tracked_artifact)
    if artifact.type != type_name:
        raise ArtifactError(f"{shown(artifact.path)} holds a {artifact.type} artifact, not a {type_name}")
    return artifact


def recorded_provides(directory: Path) -> frozenset[str]:
    """The ``provides`` recorded by an artifact on disk and by everything in its lineage, transitively (a Checkpoint
    carries what its Dataset provides): what it carries for a downstream step's ``validate``. Read as plain JSON: only
    some artifact types have the field; an unreadable entry carries nothing."""
    carried: set[str] = set()
    pending, seen = [Path(directory)], set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        try:
            data = json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        if not isinstance(data, dict):
            continue
        provides, lineage = data.get("provides"), data.get("lineage")
        if isinstance(provides, list):
            carried.update(item for item in provides if isinstance(item, str))
        if isinstance(lineage, list):
            pending += [Path(e["path"]) for e in lineage if isinstance(e, dict) and isinstance(e.get("path"), str)]
    return frozenset(carried)


def shown(value: Any) -> str:
    """A value as it goes into a one-line message: as typed when printable, else its repr, so that a newline in a
    path cannot split the error (``'/tmp/a\\nb'``)."""
    text = str(value)
    return text if text.isprintable() else repr(text)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "artifact"
    return f"{where}: {err.get('msg', 'invalid value').removeprefix('Value error, ')}"


_stdin_cache: dict[str, Any] = {}


def read_stdin_document() -> dict[str, Any] | None:
    """The upstream step's JSON document if stdin is a pipe or a regular file, else None. Read once per process."""
    if "doc" in _stdin_cache:
        return _stdin_cache["doc"]
    document = None
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        mode = 0
    if stat.S_ISFIFO(mode) or stat.S_ISREG(mode):
        text = sys.stdin.read().strip()
        if text:
            try:
                document = json.loads(text)
            except json.JSONDecodeError:
                raise ArtifactError("stdin is not JSON: pipe only the stdout of a nemotron step here") from None
            if not isinstance(document, dict):
                raise ArtifactError("stdin is not the output of a nemotron step (expected a JSON object)")
    _stdin_cache["doc"] = document
    return document


def print_complete(artifacts: dict[str, Artifact], stream_out=None, stream_err=None) -> None:
    """Print exactly one JSON document on stdout (for the next step's ``load``) and a summary on stderr.

    Schema: ``{"schema": "nemotron.step-output/v1", "artifacts": {STEP_NAME: <metadata.json contents>}}``.
    """
    out = stream_out or sys.stdout
    err = stream_err or sys.stderr
    document = {
        "schema": STDOUT_SCHEMA,
        "artifacts": {name: json.loads(a.model_dump_json()) for name, a in artifacts.items()},
    }
    out.write(json.dumps(document) + "\n")
    out.flush()
    for name, artifact in artifacts.items():
        headline = ", ".join(f"{k}={_fmt(v)}" for k, v in list(artifact.metrics.items())[:4])
        err.write(f"[{name}] {artifact.type} -> {artifact.path}" + (f" ({headline})" if headline else "") + "\n")
    err.flush()


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
