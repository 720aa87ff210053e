"""A pretraining stage's evaluation: score a pretrained Checkpoint with lm-eval, offline -> Results.

Default tasks are the recipe's own, built at run time from the checkpoint's dataset, as many as it can feed: the
validation split's perplexity always (``valid_ppl``: ``valid_perplexity`` per token, word perplexity, bits per byte),
and when the dataset carries the embedded world's held-out facts (``Dataset.provides``; a user corpus does not)
multiple-choice facts (``facts_mc``: acc, with ``chance_acc``) and facts completed greedily (``facts_gen``:
exact_match). Standard lm-eval benchmarks (``--tasks valid_ppl hellaswag``) run when their data is in the local HF
cache. An asked-for task the data cannot feed is refused by ``validate``, from what the checkpoint carries (its
dataset's ``provides``, through lineage): at start, and by the launcher at plan time with what the planned
data_curation will provide.

A recipe's evaluation step is ``PretrainEvalConfig``, ``validate`` and ``evaluate`` under its own name. Light at
import (torch, tokenizers and lm_eval load inside ``evaluate``): the launcher imports step modules to plan.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from nemotron.evaluation.artifacts import Results
from nemotron.evaluation.baseline import save_results
from nemotron.evaluation.settings import CheckpointEvalConfig, check_inputs, check_sizes
from nemotron.evaluation.tasks import check_supported, split_task_names, supported_tasks
from nemotron.step import Placement, carried_by, config_snapshot, step_output_dir
from nemotron.training.artifacts import Checkpoint

STEP = "evaluation"


@dataclass
class PretrainEvalConfig(CheckpointEvalConfig):
    """Evaluate a pretrained Checkpoint on lm-eval tasks."""

    tasks: tuple[str, ...] | None = None
    """Local tasks (facts_mc, facts_gen, valid_ppl) and/or lm-eval benchmark names cached on this machine; none =
    every local task the checkpoint's dataset can feed."""
    limit: int | None = None
    """At most this many items per task (all when unset)."""
    batch_size: int = 32


def validate(config: PretrainEvalConfig, placement: Placement, carried: frozenset[str]) -> None:
    """Every check before work: at the start of ``evaluate``, and by the launcher at plan time (so empty or repeated
    --tasks, or tasks whose held-out data the dataset lacks, fail before training is submitted). ``carried``: the
    held-out sets the checkpoint's inputs carry (see Dataset.provides)."""
    check_sizes(config.limit, config.batch_size)
    if config.tasks is not None:
        split_task_names(list(config.tasks))
    check_inputs(config)
    if config.tasks is not None:
        check_supported(config.tasks, carried)


def evaluate(config: PretrainEvalConfig, step_file: str) -> Results:
    """The step: ``step_file`` is the calling step module's ``__file__`` (its default output directory)."""
    from nemotron.data.artifacts import Dataset
    from nemotron.evaluation.harness import go_offline
    from nemotron.heartbeat import Heartbeat

    carried = carried_by(Checkpoint, config.checkpoint_path, config.checkpoint_artifact)
    validate(config, Placement.from_environment(), carried)
    checkpoint = Checkpoint.load(path=config.checkpoint_path, tracked_artifact=config.checkpoint_artifact)
    dataset = Dataset.load(path=checkpoint.dataset_path)
    if config.tasks is None:  # the Results record the tasks that ran
        config = dataclasses.replace(config, tasks=supported_tasks(dataset.provides))
    output_dir = step_output_dir(config, step_file)
    go_offline()  # before lm_eval/datasets are imported: evaluation never downloads
    with Heartbeat.for_step(output_dir, STEP, len(config.tasks)) as heartbeat:  # coarse: lm-eval runs them as one
        heartbeat.beat(0)
        outcome = _evaluate(config, checkpoint, dataset, output_dir)
        heartbeat.beat(len(config.tasks), force=True)
    return save_results(
        output_dir,
        checkpoint,
        dataset,
        tasks=outcome.tasks,
        num_samples=outcome.num_samples,
        metrics=outcome.flat,
        config=config_snapshot(config),
        lineage=[checkpoint.as_lineage(step="training"), dataset.as_lineage(step="data_curation")],
    )


def _evaluate(config: PretrainEvalConfig, checkpoint, dataset, output_dir: Path):
    """Load the weights for CPU/GPU inference, wrap them for lm-eval, run the tasks, keep lm-eval's own report."""
    import torch
    from tokenizers import Tokenizer

    from nemotron.evaluation.adapter import CausalLMAdapter
    from nemotron.evaluation.harness import evaluate_tasks
    from nemotron.evaluation.tasks import LocalTaskData
    from nemotron.fsutil import atomic_write_text
    from nemotron.training.inference import load_for_inference

    torch.manual_seed(config.seed)
    _, forward = load_for_inference(checkpoint)
    lm = CausalLMAdapter(
        forward,
        Tokenizer.from_file(str(checkpoint.tokenizer_path)),
        max_length=int(checkpoint.model["seq_length"]),
        batch_size=config.batch_size,
    )
    data = LocalTaskData(eval_dir=Path(dataset.eval_dir), valid_path=Path(dataset.valid_path))
    outcome = evaluate_tasks(lm, list(config.tasks), data, output_dir, limit=config.limit, seed=config.seed)
    report = {"tasks": outcome.tasks, "metrics": outcome.flat, "num_samples": outcome.num_samples}
    atomic_write_text(output_dir / "lm_eval_results.json", json.dumps(report, indent=2) + "\n")
    return outcome
