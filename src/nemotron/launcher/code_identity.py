"""Which code a container job runs, and in which image: the plan's code digest, the image's record of it, the pin.

The plan fingerprints the content of every Python package its steps import (``package_digest``: each ``.py``
file's path and bytes). ``nemotron-launch build`` records the same digest, computed over the files it sends to the
builder, for every top-level package in the build context (``context_code``): as the docker label
``org.nemotron.code`` (JSON ``{package: digest}``) and in the squashfs ``index.json``. A container job runs the
image's copy of the code, not the working tree, so submit compares the two and refuses a mismatch (the image is
stale: rebuild it) before anything is queued. A package the plan uses but the image does not hold (mounted into the
container instead, as the tests mount their toy recipe) is not compared: the job imports it from where it was hashed.

The image is pinned per run (``pin_image``): job scripts name the image's content id (docker) or the
content-addressed squashfs the profile's ``.sqsh`` symlink points at (pyxis), never a tag or the symlink a later
build moves. Jobs get both identities as ``NEMOTRON_CODE_DIGEST`` (set by the plan) and ``NEMOTRON_IMAGE_ID`` (set
by the executor); the artifact kit records them in every ``metadata.json``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nemotron.artifact import CODE_DIGEST_ENV, IMAGE_ID_ENV
from nemotron.errors import UserError

__all__ = ["CODE_DIGEST_ENV", "IMAGE_ID_ENV"]

CODE_LABEL = "org.nemotron.code"
INDEX_FILE = "index.json"  # beside the squashfs files (containers.record_squashfs writes it)
Runner = Callable[[Sequence[str]], subprocess.CompletedProcess]


class StaleImageError(UserError):
    pass


# ------------------------------------------------------------------------------------------------ digests
def digest_python_files(files: Iterable[tuple[str, Path]]) -> str:
    """sha256 over each file's path (relative to its package root) and bytes, in path order; 16 hex digits.

    The one definition of a package's digest: the plan applies it to the installed package, ``build`` to the copy
    it sends to the builder, so the two agree exactly when the image holds the code the plan fingerprints.
    """
    digest = hashlib.sha256()
    for rel, path in sorted(files, key=lambda item: PurePosixPath(item[0])):
        digest.update(rel.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def package_digest(package: str) -> str:
    """The digest of an importable top-level package's ``.py`` files (~100 files in a few ms)."""
    spec = importlib.util.find_spec(package)
    roots = [Path(r) for r in (spec.submodule_search_locations or [])] if spec else []
    return digest_python_files((str(p.relative_to(root)), p) for root in roots for p in root.rglob("*.py"))


def code_digest(code: Mapping[str, str]) -> str:
    """One value for the code a plan runs: its packages' digests together (what artifacts record)."""
    return hashlib.sha256(json.dumps(dict(sorted(code.items()))).encode()).hexdigest()[:16]


def context_code(root: Path, files: Sequence[str]) -> dict[str, str]:
    """``{package: digest}`` for each top-level package in a build context: a directory with an ``__init__.py``
    whose parent has none (``src/nemotron``), digested over the context's ``.py`` files below it."""
    packages = {os.path.dirname(f) for f in files if os.path.basename(f) == "__init__.py"}
    record = {}
    for top in sorted(p for p in packages if p and os.path.dirname(p) not in packages):
        below = [(f[len(top) + 1 :], Path(root) / f) for f in files if f.startswith(f"{top}/") and f.endswith(".py")]
        record[os.path.basename(top)] = digest_python_files(below)
    return record


# ------------------------------------------------------------------------------------------------ the image
@dataclass(frozen=True)
class PinnedImage:
    name: str  # the profile's value (a tag, a .sqsh path)
    reference: str  # what job scripts name: the content id or the squashfs file, else ``name`` (unpinnable)
    image_id: str | None  # the image's content id (docker Id)
    code: dict[str, str] | None  # the code it was built from; None: it keeps no record (not made by build)
    note: str | None = None  # why it could not be pinned or checked, for one line on stderr

    def env(self) -> dict[str, str]:
        return {IMAGE_ID_ENV: self.image_id or self.reference}


def _label_code(text: str | None) -> dict[str, str] | None:
    try:
        code = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return code if isinstance(code, dict) else None


DOCKER_INSPECT = ["image", "inspect", "--format", "{{.Id}} {{json .Config.Labels}}"]


def parse_docker_inspect(name: str, stdout: str) -> PinnedImage | None:
    image_id, _, labels = stdout.strip().partition(" ")
    if not image_id.startswith("sha256:"):
        return None
    try:
        found = json.loads(labels) or {}
    except json.JSONDecodeError:
        found = {}
    return PinnedImage(name, image_id, image_id, _label_code(found.get(CODE_LABEL)))


def inspect_docker_image(name: str, run: Runner) -> PinnedImage | None:
    """The image as the engine ``run`` talks to knows it (content id, code label), or None if it has none."""
    done = run(["docker", *DOCKER_INSPECT, name])
    return parse_docker_inspect(name, done.stdout) if done.returncode == 0 else None


def pinned_container_image(image: str | None) -> str | None:
    """For submitters: the squashfs a profile's ``.sqsh`` symlink points at now, so a whole run uses one image even
    if a build moves the link while its jobs wait in the queue. Other references are returned unchanged."""
    if image and image.endswith(".sqsh") and Path(image).is_symlink():
        return os.path.realpath(image)
    return image


def resolve_squashfs(path: str, shell) -> PinnedImage | None:
    """The squashfs file a ``.sqsh`` path (usually build's symlink) points at now, with what ``index.json`` beside it
    says of it (matched by file name, which carries the image id); None if the path does not exist."""
    if getattr(shell, "host", None) is None:
        target = pinned_container_image(path) or path
        if not os.path.exists(target):
            return None
    else:  # submitting over SSH: the path is on the cluster
        done = shell.run(["readlink", "-e", path])
        target = done.stdout.strip()
        if done.returncode != 0 or not target:
            return None
    try:
        index = json.loads(shell.read_file(str(PurePosixPath(target).parent / INDEX_FILE)) or b"{}")
    except json.JSONDecodeError:
        index = {}
    for image_id, entry in (index.get("images") or {}).items():
        if isinstance(entry, dict) and PurePosixPath(str(entry.get("squashfs"))).name == PurePosixPath(target).name:
            code = entry.get("code")
            return PinnedImage(path, target, image_id, code if isinstance(code, dict) else None)
    return PinnedImage(path, target, None, None)


def _looks_like_file(image: str) -> bool:
    return image.startswith(("/", "./", "~")) or image.endswith(".sqsh")


def pin_image(runtime: str, image: str | None, shell, hint: str) -> PinnedImage | None:
    """The image every job of a run will name; None without a container. Raises if a squashfs file is missing."""
    if runtime not in ("docker", "pyxis") or not image:
        return None
    if runtime == "docker":
        found = inspect_docker_image(image, shell.run)
        if found is None:  # the compute nodes' engines may still pull it: run by name, as before
            note = f"image {image} is not in a Docker engine reachable from here: its jobs name it unpinned, unchecked"
            return PinnedImage(image, image, None, None, note)
        return found
    if not _looks_like_file(image):
        note = f"image {image} is pulled by pyxis when each job starts: it cannot be pinned or checked at submit"
        return PinnedImage(image, image, None, None, note)
    found = resolve_squashfs(image, shell)
    if found is None:
        where = f" on {shell.host}" if getattr(shell, "host", None) else ""
        raise StaleImageError(f"container image {image} does not exist{where}: build it with `{hint}`")
    return found


def check_image_code(plan_code: Mapping[str, str], image: PinnedImage, hint: str) -> str | None:
    """Raise ``StaleImageError`` if the image holds other code than the plan fingerprints; return a note when the
    image keeps no record to compare with (not made by ``nemotron-launch build``)."""
    if image.code is None:
        return image.note or (
            f"image {image.name} records no code digest (not made by `nemotron-launch build`): "
            "this launch cannot check that it holds the code the plan fingerprints"
        )
    for package, digest in sorted(plan_code.items()):
        held = image.code.get(package)
        if held is not None and held != digest:
            shown = image.name if image.reference == image.name else f"{image.name} ({image.reference})"
            raise StaleImageError(
                f"image {shown} holds other {package} code than this plan runs (image {held}, here {digest}): "
                f"rebuild it with `{hint}`, then launch again"
            )
    return image.note


def build_hint(recipe: str, profile: str) -> str:
    return f"nemotron-launch build {recipe} --profile {profile}"
