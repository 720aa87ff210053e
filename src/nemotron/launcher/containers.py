"""``nemotron-launch build``: the recipe's image, tagged by the content of what is sent to the builder.

The build context is chosen by ``containers/.dockerignore`` (an allowlist; a recipe may have its own), packed into
a deterministic tar and sent on stdin (``docker build -``), so the tag ``nemotron/<recipe>:ctx-<hash>`` is the hash
of exactly the files sent (paths, exec bits, contents), the Dockerfile and the build arguments. An image with that
tag already in the engine means nothing changed: the build is a no-op (and says so, with the time the check took).
The image is also tagged ``nemotron/<recipe>:latest`` (what the ``docker`` profile runs); ``--push REGISTRY`` pushes
the content tag.
The image is labelled with the digest of the Python code it holds (``code_identity``): submit refuses to run a plan
in an image built from other code.

For profiles whose Slurm runtime is pyxis, the image becomes an enroot squashfs on the shared filesystem, cached by
the image's content id (``docker image inspect`` Id), never by tag: ``<dir>/<recipe>-<id12>.sqsh`` with an
``index.json`` beside it (image id -> squashfs, tags, time). ``<dir>`` is the directory of the profile's
``container.image`` when that is a ``.sqsh`` path (which then becomes a symlink to the current squashfs, so the
profile picks it up), else ``<artifact_root>/containers``. ``enroot import dockerd://IMAGE`` runs here when enroot
is installed; otherwise, with ``--push``, a job on the profile's CPU partition imports it from the registry.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from nemotron.errors import UserError
from nemotron.fsutil import atomic_write_text
from nemotron.launcher.code_identity import CODE_LABEL, INDEX_FILE, context_code

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE_IN_CONTEXT = ".nemotron-build/Dockerfile"


class BuildError(UserError):
    pass


def require_binary(name: str, install: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BuildError(f"{name} is not installed (or not on PATH): {install}")
    return path


# ------------------------------------------------------------------------------------------------ the context
def read_ignore_file(path: Path | None) -> list[tuple[bool, str]]:
    """``.dockerignore`` lines as (is_exception, pattern); comments and blanks dropped."""
    if path is None or not path.exists():
        return []
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        rules.append((negate, os.path.normpath(pattern.lstrip("/")).rstrip("/")))
    return rules


def _matches(rel: str, pattern: str) -> bool:
    """Docker's rule: a pattern matches a path or any of its parent directories; ``**`` spans directories."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    if "**" in pattern:
        regex = fnmatch.translate(pattern).replace(".*.*/", "(.*/)?").replace(".*.*", ".*")
        return any(re.match(regex, p) for p in prefixes)
    return any(fnmatch.fnmatchcase(p, pattern) and p.count("/") == pattern.count("/") for p in prefixes)


def is_ignored(rel: str, rules: list[tuple[bool, str]]) -> bool:
    ignored = False
    for negate, pattern in rules:  # the last matching rule wins, as in docker
        if _matches(rel, pattern):
            ignored = not negate
    return ignored


def context_files(root: Path, rules: list[tuple[bool, str]]) -> list[str]:
    """Relative paths of the regular files (and symlinks) the build would send, sorted."""
    files = []
    exceptions = [pattern for negate, pattern in rules if negate]
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        # Prune ignored directories no exception reaches into (as docker does): never walk a 6 GB .venv.
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not is_ignored(rel := d if rel_dir == "." else f"{rel_dir}/{d}", rules)
            or any(e.startswith(f"{rel}/") or "*" in e for e in exceptions)
        )
        for name in filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if not is_ignored(rel, rules):
                files.append(rel)
    return sorted(files)


@dataclass(frozen=True)
class BuildContext:
    root: Path
    dockerfile: Path
    files: tuple[str, ...]
    build_args: tuple[tuple[str, str], ...] = ()

    @classmethod
    def collect(
        cls, root: Path, dockerfile: Path, ignore_file: Path | None, build_args: dict[str, str]
    ) -> BuildContext:
        if not Path(dockerfile).is_file():
            raise BuildError(f"no Dockerfile at {dockerfile}")
        files = tuple(context_files(Path(root), read_ignore_file(ignore_file)))
        return cls(Path(root), Path(dockerfile), files, tuple(sorted(build_args.items())))

    def code(self) -> dict[str, str]:
        """The code the image will hold, digested as a plan digests it (submit compares the two)."""
        return context_code(self.root, self.files)

    def labels(self) -> dict[str, str]:
        return {CODE_LABEL: json.dumps(self.code(), sort_keys=True)}

    def digest(self) -> str:
        """sha256 over every file's path, exec bit and content, the Dockerfile, the build arguments and labels."""
        h = hashlib.sha256()
        for rel in self.files:
            path = self.root / rel
            h.update(rel.encode() + b"\0")
            if path.is_symlink():
                h.update(b"link:" + os.readlink(path).encode() + b"\0")
                continue
            h.update(b"x" if os.access(path, os.X_OK) else b"-")
            h.update(hashlib.sha256(path.read_bytes()).digest())
        h.update(b"dockerfile\0" + self.dockerfile.read_bytes())
        h.update(json.dumps(self.build_args).encode())
        # Labels derive from the files, but hashing them too re-tags (so rebuilds) images made before they existed.
        h.update(json.dumps(self.labels(), sort_keys=True).encode())
        return h.hexdigest()

    def tar(self) -> bytes:
        """The context as sent: deterministic (sorted, mtime 0, root-owned), the Dockerfile at a fixed path."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for rel in (*self.files, DOCKERFILE_IN_CONTEXT):
                source = self.dockerfile if rel == DOCKERFILE_IN_CONTEXT else self.root / rel
                info = tar.gettarinfo(str(source), arcname=rel)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
                if info.isreg():
                    with open(source, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
        return buffer.getvalue()


def recipe_context(recipe: str, base_image: str | None, dockerfile: str | Path | None = None) -> BuildContext:
    """The recipe's build: the repository as context, the shared ``containers/{Dockerfile,.dockerignore}`` (with
    ``RECIPE=<recipe>``) unless ``containers/<recipe>/`` has its own; ``dockerfile`` replaces the Dockerfile (a
    site's variant, the tests' offline one) on the same context."""
    containers = REPO / "containers"
    directory = containers / recipe
    if not (REPO / "pyproject.toml").exists():
        raise BuildError(f"build needs a source checkout of nemotron-launch; {REPO} has no pyproject.toml")
    valid = sorted(p.name for p in containers.iterdir() if p.is_dir())
    if recipe not in valid:  # a name from this listing, never a path: "../x" names nothing here
        raise BuildError(f"no container for recipe {recipe!r}: valid recipes are {', '.join(valid) or 'none'}")
    args = {"RECIPE": recipe, **({"BASE_IMAGE": base_image} if base_image else {})}
    own = directory / "Dockerfile"
    chosen = (
        Path(dockerfile).expanduser().resolve() if dockerfile else own if own.exists() else containers / "Dockerfile"
    )
    ignore = directory / ".dockerignore"
    return BuildContext.collect(REPO, chosen, ignore if ignore.exists() else containers / ".dockerignore", args)


# --------------------------------------------------------------------------------------------------- docker
@dataclass(frozen=True)
class BuiltImage:
    tag: str
    image_id: str
    built: bool  # False: the context was unchanged and the image already existed
    seconds: float
    code: dict[str, str] | None = None  # {package: digest} of the code in the image (its label)


def image_repository(recipe: str) -> str:
    return f"nemotron/{recipe}"


def docker_build_command(context: BuildContext, tags: list[str]) -> list[str]:
    command = ["docker", "build", "--file", DOCKERFILE_IN_CONTEXT]
    for tag in tags:
        command += ["--tag", tag]
    for key, value in context.build_args:
        command += ["--build-arg", f"{key}={value}"]
    for key, value in context.labels().items():
        command += ["--label", f"{key}={value}"]
    return [*command, "-"]


def _docker(*args: str, input: bytes | None = None, stream: bool = False) -> subprocess.CompletedProcess:
    """A docker CLI call; with ``stream`` its output goes to stderr (build progress) instead of being captured."""
    require_binary("docker", "install Docker Engine (Debian: apt-get install docker.io)")
    out = 2 if stream else subprocess.PIPE  # fd 2: the build's progress is for people, like every log
    return subprocess.run(["docker", *args], input=input, stdout=out, stderr=out)


def local_image_id(reference: str) -> str | None:
    result = _docker("image", "inspect", "--format", "{{.Id}}", reference)
    return result.stdout.decode().strip() if result.returncode == 0 else None


def build_image(context: BuildContext, repository: str) -> BuiltImage:
    started = time.monotonic()
    tag = f"{repository}:ctx-{context.digest()[:12]}"
    existing = local_image_id(tag)
    if existing is None:
        command = docker_build_command(context, [tag, f"{repository}:latest"])
        print(f"building {tag} ({len(context.files)} files in the context)", file=sys.stderr)
        if _docker(*command[1:], input=context.tar(), stream=True).returncode != 0:
            raise BuildError(f"docker build of {tag} failed (its output is above)")
        existing = local_image_id(tag)
        seconds, built = time.monotonic() - started, True
        print(f"built {tag} in {seconds:.1f} s", file=sys.stderr)
    else:
        _docker("tag", tag, f"{repository}:latest")
        seconds, built = time.monotonic() - started, False
        print(f"context unchanged: {tag} is up to date, nothing to build (checked in {seconds:.2f} s)", file=sys.stderr)
    return BuiltImage(tag, existing or "", built, seconds, context.code())


def push_image(tag: str, registry: str) -> str:
    remote = f"{registry.rstrip('/')}/{tag}"
    for args in (("tag", tag, remote), ("push", remote)):
        result = _docker(*args, stream=args[0] == "push")
        if result.returncode != 0:
            raise BuildError(f"docker {args[0]} {remote} failed: {_last_line(result)}")
    return remote


def _last_line(result: subprocess.CompletedProcess) -> str:
    text = (result.stderr or b"").decode(errors="replace").strip()
    return text.splitlines()[-1] if text else f"exit code {result.returncode}"


# ------------------------------------------------------------------------------------------ enroot squashfs
def squashfs_dir(profile) -> Path:
    image = profile.container.image
    if image and image.endswith(".sqsh"):
        return Path(image).parent
    return profile.resolved_artifact_root() / "containers"


def squashfs_path(directory: Path, recipe: str, image_id: str) -> Path:
    return Path(directory) / f"{recipe}-{image_id.removeprefix('sha256:')[:12]}.sqsh"


def enroot_import_command(source: str, output: Path) -> list[str]:
    """``source``: ``dockerd://IMAGE`` (this machine's engine) or ``docker://REGISTRY#IMAGE`` (a registry)."""
    return ["enroot", "import", "--output", str(output), source]


def enroot_source(tag: str, pushed: str | None) -> str:
    if pushed is None:
        return f"dockerd://{tag}"
    registry, _, image = pushed.partition("/")
    return f"docker://{registry}#{image}"


def import_sbatch_script(source: str, output: Path, partition: str | None, account: str | None) -> str:
    """A CPU job importing the image where enroot exists (the compute nodes) when this machine has none."""
    lines = ["#!/bin/bash", "#SBATCH --job-name=nemotron-enroot-import", "#SBATCH --nodes=1", "#SBATCH --time=01:00:00"]
    lines += [f"#SBATCH --partition={partition}"] if partition else []
    lines += [f"#SBATCH --account={account}"] if account else []
    tmp = output.with_name(output.name + ".partial")
    lines += [
        "set -euo pipefail",
        f"rm -f {shlex.quote(str(tmp))}",
        shlex.join(enroot_import_command(source, tmp)),
        f"mv -f {shlex.quote(str(tmp))} {shlex.quote(str(output))}  # only a complete squashfs gets the real name",
    ]
    return "\n".join(lines) + "\n"


def read_index(directory: Path) -> dict:
    try:
        return json.loads((Path(directory) / INDEX_FILE).read_text())
    except FileNotFoundError:
        return {"images": {}}


def record_squashfs(
    directory: Path, image_id: str, squashfs: Path, tags: list[str], recipe: str, code: dict | None = None
) -> None:
    """Index the squashfs by image id, with the code it holds: a squashfs keeps no docker labels, and submit reads
    this entry to check and record the code and image a pyxis job runs."""
    index = read_index(directory)
    entry = index["images"].setdefault(image_id, {"squashfs": str(squashfs), "recipe": recipe, "tags": []})
    entry["tags"] = sorted(set(entry["tags"]) | set(tags))
    if code is not None:
        entry["code"] = code
    entry["updated_at"] = _dt.datetime.now(_dt.UTC).isoformat()
    atomic_write_text(Path(directory) / INDEX_FILE, json.dumps(index, indent=2, sort_keys=True) + "\n")


def point_profile_at(profile, squashfs: Path) -> None:
    """Make the profile's ``container.image`` (a .sqsh path) a symlink to the current squashfs, atomically."""
    image = profile.container.image
    if not (image and image.endswith(".sqsh")) or Path(image) == squashfs:
        return
    link = Path(image)
    if link.exists() and not link.is_symlink():
        raise BuildError(f"{link} is a file, not a symlink made by build: move it away so build can manage it")
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(squashfs.name)
    os.replace(tmp, link)


def convert_to_squashfs(profile, recipe: str, image: BuiltImage, pushed: str | None) -> Path:
    directory = squashfs_dir(profile)
    target = squashfs_path(directory, recipe, image.image_id)
    if target.exists():
        print(f"squashfs for {image.image_id[:19]} already at {target}: nothing to convert", file=sys.stderr)
    elif shutil.which("enroot"):
        check_importable(image.tag)
        directory.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.unlink(missing_ok=True)
        if subprocess.run(enroot_import_command(enroot_source(image.tag, None), partial), stdout=2).returncode:
            raise BuildError(f"enroot import of {image.tag} failed (its output is above)")
        os.replace(partial, target)
    elif pushed is not None:
        _import_on_cluster(profile, image, pushed, target)
    else:
        check_squashfs_route(profile, None)  # raises: no enroot here and nothing pushed
    tags = [image.tag, *([pushed] if pushed else [])]
    record_squashfs(directory, image.image_id, target, tags, recipe, image.code)
    point_profile_at(profile, target)
    return target


def check_importable(tag: str) -> None:
    """``enroot import dockerd://`` starts with ``docker create``, which refuses an image with neither CMD nor
    ENTRYPOINT ("No command specified"; a ``docker import``-ed base has none): one line saying what to add instead."""
    result = _docker("image", "inspect", "--format", "{{json .Config.Cmd}} {{json .Config.Entrypoint}}", tag)
    if result.returncode == 0 and all(v in ("null", "[]") for v in result.stdout.decode().split()):
        raise BuildError(
            f"{tag} has neither CMD nor ENTRYPOINT, and enroot import needs one (docker create refuses the image): "
            'add CMD ["/bin/bash"] to the Dockerfile'
        )


def check_squashfs_route(profile, push: str | None) -> None:
    """Before building: without enroot here, the image must reach a registry that a cluster job can import from."""
    if shutil.which("enroot") is not None:
        return
    if not push:
        raise BuildError(
            f"profile {profile.name} runs squashfs images (pyxis) and enroot is not installed here: install enroot "
            "(https://github.com/NVIDIA/enroot) or pass --push REGISTRY so a cluster job can import the image"
        )
    require_binary("sbatch", "install the Slurm client (Debian: apt-get install slurm-client) or enroot")


def _import_on_cluster(profile, image: BuiltImage, pushed: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    script = import_sbatch_script(
        enroot_source(image.tag, pushed), target, profile.slurm.partitions.get("cpu"), profile.slurm.account
    )
    print(f"enroot is not installed here: importing {pushed} in a Slurm job on the cpu partition", file=sys.stderr)
    result = subprocess.run(["sbatch", "--wait", "--parsable"], input=script.encode(), capture_output=True)
    if result.returncode != 0 or not target.exists():
        raise BuildError(f"the enroot import job failed: {_last_line(result)}")


# ------------------------------------------------------------------------------------------------------ CLI
def build_cli(args) -> int:
    """``nemotron-launch build RECIPE [--profile P] [--base-image IMG] [--dockerfile F] [--push REGISTRY]``; JSON on
    stdout."""
    from nemotron.launcher.profiles import profile_for

    profile = profile_for(args.profile, None) if args.profile else None
    require_binary("docker", "install Docker Engine (Debian: apt-get install docker.io)")
    pyxis = profile is not None and profile.slurm.container_runtime == "pyxis"
    if pyxis:
        check_squashfs_route(profile, args.push)
    context = recipe_context(args.recipe, args.base_image, getattr(args, "dockerfile", None))
    image = build_image(context, image_repository(args.recipe))
    pushed = push_image(image.tag, args.push) if args.push else None
    squashfs = convert_to_squashfs(profile, args.recipe, image, pushed) if pyxis else None
    document = {
        "image": image.tag,
        "image_id": image.image_id,
        "built": image.built,
        "seconds": round(image.seconds, 3),
        "pushed": pushed,
        "squashfs": str(squashfs) if squashfs else None,
    }
    sys.stdout.write(json.dumps(document) + "\n")
    return 0
