"""A later stage's evaluation measured against its input model's own evaluation: the baseline Results.

stage1 evaluates the instruction-tuned model; its baseline is stage0's Results of the checkpoint tuning started from
(stage2's is stage1's). Giving a baseline to an evaluation step
- checks that it really scored the input model (a comparison with another model's figures would mislead),
- adds ``vs_baseline/<metric>`` = this model's figure minus the baseline's for every metric both report (stage1's
  ``vs_baseline/facts_mc/acc`` is the regression on stage0's own task against stage0's own run of it),
- records it in lineage, so the recipe's final Results walks back through every stage's evaluation too.

Light: pydantic artifacts only (the launcher imports the step modules that use it).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from nemotron.artifact import read_stdin_document
from nemotron.evaluation.artifacts import Results

LINEAGE_STEP = "baseline"
DELTA_PREFIX = "vs_baseline/"
# Figures that describe the other model, the uncertainty or the task (chance level), not this model's score.
_NOT_COMPARED_PREFIXES = ("input_model/", DELTA_PREFIX)
_NOT_COMPARED_SUFFIXES = ("_stderr", "chance_acc")


def load_baseline(path: Path | None, tracked: str | None, input_model_path: Path) -> Results | None:
    """The Results given by path or tracked name (None when neither), checked to have scored the input model."""
    from nemotron.errors import UserError

    if path is None and tracked is None:
        return None
    baseline = Results.load(path=path, tracked_artifact=None if path else tracked)
    if _same_directory(baseline.checkpoint_path, input_model_path):
        return baseline
    raise UserError(
        f"baseline {path or tracked} scored {baseline.checkpoint_path}, not this model's input {input_model_path}: "
        "give the Results of the input model's own evaluation, or no baseline"
    )


def compare(metrics: dict[str, float], baseline: Results) -> dict[str, float]:
    """``vs_baseline/<name>`` for every metric of this model that the baseline also reports."""
    return {
        f"{DELTA_PREFIX}{name}": metrics[name] - value
        for name, value in baseline.metrics.items()
        if name in metrics and not name.startswith(_NOT_COMPARED_PREFIXES) and not name.endswith(_NOT_COMPARED_SUFFIXES)
    }


def save_results(
    output_dir: Path,
    checkpoint: Any,
    dataset: Any,
    *,
    tasks: dict,
    num_samples: dict,
    metrics: dict[str, float],
    config: dict,
    lineage: list,
    baseline: Results | None = None,
) -> Results:
    """Every evaluation step's Results, saved: the ``checkpoint`` it scored on ``dataset``, and with a ``baseline``
    its ``vs_baseline/*`` comparison and lineage entry too; its metrics also go to a TensorBoard events file."""
    if baseline is not None:
        metrics = metrics | compare(metrics, baseline)
        lineage = [*lineage, baseline.as_lineage(step=LINEAGE_STEP)]
    results = Results(
        path=output_dir,
        tasks=tasks,
        num_samples=num_samples,
        checkpoint_path=Path(checkpoint.path),
        dataset_path=Path(dataset.path),
        metrics=metrics,
        config=config,
        lineage=lineage,
    )
    results.save()
    from nemotron.training.curves import write_scalars

    # beside the training curves in TensorBoard, at the iteration of the checkpoint it scored
    scalars = {f"eval/{name}": value for name, value in metrics.items()}
    write_scalars(output_dir, checkpoint.num_steps, scalars, "evaluation")
    return results


def stage_eval_config(eval_config: Any, init_path: Path) -> Any:
    """A stage module's evaluation Config with its baseline settled before any step runs.

    A baseline given for the stage's evaluation is checked now, against the checkpoint the stage starts from, so a
    wrong one fails in a second rather than after training. Without one, the Results on stdin are used when they scored
    that checkpoint: ``python -m ...stage0_pretrain | python -m ...stage1_instruction_tuning`` carries stage0's
    checkpoint (stage1 starts from it) and stage0's Results of it (stage1's evaluation compares with them).
    """
    if eval_config.baseline_path is not None or eval_config.baseline_artifact is not None:
        load_baseline(eval_config.baseline_path, eval_config.baseline_artifact, init_path)
        return eval_config
    piped = _results_on_stdin()
    if piped is None or not _same_directory(Results.load(path=piped).checkpoint_path, init_path):
        return eval_config  # nothing piped, or Results of another model (the stage was told to start elsewhere)
    return dataclasses.replace(eval_config, baseline_path=piped)


def _results_on_stdin() -> Path | None:
    document = read_stdin_document() or {}
    artifacts = document.get("artifacts")
    if not isinstance(artifacts, dict):
        return None
    found = [a.get("path") for a in artifacts.values() if isinstance(a, dict) and a.get("type") == "Results"]
    found = [path for path in found if path]
    return Path(found[-1]) if found else None


def _same_directory(a: Path, b: Path) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
