"""A pretraining stage's training: pretrain a recipe's model with megatron-core on a curated Dataset -> Checkpoint.

Runs as one process, under torchrun, or one rank per srun task. Resumes from the newest checkpoint in the output
directory; on SIGTERM/SIGUSR1 it saves a checkpoint and exits with code 75 (run it again to continue). A hybrid
model's Mamba-2 layers run on any machine (plain PyTorch where the CUDA kernels are missing).

A recipe chooses its schedule per scale (``presets``: ``TrainPreset``) and its model per scale (``models``:
``ModelConfig``); its training step is ``PretrainConfig``, ``validate`` and ``pretrain`` with those tables.
Light at import: the launcher imports step modules to plan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from nemotron.artifact import LineageEntry
from nemotron.data.artifacts import Dataset
from nemotron.step import Placement, carried_by, check_input
from nemotron.training.artifacts import Checkpoint
from nemotron.training.blend import check_blend, megatron_blend, parse_blend, shares
from nemotron.training.model import ModelConfig
from nemotron.training.presets import CheckedTraining, TrainingConfig, TrainPreset, check_training


@dataclass
class PretrainConfig(TrainingConfig):
    dataset_path: Path | None = None
    """Dataset artifact directory (from data_curation)."""
    dataset_artifact: str | None = None
    """Tracked Dataset name instead of a path, e.g. pretrain-data:latest."""
    init_checkpoint_path: Path | None = None
    """Start from these weights (a Checkpoint artifact directory), e.g. a previous stage's."""
    blend: tuple[str, ...] = ()
    """Train on these Dataset artifacts mixed by weight, DIR:WEIGHT each (absolute paths), e.g. /data/web:0.7
    /data/math:0.3; none = the train split of --dataset-path alone. --dataset-path (which may be one of them) still
    gives the tokenizer, the validation split and the held-out evaluation items."""


def validate(
    config: PretrainConfig,
    placement: Placement,
    carried: frozenset[str],
    presets: dict[str, TrainPreset],
    models: dict[str, ModelConfig],
) -> CheckedTraining:
    """Every check before work: at the start of ``pretrain``, and by the launcher at plan time with the job's ranks
    and GPUs; returns what it computed: the settings and layout ``pretrain`` trains with, the job's memory and cost
    estimate."""
    checked = check_training(config, presets, placement, models)
    check_input(config.dataset_path, Dataset, "--dataset-path")
    check_input(config.init_checkpoint_path, Checkpoint, "--init-checkpoint-path")
    blend = parse_blend(config.blend)
    if blend and placement.files_here:
        check_blend(blend, config.dataset_path)
    return checked


def pretrain(
    config: PretrainConfig, presets: dict[str, TrainPreset], models: dict[str, ModelConfig], step_file: str
) -> Checkpoint:
    """The step: ``presets[scale]`` schedules ``models[scale]``; ``step_file`` is the calling step module's
    ``__file__`` (its default output directory)."""
    from nemotron.step import step_output_dir

    carried = carried_by(Dataset, config.dataset_path, config.dataset_artifact) | carried_by(
        Checkpoint, config.init_checkpoint_path, piped=False
    )
    checked = validate(config, Placement.from_environment(), carried, presets, models)
    dataset = Dataset.load(path=config.dataset_path, tracked_artifact=config.dataset_artifact)
    init_from = Checkpoint.load(path=config.init_checkpoint_path) if config.init_checkpoint_path else None
    output_dir = step_output_dir(config, step_file)

    import torch

    from nemotron.training import data, loop
    from nemotron.training.run import checkpoint_artifact, prepare_run, train_or_requeue, write_outputs

    blend = [(Dataset.load(path=e.path), e.weight) for e in parse_blend(config.blend)]
    if blend:
        train_data = megatron_blend([d for d, _ in blend], [w for _, w in blend], "train")
    else:
        train_data = megatron_blend([dataset], None, "train")
    valid_data = megatron_blend([dataset], None, "valid")
    for prefixes, what in ((train_data.prefixes, "train data"), (valid_data.prefixes, "valid data")):
        for prefix in prefixes:
            data.check_prefix(prefix, what)
    run = prepare_run(config.scale, config.seed, dataset.vocab_size, checked.layout, models=models)
    settings = checked.for_run(run.ctx.data_parallel_size, bf16=torch.cuda.is_available())
    if init_from is not None:
        run.load_weights(init_from)
    output_dir.mkdir(parents=True, exist_ok=True)
    train_set, valid_set = data.build_datasets(
        train_data,
        valid_data,
        seq_length=run.model_config.seq_length,
        seed=config.seed,
        num_train_samples=settings.train_iters * settings.global_batch_size,
        vocab_size=dataset.vocab_size,
        cache_dir=output_dir / "data_cache",  # megatron: rank 0 builds the index, the others read it
    )
    state = train_or_requeue(run, lambda i, n: data.get_batch(train_set, i, n), settings, output_dir)

    valid_loss = loop.evaluate(
        run.model, lambda i, n: data.get_batch(valid_set, i, n), len(valid_set), settings.micro_batch_size, run.ctx
    )
    lineage = _data_lineage(dataset, blend) + ([init_from.as_lineage(step="init_checkpoint")] if init_from else [])
    artifact = checkpoint_artifact(run, state, output_dir, config, dataset, lineage=lineage)
    if run.ctx.is_rank_zero:
        unigram = data.unigram_loss(train_data, valid_set, dataset.vocab_size)
        drawn = data.consumed_shares(train_set, state.consumed_samples, train_data) if blend else []
        artifact.metrics = write_outputs(output_dir, state.last_loss, valid_loss, unigram) | {
            f"blend_share_{i}": share for i, share in enumerate(drawn)
        }
        artifact.save()
    run.close()
    return artifact


def _data_lineage(dataset: Dataset, blend: list[tuple[Dataset, float]]) -> list[LineageEntry]:
    """The data inputs as the checkpoint records them: --dataset-path (step data_curation), then every other blended
    Dataset (step blend); each blended one with its share of the samples."""
    share_of = dict(zip([Path(d.path).resolve() for d, _ in blend], shares([w for _, w in blend]), strict=True))
    recorded = [dataset.as_lineage(step="data_curation", weight=share_of.pop(Path(dataset.path).resolve(), None))]
    for blended, _ in blend:
        if (path := Path(blended.path).resolve()) in share_of:
            recorded.append(blended.as_lineage(step="blend", weight=share_of[path]))
    return recorded


def step(presets: dict[str, TrainPreset], models: dict[str, ModelConfig], step_file: str) -> tuple[Callable, Callable]:
    """A recipe's pretraining step module in one line: its ``validate`` and ``main``, bound to the recipe's
    ``presets`` (training settings per scale) and ``models`` (architecture per scale); ``step_file`` is the module's
    ``__file__`` (its default output directory is named after it)."""
    return partial(validate, presets=presets, models=models), partial(
        pretrain, presets=presets, models=models, step_file=step_file
    )
