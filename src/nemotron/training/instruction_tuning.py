"""Supervised fine-tuning (SFT), the building block of a recipe's instruction-tuning training step: a pretrained
Checkpoint trained on packed, assistant-masked chat rows with the cross-entropy of assistant tokens only.

The model is the init checkpoint's own (its ``model`` dict: family, shape, sequence length), so one block tunes any
model family; the recipe chooses only the per-scale ``TrainPreset`` table. Training runs through the same loop as
pretraining: it resumes from the newest checkpoint in the output directory, and on SIGTERM/SIGUSR1 saves one and
exits with code 75.

A recipe's step module keeps its ``PRESETS`` and is otherwise this block: ``Config`` = ``SFTConfig``,
``validate(config, placement, carried)`` = ``validate(config, placement, carried, PRESETS)`` and ``main`` =
``finetune(config, PRESETS, __file__)``. Nothing heavy is imported at module top: the launcher imports steps to plan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from nemotron.data.artifacts import Dataset
from nemotron.step import Placement, carried_by, check_input
from nemotron.training.artifacts import Checkpoint
from nemotron.training.model import ModelConfig
from nemotron.training.presets import CheckedTraining, TrainingConfig, TrainPreset, check_training


@dataclass
class SFTConfig(TrainingConfig):
    dataset_path: Path | None = None
    """Dataset artifact directory (from stage1 data_curation)."""
    dataset_artifact: str | None = None
    """Tracked Dataset name instead of a path, e.g. sft-data:latest."""
    init_checkpoint_path: Path | None = None
    """The Checkpoint to fine-tune (stage0 training's output); default: the one the dataset was curated against."""
    init_checkpoint_artifact: str | None = None
    """Tracked Checkpoint name instead of a path, e.g. pretrain-checkpoint:latest."""
    weight_decay: float = 0.0  # fine-tuning: no decay of the pretrained weights


def validate(
    config: SFTConfig,
    placement: Placement,
    carried: frozenset[str],
    presets: dict[str, TrainPreset],
    models: dict[str, ModelConfig] | None = None,
) -> CheckedTraining:
    """Every check before work: at the start of ``finetune``, and by the launcher at plan time with the job's ranks
    and GPUs; returns the settings and layout ``finetune`` trains with and, with ``models`` (what the init
    checkpoint is expected to hold), the job's memory and cost estimate."""
    checked = check_training(config, presets, placement, models)
    check_input(config.dataset_path, Dataset, "--dataset-path")
    check_input(config.init_checkpoint_path, Checkpoint, "--init-checkpoint-path")
    return checked


def finetune(config: SFTConfig, presets: dict[str, TrainPreset], step_file: str) -> Checkpoint:
    """The step: fine-tune the init checkpoint's model on the dataset's packed rows with ``presets[config.scale]``
    (flags override it) into the step's output directory (``step_file``: the calling step module's ``__file__``)."""
    from nemotron.step import step_output_dir

    carried = carried_by(Dataset, config.dataset_path, config.dataset_artifact) | carried_by(
        Checkpoint, config.init_checkpoint_path, config.init_checkpoint_artifact, piped=False
    )
    checked = validate(config, Placement.from_environment(), carried, presets)
    dataset = Dataset.load(path=config.dataset_path, tracked_artifact=config.dataset_artifact)
    init_from = _init_checkpoint(config, dataset)
    output_dir = step_output_dir(config, step_file)

    import torch

    from nemotron.data.chat import load_packed
    from nemotron.training import loop
    from nemotron.training.run import checkpoint_artifact, prepare_run_from, train_or_requeue, write_outputs
    from nemotron.training.sft import PackedSFTSamples

    train_rows, valid_rows = load_packed(dataset.train_prefix), load_packed(dataset.valid_prefix)
    run = prepare_run_from(init_from, config.seed, dataset.vocab_size, checked.layout)
    settings = checked.for_run(run.ctx.data_parallel_size, bf16=torch.cuda.is_available())
    run.load_weights(init_from)
    seq_length = run.model_config.seq_length
    train_set = PackedSFTSamples(*train_rows, seq_length=seq_length, seed=config.seed)
    valid_set = PackedSFTSamples(*valid_rows, seq_length=seq_length, seed=config.seed)
    output_dir.mkdir(parents=True, exist_ok=True)
    # The bar SFT must clear: the starting model's loss on the held-out assistant replies.
    init_valid_loss = loop.evaluate(run.model, valid_set.in_order, len(valid_set), settings.micro_batch_size, run.ctx)
    state = train_or_requeue(run, train_set.batch, settings, output_dir)

    valid_loss = loop.evaluate(run.model, valid_set.in_order, len(valid_set), settings.micro_batch_size, run.ctx)
    lineage = [dataset.as_lineage(step="data_curation"), init_from.as_lineage(step="init_checkpoint")]
    artifact = checkpoint_artifact(run, state, output_dir, config, dataset, lineage=lineage)
    if run.ctx.is_rank_zero:
        artifact.metrics = write_outputs(output_dir, state.last_loss, valid_loss, init_valid_loss, baseline="init")
        artifact.save()
    run.close()
    return artifact


def _init_checkpoint(config: SFTConfig, dataset) -> Checkpoint:
    """--init-checkpoint-*, else the checkpoint the dataset's tokenizer came from (its lineage)."""
    from nemotron.errors import UserError

    if config.init_checkpoint_path or config.init_checkpoint_artifact:
        return Checkpoint.load(path=config.init_checkpoint_path, tracked_artifact=config.init_checkpoint_artifact)
    upstream = [entry for entry in dataset.lineage if entry.type == "Checkpoint"]
    if not upstream:
        raise UserError(f"dataset {dataset.path} names no checkpoint: give --init-checkpoint-path")
    return Checkpoint.load(path=upstream[0].path)


def step(
    presets: dict[str, TrainPreset], step_file: str, models: dict[str, ModelConfig] | None = None
) -> tuple[Callable, Callable]:
    """A recipe's fine-tuning step module in one line: its ``validate`` and ``main``, bound to the recipe's
    ``presets`` (training settings per scale; the model is the init checkpoint's own, ``models`` what it is expected
    to be per scale, for the plan's estimate); ``step_file`` is the module's ``__file__`` (its default output
    directory is named after it)."""
    return partial(validate, presets=presets, models=models), partial(finetune, presets=presets, step_file=step_file)
