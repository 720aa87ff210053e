"""nano2 stage2 evaluation: preference accuracy and reward margin on held-out pairs, for the aligned model AND its
input model (found through the checkpoint's lineage), so the gain from DPO is recorded in one artifact.

Metrics: ``preference/accuracy`` (share of held-out pairs with logp(chosen) > logp(rejected), summed over response
tokens), ``preference/logp_margin`` (mean logp(chosen) - logp(rejected)), ``preference/reward_margin`` and
``preference/reward_accuracy`` (DPO's implicit reward beta * log(pi/ref), chosen minus rejected, against the training
reference); the same with an ``input_model/`` prefix for the starting checkpoint.

    ... training.py | python src/nemotron/recipes/nano2/stage2_alignment/evaluation.py
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nemotron.evaluation.artifacts import Results
from nemotron.scale import Scale
from nemotron.step import run_step

STEP = "evaluation"


@dataclass
class Config:
    """Evaluate a DPO Checkpoint (and its input model) on held-out preference pairs."""

    scale: Scale = "tiny"
    seed: int = 1234
    checkpoint_path: Path | None = None
    """Stage2 Checkpoint directory (else --checkpoint-artifact, else the training step's JSON on stdin)."""
    checkpoint_artifact: str | None = None
    """Tracked checkpoint, e.g. dpo-checkpoint:latest."""
    output_dir: Path | None = None
    limit: int | None = None
    """At most this many held-out pairs (all when unset)."""
    batch_size: int = 32


def main(config: Config) -> Results:
    from nemotron.data.preference_artifacts import PreferenceDataset
    from nemotron.data.preferences import load_tokenized_pairs
    from nemotron.errors import UserError
    from nemotron.step import config_snapshot, resolve_output_dir
    from nemotron.training.artifacts import Checkpoint

    if config.limit is not None and config.limit < 1:
        raise UserError(f"--limit must be a positive number of pairs, got {config.limit}")
    if config.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {config.batch_size}")
    checkpoint = Checkpoint.load(path=config.checkpoint_path, tracked_artifact=config.checkpoint_artifact)
    dataset = PreferenceDataset.load(path=_lineage_path(checkpoint, "data_curation"))
    input_model = Checkpoint.load(path=_lineage_path(checkpoint, "init_checkpoint"))
    reference_path = checkpoint.config.get("reference_path") or input_model.path
    reference = Checkpoint.load(path=reference_path)
    beta = float(checkpoint.config.get("beta", 0.1))
    output_dir = resolve_output_dir(config.output_dir, "nano2", "stage2_alignment", STEP, config.scale, config.seed)
    pairs = load_tokenized_pairs(dataset.heldout_path)[: config.limit]

    scores = {
        name: _pair_logps(model, pairs, config.batch_size)
        for name, model in (("policy", checkpoint), ("input", input_model), ("reference", reference))
    }
    from nemotron.training.dpo import preference_metrics

    tasks = {
        "preference": preference_metrics(scores["policy"], scores["reference"], beta),
        "input_model/preference": preference_metrics(scores["input"], scores["reference"], beta),
    }
    metrics = {f"{task}/{name}": value for task, values in tasks.items() for name, value in values.items()}
    metrics["preference/accuracy_gain"] = metrics["preference/accuracy"] - metrics["input_model/preference/accuracy"]
    results = Results(
        path=output_dir,
        tasks=tasks,
        num_samples={task: len(pairs) for task in tasks},
        checkpoint_path=Path(checkpoint.path),
        dataset_path=Path(dataset.path),
        metrics=metrics,
        config=config_snapshot(config),
        lineage=[checkpoint.as_lineage(step="training")] + checkpoint.lineage,
    )
    results.save()
    return results


def _lineage_path(checkpoint, step: str) -> Path:
    from nemotron.errors import UserError

    for entry in checkpoint.lineage:
        if entry.step == step:
            return entry.path
    raise UserError(f"checkpoint {checkpoint.path} has no {step!r} input in its lineage: give a stage2 training output")


def _pair_logps(checkpoint, pairs: list[dict], batch_size: int):
    from nemotron.training.dpo import pair_logps
    from nemotron.training.inference import load_for_inference

    model, _ = load_for_inference(checkpoint)
    return pair_logps(model, pairs, 0, batch_size, next(model.parameters()).device)


if __name__ == "__main__":
    run_step(main, Config, STEP)
