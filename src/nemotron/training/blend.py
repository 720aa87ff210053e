"""A weighted blend of Dataset artifacts for pretraining: ``--blend DIR:WEIGHT ...`` (``training.blend=A:0.7,B:0.3``).

Torch-free: the step's ``validate`` parses and checks the entries, at the start of the step and in the launcher at
plan time. Training reads the blend through megatron-core's ``BlendedMegatronDatasetBuilder`` (``training.data``);
this module knows what a valid blend is, each entry's share of the samples, and the list of indexed-dataset
prefixes and weights that megatron reads for it (a sharded Dataset is several prefixes: ``Dataset.train_blend``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nemotron.artifact import METADATA_FILE, ArtifactError
from nemotron.data.artifacts import Dataset
from nemotron.errors import UserError

FLAG = "--blend"
EXAMPLE = "/data/web:0.7 /data/math:0.3"


@dataclass(frozen=True)
class BlendEntry:
    path: Path  # a Dataset artifact directory, absolute
    weight: float  # as given; megatron normalises the weights to shares


def parse_blend(entries: Sequence[str]) -> list[BlendEntry]:
    """``DIR:WEIGHT`` entries -> ``BlendEntry``s; anything malformed is one ``UserError`` naming the entry.

    The weight follows the last ``:`` (a directory may contain one). Paths must be absolute: a launcher's job runs
    in another working directory, where a relative path would name another directory or none.
    """
    blend: list[BlendEntry] = []
    for entry in entries:
        directory, sep, weight_text = entry.rpartition(":")
        if not sep or not directory:
            raise UserError(f"{FLAG} entry {entry!r} is not DIR:WEIGHT (e.g. {FLAG} {EXAMPLE})")
        try:
            weight = float(weight_text)
        except ValueError:
            raise UserError(f"{FLAG} entry {entry!r}: weight {weight_text!r} is not a number") from None
        if not (math.isfinite(weight) and weight > 0):
            raise UserError(f"{FLAG} entry {entry!r}: weight {weight_text} must be a positive number")
        path = Path(directory).expanduser()
        if not path.is_absolute():
            raise UserError(f"{FLAG} entry {entry!r}: give the Dataset directory as an absolute path")
        if any(_same(path, e.path) for e in blend):
            raise UserError(f"{FLAG} names {directory!r} twice: give each Dataset once, with its total weight")
        blend.append(BlendEntry(path, weight))
    return blend


def shares(weights: Sequence[float]) -> list[float]:
    """Each entry's expected share of the training samples: its weight normalised, as megatron does."""
    total = sum(weights)
    return [w / total for w in weights]


def check_blend(blend: Sequence[BlendEntry], primary: Path | None) -> None:
    """Every entry is a Dataset artifact on disk, tokenized exactly as ``primary`` (the step's ``--dataset-path``,
    whose tokenizer the model is built for) when that exists yet. Called where the files are this process's."""
    primary_tokenizer = _tokenizer_digest(Dataset.load(path=primary)) if _exists(primary) else None
    for entry in blend:
        if not (entry.path / METADATA_FILE).is_file():
            raise UserError(f"{FLAG} {entry.path}: no Dataset artifact there ({METADATA_FILE} does not exist)")
        try:
            dataset = Dataset.load(path=entry.path)
        except ArtifactError as err:
            raise UserError(f"{FLAG} {entry.path}: {err}") from None
        if primary_tokenizer is not None and _tokenizer_digest(dataset) != primary_tokenizer:
            raise UserError(
                f"{FLAG} {entry.path} was tokenized with another tokenizer than --dataset-path {primary}: a blend "
                "needs one vocabulary (curate it with --tokenizer-path of that Dataset's tokenizer.json)"
            )


def _tokenizer_digest(dataset: Dataset) -> str | None:
    path = Path(dataset.tokenizer_path)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _exists(path: Path | None) -> bool:
    return path is not None and (Path(path).expanduser() / METADATA_FILE).is_file()


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


@dataclass(frozen=True)
class MegatronBlend:
    """What megatron's ``blend`` takes (prefixes, weights or None for one prefix), and for each prefix the index of
    the Dataset artifact it belongs to (``owners``), so samples drawn per prefix can be counted per artifact."""

    prefixes: list[Path]
    weights: list[float] | None
    owners: list[int]


def megatron_blend(datasets: Sequence[Dataset], weights: Sequence[float] | None, split: str) -> MegatronBlend:
    """The ``split`` ("train"/"valid") of ``datasets`` mixed by ``weights`` (None: one Dataset read as it is): each
    Dataset's weight is spread over its shards by their own weights (their share of its tokens)."""
    if weights is None:
        (dataset,) = datasets
        prefixes, own = dataset.train_blend() if split == "train" else dataset.valid_blend()
        return MegatronBlend(prefixes, own, [0] * len(prefixes))
    prefixes, mixed, owners = [], [], []
    for owner, (dataset, share) in enumerate(zip(datasets, shares(weights), strict=True)):
        parts, own = dataset.train_blend() if split == "train" else dataset.valid_blend()
        own = own or [1.0] * len(parts)
        prefixes += parts
        mixed += [share * w for w in shares(own)]
        owners += [owner] * len(parts)
    return MegatronBlend(prefixes, mixed, owners)
