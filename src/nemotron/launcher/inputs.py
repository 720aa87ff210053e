"""Input artifacts of a plan: outputs planned in it, given by the user, or the newest complete matching ones on disk."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from nemotron.artifact import METADATA_FILE, Artifact, ArtifactError, recorded_provides


@dataclass(frozen=True)
class ArtifactRef:
    path: Path  # the artifact directory
    fingerprint: str  # what downstream fingerprints hash: the producing job's, or the metadata's content hash
    job: str | None  # the producing job when it is part of the plan
    # False for an artifact found on disk that was not made from what this plan resolved as its producer's inputs
    # (the newest stage0 Results may score an older checkpoint than the newest one): a required input still takes
    # it, an optional one is left unset rather than wired to an inconsistent artifact.
    made_from_plan: bool = True
    # What it carries for downstream steps' checks (see ``plan``): known from the producing job's Config when it is
    # planned; None for an artifact on disk, whose metadata records it (``recorded_provides``).
    provides: frozenset[str] | None = None

    def carried(self) -> frozenset[str]:
        return self.provides if self.provides is not None else recorded_provides(self.path)


def read_complete(directory: Path, artifact_type: str) -> Artifact | None:
    """The artifact in ``directory`` if its metadata.json is valid and of ``artifact_type``, else None.

    Anything unreadable (not UTF-8, nested too deeply, a directory, no permission) is an ``ArtifactError`` from
    ``from_metadata_file``: a stray corrupt sibling is simply not complete, it never fails a plan.
    """
    try:
        artifact = Artifact.from_metadata_file(Path(directory) / METADATA_FILE)
    except ArtifactError:
        return None
    return artifact if artifact.type == artifact_type else None


def is_complete(directory: Path, artifact_type: str) -> bool:
    return read_complete(directory, artifact_type) is not None


def content_fingerprint(directory: Path) -> str:
    return hashlib.sha256((Path(directory) / METADATA_FILE).read_bytes()).hexdigest()[:12]


def load_given_input(path: Path | None, tracked: str | None, artifact_type: str, root: Path) -> ArtifactRef:
    """An input named by an override (``training.dataset_path=DIR`` or ``training.dataset_artifact=NAME:latest``).

    Unlike reuse checks, a bad given input is the user's error: missing, corrupt or wrong type -> one line.
    """
    artifact = Artifact.load(path=path, tracked_artifact=None if path else tracked, root=root)
    if artifact.type != artifact_type:
        where = path or tracked
        raise ArtifactError(f"{where} holds a {artifact.type} artifact, not the {artifact_type} this step needs")
    # A tracked name resolves to the artifact's own directory (the registry holds only its metadata).
    directory = Path(artifact.path) if path is None else _directory(Path(path))
    return ArtifactRef(directory, content_fingerprint(directory), None)


def _directory(path: Path) -> Path:
    path = path.expanduser().absolute()
    return path.parent if path.name == METADATA_FILE else path


def find_input(
    step_dir: Path, artifact_type: str, scale: str, made_from: Collection[Path] | None = None
) -> ArtifactRef | None:
    """The newest complete ``artifact_type`` under ``step_dir`` made at ``scale`` (by its recorded config).

    With ``made_from`` (the artifacts this plan resolved as the producing step's inputs), the newest one whose
    lineage holds them all is preferred, and the returned ref says whether it is such a one.
    """
    wanted = None if made_from is None else {_resolved(p) for p in made_from}
    newest: tuple[tuple[bool, str], Path] | None = None
    for metadata in step_dir.glob(f"*/{METADATA_FILE}"):
        artifact = read_complete(metadata.parent, artifact_type)
        if artifact is None or artifact.config.get("scale") != scale:
            continue
        consistent = wanted is not None and wanted <= {_resolved(entry.path) for entry in artifact.lineage}
        key = (consistent, artifact.created_at.isoformat())
        if newest is None or key > newest[0]:
            newest = (key, metadata.parent)
    if newest is None:
        return None
    return ArtifactRef(newest[1], content_fingerprint(newest[1]), None, made_from_plan=newest[0][0])


def _resolved(path: Path) -> Path:
    return Path(path).expanduser().resolve()


def headline_metric(directory: Path) -> str:
    """The first metric of an artifact, for status tables ('' when none or unreadable)."""
    try:
        metrics = json.loads((Path(directory) / METADATA_FILE).read_text()).get("metrics") or {}
    except (OSError, ValueError, AttributeError, RecursionError):
        return ""
    if not isinstance(metrics, dict):
        return ""
    for key, value in metrics.items():
        return f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
    return ""
