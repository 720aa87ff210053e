"""nano2 stage2 training: DPO from the input checkpoint against a frozen reference model.

The policy starts from ``--init-checkpoint-path`` (default: the checkpoint the PreferenceDataset was tokenized for,
i.e. stage1's). The reference is that same starting checkpoint (``--reference init``) or another Checkpoint directory;
its log-probabilities are computed once, under no_grad, before the first step. Resumes from the newest checkpoint in
the output directory; on SIGTERM/SIGUSR1 it saves a checkpoint and exits with code 75 (run it again to continue).

    ... data_curation.py | python src/nemotron/recipes/nano2/stage2_alignment/training.py --beta 0.1
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from nemotron.data.preference_artifacts import PreferenceDataset
from nemotron.errors import UserError
from nemotron.step import Placement, StepConfig, carried_by, check_input, run_step
from nemotron.training.artifacts import Checkpoint
from nemotron.training.model import MODEL_PRESETS
from nemotron.training.presets import TrainPreset, check_training, resolve_settings, training_layout
from nemotron.training.sizing import TrainingEstimate

STEP = "training"

# Batch sizes count preference pairs; min_lr is a tenth of --lr and the only save is after the last iteration.
PRESETS: dict[str, TrainPreset] = {
    "tiny": TrainPreset(60, 16, 16, 3e-4, warmup_iters=5),
    "small": TrainPreset(1_000, 4, 64, 5e-6, warmup_iters=5),
    "medium": TrainPreset(2_000, 2, 128, 2e-6, warmup_iters=5, tensor_parallel=4),
    "full": TrainPreset(4_000, 1, 256, 1e-6, warmup_iters=5, tensor_parallel=8),
}


@dataclass
class Config(StepConfig):
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
    train_iters: int | None = None
    micro_batch_size: int | None = None
    global_batch_size: int | None = None
    lr: float | None = None
    warmup_iters: int | None = None
    save_interval: int | None = None
    log_interval: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0


def validate(config: Config, placement: Placement, carried: frozenset[str]) -> TrainingEstimate | None:
    """Every check before work: at the start of ``main``, and by the launcher at plan time with the job's ranks."""
    # ``not (x > 0)`` rather than ``x <= 0``: NaN fails every comparison and must not pass as a value
    if not (math.isfinite(config.sft_weight) and config.sft_weight >= 0):
        raise UserError(f"--sft-weight {config.sft_weight}: must be 0 (pure DPO) or positive, and finite")
    if not (math.isfinite(config.beta) and config.beta > 0):
        raise UserError(f"--beta {config.beta}: must be positive and finite (typical values 0.05-0.5)")
    # DPO keeps a frozen reference model beside the policy and runs each pair's two sequences
    estimate = check_training(config, PRESETS, placement, MODEL_PRESETS, frozen_copies=1, sequences_per_sample=2)
    check_input(config.dataset_path, PreferenceDataset, "--dataset-path")
    check_input(config.init_checkpoint_path, Checkpoint, "--init-checkpoint-path")
    if config.reference != "init":
        check_input(Path(config.reference), Checkpoint, "--reference")
    return estimate


def main(config: Config) -> Checkpoint:
    from nemotron.step import config_snapshot, step_output_dir

    carried = carried_by(PreferenceDataset, config.dataset_path, config.dataset_artifact) | carried_by(
        Checkpoint, config.init_checkpoint_path, piped=False
    )
    validate(config, Placement.from_environment(), carried)
    dataset = PreferenceDataset.load(path=config.dataset_path, tracked_artifact=config.dataset_artifact)
    init_from = Checkpoint.load(path=config.init_checkpoint_path or dataset.checkpoint_path)
    reference = init_from if config.reference == "init" else Checkpoint.load(path=Path(config.reference))
    output_dir = step_output_dir(config, __file__)

    import torch

    from nemotron.data.preferences import load_tokenized_pairs
    from nemotron.log import get_logger
    from nemotron.training import dpo
    from nemotron.training.run import checkpoint_artifact, prepare_run, train_or_requeue

    log = get_logger("nano2.stage2.training")
    pairs, held_out = load_tokenized_pairs(dataset.train_path), load_tokenized_pairs(dataset.heldout_path)
    run = prepare_run(config.scale, config.seed, dataset.vocab_size, *training_layout(config, PRESETS))
    settings = resolve_settings(config, PRESETS, run.ctx.data_parallel_size, bf16=torch.cuda.is_available())
    pad_id = 0  # EOD; padded positions are masked out of every sum
    run.load_weights(reference)
    log.info("reference log-probs of %d pairs (%s)", len(pairs), reference.path)
    reference_logps = dpo.pair_logps(run.model, pairs, pad_id, settings.micro_batch_size, run.ctx.device)
    reference_heldout = dpo.pair_logps(run.model, held_out, pad_id, settings.micro_batch_size, run.ctx.device)
    if reference is not init_from:
        run.load_weights(init_from)
    output_dir.mkdir(parents=True, exist_ok=True)
    batches = dpo.pair_batches(pairs, reference_logps, pad_id, config.seed)
    loss_fn = dpo.dpo_loss_fn(config.beta, config.sft_weight)
    state = train_or_requeue(run, batches, settings, output_dir, loss_fn=loss_fn)

    policy_heldout = dpo.pair_logps(run.model, held_out, pad_id, settings.micro_batch_size, run.ctx.device)
    heldout = dpo.preference_metrics(policy_heldout, reference_heldout, config.beta)
    artifact = checkpoint_artifact(
        run,
        state,
        output_dir,
        tokenizer_path=init_from.tokenizer_path,
        dataset_path=init_from.dataset_path,  # the pretraining corpus, so stage0's tasks still find their data
        metrics={"training_loss": state.last_loss, **{f"heldout_{k}": v for k, v in heldout.items()}},
        config=config_snapshot(config) | {"reference_path": str(reference.path)},
        lineage=[dataset.as_lineage(step="data_curation"), init_from.as_lineage(step="init_checkpoint")],
    )
    if run.ctx.is_rank_zero:
        artifact.save()
    run.close()
    return artifact


if __name__ == "__main__":
    run_step(main, Config, STEP)
