"""nano2 stage1 training: supervised fine-tuning (SFT) of the stage0 Checkpoint on packed, assistant-masked chat rows.

Starts from ``--init-checkpoint-path`` (a stage0 Checkpoint; recorded in lineage) and trains with the cross-entropy
of assistant tokens only, through the same loop as stage0: resumes from the newest checkpoint in the output
directory, and on SIGTERM/SIGUSR1 saves one and exits with code 75.

    python -m nemotron.recipes.nano2.stage1_instruction_tuning.training --dataset-path DATA --init-checkpoint-path CKPT
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nemotron.data.artifacts import Dataset
from nemotron.scale import Scale
from nemotron.step import Placement, carried_by, check_input, run_step
from nemotron.training.artifacts import Checkpoint
from nemotron.training.presets import TrainPreset, check_training, resolve_settings

STAGE = "stage1_instruction_tuning"

PRESETS: dict[str, TrainPreset] = {
    "tiny": TrainPreset(80, 16, 16, 1e-3, 1e-4, 5, "cosine", 40),
    "small": TrainPreset(2_000, 4, 64, 2e-5, 2e-6, 50, "cosine", 500),
    "medium": TrainPreset(5_000, 2, 128, 1e-5, 1e-6, 100, "cosine", 1_000),
    # Nemotron-Nano-2 SFT: a few thousand steps at a low constant-then-decay learning rate.
    "full": TrainPreset(10_000, 1, 256, 5e-6, 5e-7, 200, "cosine", 1_000),
}


@dataclass
class Config:
    scale: Scale = "tiny"
    seed: int = 1234
    dataset_path: Path | None = None
    """Dataset artifact directory (from stage1 data_curation)."""
    dataset_artifact: str | None = None
    """Tracked Dataset name instead of a path, e.g. sft-data:latest."""
    output_dir: Path | None = None
    init_checkpoint_path: Path | None = None
    """The Checkpoint to fine-tune (stage0 training's output); default: the one the dataset was curated against."""
    init_checkpoint_artifact: str | None = None
    """Tracked Checkpoint name instead of a path, e.g. pretrain-checkpoint:latest."""
    train_iters: int | None = None
    micro_batch_size: int | None = None
    global_batch_size: int | None = None
    lr: float | None = None
    min_lr: float | None = None
    warmup_iters: int | None = None
    save_interval: int | None = None
    log_interval: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    tensor_parallel: int = 1
    pipeline_parallel: int = 1


def validate(config: Config, placement: Placement, carried: frozenset[str]) -> None:
    """Every check before work: at the start of ``main``, and by the launcher at plan time with the job's ranks."""
    check_training(config, PRESETS, placement)
    check_input(config.dataset_path, Dataset, "--dataset-path")
    check_input(config.init_checkpoint_path, Checkpoint, "--init-checkpoint-path")


def _init_checkpoint(config: Config, dataset) -> Checkpoint:
    """--init-checkpoint-*, else the checkpoint the dataset's tokenizer came from (its lineage)."""
    from nemotron.errors import UserError

    if config.init_checkpoint_path or config.init_checkpoint_artifact:
        return Checkpoint.load(path=config.init_checkpoint_path, tracked_artifact=config.init_checkpoint_artifact)
    upstream = [entry for entry in dataset.lineage if entry.type == "Checkpoint"]
    if not upstream:
        raise UserError(f"dataset {dataset.path} names no checkpoint: give --init-checkpoint-path")
    return Checkpoint.load(path=upstream[0].path)


def main(config: Config) -> Checkpoint:
    from nemotron.errors import REQUEUE_EXIT_CODE, UserError
    from nemotron.step import config_snapshot, resolve_output_dir

    carried = carried_by(Dataset, config.dataset_path, config.dataset_artifact) | carried_by(
        Checkpoint, config.init_checkpoint_path, config.init_checkpoint_artifact, piped=False
    )
    validate(config, Placement.from_environment(), carried)
    dataset = Dataset.load(path=config.dataset_path, tracked_artifact=config.dataset_artifact)
    init_from = _init_checkpoint(config, dataset)
    output_dir = resolve_output_dir(config.output_dir, "nano2", STAGE, "training", config.scale, config.seed)

    import torch

    from nemotron.data.chat import load_packed
    from nemotron.training import loop
    from nemotron.training.run import prepare_run, write_outputs
    from nemotron.training.sft import PackedSFTSamples

    train_rows, valid_rows = load_packed(dataset.train_prefix), load_packed(dataset.valid_prefix)
    run = prepare_run(config.scale, config.seed, dataset.vocab_size, config.tensor_parallel, config.pipeline_parallel)
    settings = resolve_settings(config, PRESETS, run.ctx.data_parallel_size, bf16=torch.cuda.is_available())
    run.load_weights(init_from)
    seq_length = run.model_config.seq_length
    train_set = PackedSFTSamples(*train_rows, seq_length=seq_length, seed=config.seed)
    valid_set = PackedSFTSamples(*valid_rows, seq_length=seq_length, seed=config.seed)
    output_dir.mkdir(parents=True, exist_ok=True)
    # The bar SFT must clear: the starting model's loss on the held-out assistant replies.
    init_valid_loss = loop.evaluate(run.model, valid_set.in_order, len(valid_set), settings.micro_batch_size, run.ctx)
    try:
        state = loop.train(run.model, train_set.batch, settings, output_dir, run.ctx)
    except loop.TrainingInterrupted as stopped:
        run.close()
        from nemotron.log import get_logger

        get_logger("training").warning("%s; exiting %d so the job is requeued", stopped, REQUEUE_EXIT_CODE)
        raise SystemExit(REQUEUE_EXIT_CODE) from None
    except FloatingPointError as err:
        run.close()
        raise UserError(f"{err}: lower --lr (now {settings.lr})") from None

    valid_loss = loop.evaluate(run.model, valid_set.in_order, len(valid_set), settings.micro_batch_size, run.ctx)
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
        lineage=[dataset.as_lineage(step="data_curation"), init_from.as_lineage(step="init_checkpoint")],
    )
    if run.ctx.is_rank_zero:
        artifact.metrics = write_outputs(output_dir, state.last_loss, valid_loss, init_valid_loss, baseline="init")
        artifact.save()
    run.close()
    return artifact


if __name__ == "__main__":
    run_step(main, Config, "training")
