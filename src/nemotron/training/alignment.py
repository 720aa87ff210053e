"""Direct Preference Optimisation (DPO), the building block of a recipe's alignment training step: the input
Checkpoint trained on a PreferenceDataset against a frozen reference model.

The policy starts from ``init_checkpoint_path`` (default: the checkpoint the PreferenceDataset was tokenized for, i.e.
the instruction-tuned model); the model is that checkpoint's own, so one block aligns any model family. The reference
is that same starting checkpoint (``reference="init"``) or another Checkpoint directory; its log-probabilities are
computed once, under no_grad, before the first step. Training runs through the same loop as pretraining: it resumes
from the newest checkpoint in the output directory, and on SIGTERM/SIGUSR1 saves one and exits with code 75.

A recipe's step module keeps its ``PRESETS`` (batch sizes count preference pairs) and is otherwise this block:
``Config`` = ``DPOConfig`` and ``validate, main = alignment.step(PRESETS, __file__, models=...)``. Nothing heavy is
imported at module top: the launcher imports steps to plan.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from nemotron.data.preference_artifacts import PreferenceDataset
from nemotron.errors import UserError
from nemotron.step import Placement, carried_by, check_input
from nemotron.training.artifacts import Checkpoint
from nemotron.training.model import ModelConfig
from nemotron.training.presets import CheckedTraining, TrainingConfig, TrainPreset, check_training

PAD_ID = 0  # EOD; padded positions are masked out of every sum


@dataclass
class DPOConfig(TrainingConfig):
    """Align a Checkpoint with Direct Preference Optimisation on a PreferenceDataset."""

    dataset_path: Path | None = None
    """PreferenceDataset directory (from this stage's data_curation)."""
    dataset_artifact: str | None = None
    """Tracked PreferenceDataset, e.g. preference-data:latest."""
    init_checkpoint_path: Path | None = None
    """Start from this Checkpoint (default: the dataset's input checkpoint)."""
    reference: str = "init"
    """Frozen reference model: "init" (the starting checkpoint) or a Checkpoint directory."""
    beta: float = 0.1
    """DPO temperature: how far the policy may move from the reference."""
    sft_weight: float = 1.0
    """Weight of the chosen reply's per-token NLL added to the DPO loss (RPO-style; 0 = pure DPO)."""
    weight_decay: float = 0.0  # alignment: no decay of the tuned weights


def validate(
    config: DPOConfig,
    placement: Placement,
    carried: frozenset[str],
    presets: dict[str, TrainPreset],
    models: dict[str, ModelConfig] | None = None,
) -> CheckedTraining:
    """Every check before work: at the start of ``align``, and by the launcher at plan time with the job's ranks and
    GPUs; returns the settings and layout ``align`` trains with and, with ``models`` (what the init checkpoint is
    expected to hold), the job's memory and cost estimate."""
    # ``not (x > 0)`` rather than ``x <= 0``: NaN fails every comparison and must not pass as a value
    if not (math.isfinite(config.sft_weight) and config.sft_weight >= 0):
        raise UserError(f"--sft-weight {config.sft_weight}: must be 0 (pure DPO) or positive, and finite")
    if not (math.isfinite(config.beta) and config.beta > 0):
        raise UserError(f"--beta {config.beta}: must be positive and finite (typical values 0.05-0.5)")
    # DPO keeps a frozen reference model beside the policy and runs each pair's two sequences, on one stage (below)
    sizing = {"frozen_copies": 1, "sequences_per_sample": 2, "pipeline_stages": False}
    checked = check_training(config, presets, placement, models, **sizing)
    if checked.layout.pipeline_parallel != 1:
        # Pairs are padded to their batch's longest sequence, and the reference and preference passes score whole
        # sequences on one rank: a pipeline needs one activation shape per step and the logits on another stage.
        raise UserError(
            f"--pipeline-parallel {checked.layout.pipeline_parallel}: DPO trains one pipeline stage; valid value is 1 "
            "(split the model with --tensor-parallel instead)"
        )
    check_input(config.dataset_path, PreferenceDataset, "--dataset-path")
    check_input(config.init_checkpoint_path, Checkpoint, "--init-checkpoint-path")
    if config.reference != "init":
        check_input(Path(config.reference), Checkpoint, "--reference")
    return checked


def align(config: DPOConfig, presets: dict[str, TrainPreset], step_file: str) -> Checkpoint:
    """The step: DPO of the init checkpoint on the dataset's pairs with ``presets[config.scale]`` (flags override it)
    into the step's output directory (``step_file``: the calling step module's ``__file__``)."""
    from nemotron.step import config_snapshot, step_output_dir

    carried = carried_by(PreferenceDataset, config.dataset_path, config.dataset_artifact) | carried_by(
        Checkpoint, config.init_checkpoint_path, piped=False
    )
    checked = validate(config, Placement.from_environment(), carried, presets)
    dataset = PreferenceDataset.load(path=config.dataset_path, tracked_artifact=config.dataset_artifact)
    init_from = Checkpoint.load(path=config.init_checkpoint_path or dataset.checkpoint_path)
    reference = init_from if config.reference == "init" else Checkpoint.load(path=Path(config.reference))
    output_dir = step_output_dir(config, step_file)

    import torch

    from nemotron.data.preferences import load_tokenized_pairs
    from nemotron.log import get_logger
    from nemotron.training import dpo
    from nemotron.training.run import checkpoint_artifact, prepare_run_from, train_or_requeue

    pairs, held_out = load_tokenized_pairs(dataset.train_path), load_tokenized_pairs(dataset.heldout_path)
    run = prepare_run_from(init_from, config.seed, dataset.vocab_size, checked.layout)
    settings = checked.for_run(run.ctx.data_parallel_size, bf16=torch.cuda.is_available())
    run.load_weights(reference)
    get_logger(__name__).info("reference log-probs of %d pairs (%s)", len(pairs), reference.path)
    reference_logps = dpo.pair_logps(run.model, pairs, PAD_ID, settings.micro_batch_size, run.ctx.device)
    reference_heldout = dpo.pair_logps(run.model, held_out, PAD_ID, settings.micro_batch_size, run.ctx.device)
    if reference is not init_from:
        run.load_weights(init_from)
    output_dir.mkdir(parents=True, exist_ok=True)
    batches = dpo.pair_batches(pairs, reference_logps, PAD_ID, config.seed)
    objective = dpo.dpo_loss_fn(config.beta, config.sft_weight)
    state = train_or_requeue(run, batches, settings, output_dir, objective=objective)

    policy_heldout = dpo.pair_logps(run.model, held_out, PAD_ID, settings.micro_batch_size, run.ctx.device)
    heldout = dpo.preference_metrics(policy_heldout, reference_heldout, config.beta)
    artifact = checkpoint_artifact(
        run,
        state,
        output_dir,
        config_snapshot(config) | {"reference_path": str(reference.path)},  # the evaluation scores against it
        dataset,
        tokenizer_path=init_from.tokenizer_path,
        dataset_path=init_from.dataset_path,  # the pretraining corpus, so the earlier stages' tasks find their data
        metrics={"training_loss": state.last_loss, **{f"heldout_{k}": v for k, v in heldout.items()}},
        lineage=[dataset.as_lineage(step="data_curation"), init_from.as_lineage(step="init_checkpoint")],
    )
    if run.ctx.is_rank_zero:
        artifact.save()
    run.close()
    return artifact


def step(
    presets: dict[str, TrainPreset], step_file: str, models: dict[str, ModelConfig] | None = None
) -> tuple[Callable, Callable]:
    """A recipe's alignment step module in one line: its ``validate`` and ``main``, bound to the recipe's ``presets``
    (training settings per scale; the model is the init checkpoint's own, ``models`` what it is expected to be per
    scale, for the plan's estimate); ``step_file`` is the module's ``__file__`` (it names the output directory)."""
    return partial(validate, presets=presets, models=models), partial(align, presets=presets, step_file=step_file)
