"""Weights & Biases for a step, when a cluster profile's ``[tracking]`` asks for it: its curves and its artifact.

The launcher turns ``[tracking]`` into the job environment below (``nemotron.launcher.profiles.TrackingOptions``); a
step run by hand reads the same variables, so ``NEMOTRON_WANDB_PROJECT=x python -m ...training`` tracks too. Without
``NEMOTRON_WANDB_PROJECT`` nothing here imports wandb (an optional extra: ``uv sync --extra tracking``). The API key
is wandb's own ``WANDB_API_KEY``, a profile secret: executors forward its value to the job's environment, and
nothing here passes it anywhere else (``wandb.login`` would write it into ``~/.netrc``).

One W&B run per step, its id derived from the step's output directory: the attempts of a requeued step, and the
training and final records of one step, are one W&B run (``resume="allow"``). ``record_step`` logs the step's artifact
with its inputs (``use_artifact`` on each lineage entry), so W&B's lineage graph is the one ``metadata.json`` records;
W&B refuses ``use_artifact`` in offline mode, so there the inputs' W&B names are in the logged artifact's metadata.
Artifacts are logged by reference (``file://``, not uploaded, not checksummed: a checkpoint may be terabytes), with
the figures people compare (step, scale, metrics, code digest, image) as their W&B metadata.

Light at import: the launcher reads the variable names from here.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ENV = "NEMOTRON_WANDB_PROJECT"
ENTITY_ENV = "NEMOTRON_WANDB_ENTITY"
MODE_ENV = "NEMOTRON_WANDB_MODE"
MODES = ("online", "offline", "disabled")
API_KEY_SECRET = "WANDB_API_KEY"  # read by wandb itself from the job's environment


@dataclass(frozen=True)
class WandbSettings:
    project: str
    entity: str | None
    mode: str

    @classmethod
    def from_env(cls) -> WandbSettings | None:
        """The job's settings, or None when the step is not tracked in W&B."""
        project = os.environ.get(PROJECT_ENV)
        mode = os.environ.get(MODE_ENV, "online")
        if not project or mode == "disabled":
            return None
        return cls(project, os.environ.get(ENTITY_ENV) or None, mode)


def run_id(output_dir: Path) -> str:
    """The W&B run id of the step writing ``output_dir``: the same for every attempt of that step."""
    return hashlib.sha256(str(Path(output_dir).resolve()).encode()).hexdigest()[:16]


def wandb_run(output_dir: Path, job_type: str, config: dict[str, Any] | None = None):
    """The open W&B run of the step writing ``output_dir`` (started here if this process has none for it yet), or None
    when W&B is not asked for. Its files go to ``output_dir/wandb`` (an offline run's directory included)."""
    settings = WandbSettings.from_env()
    if settings is None:
        return None
    try:
        import wandb
    except ModuleNotFoundError:
        from nemotron.errors import UserError

        raise UserError(
            f"{PROJECT_ENV} is set (the profile's [tracking]) but wandb is not installed where this step runs: "
            "install the tracking extra (uv sync --extra tracking), or drop [tracking]"
        ) from None

    wanted = run_id(output_dir)
    if wandb.run is not None:
        if wandb.run.id == wanted:
            if config:
                wandb.run.config.update(config, allow_val_change=True)
            return wandb.run
        wandb.run.finish()  # a stage module runs its steps in one process: one W&B run each
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    return wandb.init(
        project=settings.project,
        entity=settings.entity,
        mode=settings.mode,
        dir=str(output_dir),
        id=wanted,
        resume="allow",
        name="/".join(Path(output_dir).resolve().parts[-3:]),
        job_type=job_type,
        group=os.environ.get("NEMOTRON_RUN_ID"),  # the launcher's run: its steps side by side
        config=config or {},
        # the step's stderr is the launcher's log already; W&B's copy would be a second one to keep clean
        settings=wandb.Settings(console="off", silent=True),
    )


def record_step(step: str, artifact: Any) -> None:
    """Log a finished step's artifact to W&B with its lineage and its metrics as the run's summary, then end the run;
    nothing when W&B is not asked for. Called once per step, by rank 0, after the artifact is saved."""
    run = wandb_run(Path(artifact.path), job_type=step)
    if run is None:
        return
    import wandb

    inputs = [(entry.step, _reference(wandb, entry.type, Path(entry.path))) for entry in artifact.lineage]
    if not run.offline:  # W&B records inputs online only; offline, the metadata below names them
        for _, reference in inputs:
            run.use_artifact(reference)
    run.summary.update(dict(artifact.metrics))
    metadata = {
        # a list: several inputs may share a role (the Datasets of a blend)
        "inputs": [{"step": role, "name": reference.name} for role, reference in inputs],
        "step": step,
        "path": str(artifact.path),
        "code_digest": artifact.code_digest,
        "image_id": artifact.image_id,
        "code_version": artifact.code_version,
        "scale": artifact.config.get("scale"),
        "metrics": dict(artifact.metrics),
    }
    run.log_artifact(_reference(wandb, artifact.type, Path(artifact.path), metadata))
    run.finish()


def artifact_name(path: Path) -> str:
    """The W&B name of the artifact directory ``path``: derived from the path, so the step that made it and every step
    that reads it name the same W&B artifact (readable: its last three directories; unique: a digest of the path)."""
    resolved = Path(path).resolve()
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(resolved.parts[-3:])).strip("-.")[-100:]  # W&B: 128 at most
    return f"{readable}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:8]}"


def _reference(wandb, artifact_type: str, path: Path, metadata: dict[str, Any] | None = None):
    """A W&B artifact standing for the artifact directory ``path``, by reference."""
    reference = wandb.Artifact(artifact_name(path), type=artifact_type, metadata=metadata)
    reference.add_reference(Path(path).resolve().as_uri(), checksum=False)
    return reference
