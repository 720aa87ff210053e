"""nano2 stage0 training: pretrain the Nemotron-Nano-2 hybrid model with megatron-core on a curated Dataset.

Runs as one process, under torchrun, or one rank per srun task. Resumes from the newest checkpoint in the output
directory; on SIGTERM/SIGUSR1 it saves a checkpoint and exits with code 75 (run it again to continue). On CPU,
Mamba-2 layers become attention layers (recorded in the artifact's ``substitutions``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nemotron.data.artifacts import Dataset
from nemotron.scale import Scale
from nemotron.step import Placement, carried_by, check_input, run_step
from nemotron.training.artifacts import Checkpoint
from nemotron.training.presets import TrainPreset, check_training, resolve_settings

PRESETS: dict[str, TrainPreset] = {
    "tiny": TrainPreset(300, 16, 16, 3e-3, 3e-4, 20, "cosine", 100),
    "small": TrainPreset(20_000, 4, 256, 1e-3, 1e-5, 500, "cosine", 1_000),
    "medium": TrainPreset(100_000, 2, 512, 6e-4, 6e-6, 2_000, "WSD", 2_000),
    # Nemotron-Nano-12B-v2-Base: ~20T tokens at 768 x 8192 tokens per step, warmup-stable-decay.
    "full": TrainPreset(3_180_000, 1, 768, 4.5e-4, 4.5e-6, 8_000, "WSD", 2_000),
}


@dataclass
class Config:
    scale: Scale = "tiny"
    seed: int = 1234
    dataset_path: Path | None = None
    """Dataset artifact directory (from data_curation)."""
    dataset_artifact: str | None = None
    """Tracked Dataset name instead of a path, e.g. pretrain-data:latest."""
    output_dir: Path | None = None
    init_checkpoint_path: Path | None = None
    """Start from these weights (a Checkpoint artifact directory), e.g. a previous stage's."""
    train_iters: int | None = None
    micro_batch_size: int | None = None
    global_batch_size: int | None = None
    lr: float | None = None
    min_lr: float | None = None
    warmup_iters: int | None = None
    save_interval: int | None = None
    log_interval: int = 10
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    tensor_parallel: int = 1
    pipeline_parallel: int = 1


def validate(config: Config, placement: Placement, carried: frozenset[str]) -> None:
    """Every check before work: at the start of ``main``, and by the launcher at plan time with the job's ranks."""
    check_training(config, PRESETS, placement)
    check_input(config.dataset_path, Dataset, "--dataset-path")
    check_input(config.init_checkpoint_path, Checkpoint, "--init-checkpoint-path")


def main(config: Config) -> Checkpoint:
    from nemotron.errors import REQUEUE_EXIT_CODE, UserError
    from nemotron.step import config_snapshot, resolve_output_dir

    carried = carried_by(Dataset, config.dataset_path, config.dataset_artifact) | carried_by(
        Checkpoint, config.init_checkpoint_path, piped=False
    )
    validate(config, Placement.from_environment(), carried)
    dataset = Dataset.load(path=config.dataset_path, tracked_artifact=config.dataset_artifact)
    init_from = Checkpoint.load(path=config.init_checkpoint_path) if config.init_checkpoint_path else None
    output_dir = resolve_output_dir(
        config.output_dir, "nano2", "stage0_pretrain", "training", config.scale, config.seed
    )

    import torch

    from nemotron.training import data, loop
    from nemotron.training.run import prepare_run, write_outputs

    for prefix, what in ((dataset.train_prefix, "train data"), (dataset.valid_prefix, "valid data")):
        data.check_prefix(prefix, what)
    run = prepare_run(config.scale, config.seed, dataset.vocab_size, config.tensor_parallel, config.pipeline_parallel)
    settings = resolve_settings(config, PRESETS, run.ctx.data_parallel_size, bf16=torch.cuda.is_available())
    if init_from is not None:
        run.load_weights(init_from)
    output_dir.mkdir(parents=True, exist_ok=True)
    train_set, valid_set = data.build_datasets(
        dataset.train_prefix,
        dataset.valid_prefix,
        seq_length=run.model_config.seq_length,
        seed=config.seed,
        num_train_samples=settings.train_iters * settings.global_batch_size,
        vocab_size=dataset.vocab_size,
        cache_dir=output_dir / "data_cache",  # megatron: rank 0 builds the index, the others read it
    )
    try:
        state = loop.train(run.model, lambda i, n: data.get_batch(train_set, i, n), settings, output_dir, run.ctx)
    except loop.TrainingInterrupted as stopped:
        run.close()
        from nemotron.log import get_logger

        get_logger("training").warning("%s; exiting %d so the job is requeued", stopped, REQUEUE_EXIT_CODE)
        raise SystemExit(REQUEUE_EXIT_CODE) from None
    except FloatingPointError as err:
        run.close()
        raise UserError(f"{err}: lower --lr (now {settings.lr})") from None

    valid_loss = loop.evaluate(
        run.model, lambda i, n: data.get_batch(valid_set, i, n), len(valid_set), settings.micro_batch_size, run.ctx
    )
    artifact = Checkpoint(
        path=output_dir,
        num_steps=state.step,
        training_loss=state.last_loss,
        checkpoint_path=output_dir / "checkpoints" / f"iter_{state.step:07d}",
        tokens_seen=state.tokens_seen,
        model=run.model_config.as_dict() | {"vocab_size": run.vocab_size},
        world_size=run.ctx.world_size,
        tokenizer_path=dataset.tokenizer_path,
        dataset_path=Path(dataset.path),
        substitutions=run.substitutions,
        config=config_snapshot(config),
        lineage=[dataset.as_lineage(step="data_curation")]
        + ([init_from.as_lineage(step="init_checkpoint")] if init_from else []),
    )
    if run.ctx.is_rank_zero:
        unigram = data.unigram_loss(dataset.train_prefix, valid_set, dataset.vocab_size)
        artifact.metrics = write_outputs(output_dir, state.last_loss, valid_loss, unigram)
        artifact.save()
    run.close()
    return artifact


if __name__ == "__main__":
    run_step(main, Config, "training")
