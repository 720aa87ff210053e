"""The toy steps' shared code: each writes a small real artifact through the artifact kit."""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nemotron.artifact import Artifact
from nemotron.errors import REQUEUE_EXIT_CODE, UserError
from nemotron.scale import Scale
from nemotron.step import config_snapshot, resolve_output_dir


class Dataset(Artifact):
    num_examples: int


class Checkpoint(Artifact):
    total: int


class Results(Artifact):
    score: float


@dataclass
class DataConfig:
    scale: Scale = "tiny"
    seed: int = 1234
    output_dir: Path | None = None
    num_examples: int = 10
    note: str = ""


@dataclass
class TrainConfig:
    scale: Scale = "tiny"
    seed: int = 1234
    output_dir: Path | None = None
    dataset_path: Path | None = None
    dataset_artifact: str | None = None
    init_checkpoint_path: Path | None = None
    init_checkpoint_artifact: str | None = None
    lr: float = 0.1
    train_iters: int | None = None
    sleep_s: float = 0.0
    fail: bool = False
    exit_code: int = 3  # the exit code of a failure on purpose (93: "do not restart")
    tags: list[str] | None = None
    digest_of: str = ""  # an environment variable (a secret) whose sha256 the step prints: it reached the job

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise UserError(f"lr must be positive, got {self.lr}")


@dataclass
class EvalConfig:
    scale: Scale = "tiny"
    seed: int = 1234
    output_dir: Path | None = None
    checkpoint_path: Path | None = None
    checkpoint_artifact: str | None = None
    baseline_path: Path | None = None  # the previous stage's Results (wired by the plan for stage1_toy)
    baseline_artifact: str | None = None


def curate(config: DataConfig, stage: str) -> Dataset:
    out = resolve_output_dir(config.output_dir, "toy", stage, "data_curation", config.scale, config.seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data.txt").write_text("\n".join(str(i + config.seed) for i in range(config.num_examples)))
    print(f"curated {config.num_examples} examples", file=sys.stderr)
    artifact = Dataset(path=out, num_examples=config.num_examples, config=config_snapshot(config))
    artifact.metrics = {"num_examples": float(config.num_examples)}
    artifact.save()
    return artifact


def train(config: TrainConfig, stage: str) -> Checkpoint:
    dataset = Dataset.load(path=config.dataset_path, tracked_artifact=config.dataset_artifact)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGUSR1, lambda *_: stop.update(now=True))  # Slurm's time-limit warning
    deadline = time.monotonic() + config.sleep_s
    print(f"training on {dataset.path} (rank {os.environ.get('RANK', '0')})", file=sys.stderr, flush=True)
    if config.digest_of:
        value = os.environ.get(config.digest_of, "")
        print(f"{config.digest_of} sha256 {hashlib.sha256(value.encode()).hexdigest()}", file=sys.stderr, flush=True)
    while time.monotonic() < deadline and not stop["now"]:
        time.sleep(0.05)
    if stop["now"]:
        raise SystemExit(REQUEUE_EXIT_CODE)
    if config.fail:
        print("toy training failed on purpose", file=sys.stderr, flush=True)
        raise SystemExit(config.exit_code)
    start = 0
    lineage = [dataset.as_lineage(step="data_curation")]
    if config.init_checkpoint_path is not None:
        init = Checkpoint.load(path=config.init_checkpoint_path)
        start, lineage = init.total, [*lineage, init.as_lineage(step="training")]
    total = start + sum(int(x) for x in (Path(dataset.path) / "data.txt").read_text().split())
    out = resolve_output_dir(config.output_dir, "toy", stage, "training", config.scale, config.seed)
    artifact = Checkpoint(path=out, total=total, config=config_snapshot(config), lineage=lineage)
    artifact.metrics = {"training_loss": 1.0 / (1 + total * config.lr)}
    artifact.save()
    return artifact


def evaluate(config: EvalConfig, stage: str) -> Results:
    checkpoint = Checkpoint.load(path=config.checkpoint_path, tracked_artifact=config.checkpoint_artifact)
    out = resolve_output_dir(config.output_dir, "toy", stage, "evaluation", config.scale, config.seed)
    score = float(checkpoint.total % 97) / 97
    lineage = [checkpoint.as_lineage()]
    if config.baseline_path is not None:
        lineage.append(Results.load(path=config.baseline_path).as_lineage(step="baseline"))
    artifact = Results(path=out, score=score, config=config_snapshot(config), lineage=lineage)
    artifact.metrics = {"score": score}
    artifact.save()
    return artifact
