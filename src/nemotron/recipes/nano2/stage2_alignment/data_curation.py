"""nano2 stage2 data curation: preference pairs (prompt, chosen, rejected), tokenized with the input model's tokenizer.

With no ``--sources`` it builds pairs from the same seeded world as stage0's corpus: the prompt asks a fact, the
chosen response is its value, the rejected one a wrong value; each fact's held-out phrasing, paired with every wrong
value of its kind, goes to ``heldout.jsonl``. With ``--sources`` it reads JSONL files of
``{"prompt", "chosen", "rejected"}`` and holds out ``--heldout-fraction`` of the prompts. The input checkpoint
(stage1's, or any Checkpoint) gives the tokenizer.

    python src/nemotron/recipes/nano2/stage2_alignment/data_curation.py --checkpoint-path STAGE1_TRAINING_DIR
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from nemotron.data.preference_artifacts import PreferenceDataset
from nemotron.errors import UserError
from nemotron.scale import apply_scale, check_scale
from nemotron.step import Placement, StepConfig, carried_by, check_input, run_step
from nemotron.training.artifacts import Checkpoint

STEP = "data_curation"


@dataclass
class Config(StepConfig):
    """Build tokenized preference pairs for DPO."""

    checkpoint_path: Path | None = None
    """Input model's Checkpoint directory (its tokenizer is used; DPO starts from it by default)."""
    checkpoint_artifact: str | None = None
    """Tracked checkpoint, e.g. sft-checkpoint:latest."""
    sources: tuple[Path, ...] = ()
    """JSONL files of {"prompt", "chosen", "rejected"}; none = pairs from the embedded world."""
    rejected_per_prompt: int = 3
    """Embedded pairs: wrong answers paired with each training prompt."""
    heldout_fraction: float = 0.1
    """--sources: share of prompts held out for evaluation."""
    max_pairs: int | None = None
    """Training pairs at full scale (scaled down like everything else); none = all."""


def validate(config: Config, placement: Placement, carried: frozenset[str]) -> None:
    """Every check before work: at the start of ``main``, and by the launcher at plan time (one process, any host)."""
    check_scale(config.scale)
    if config.rejected_per_prompt < 1:
        raise UserError(f"--rejected-per-prompt {config.rejected_per_prompt}: must be at least 1")
    if not 0.0 < config.heldout_fraction < 1.0:
        raise UserError(f"--heldout-fraction {config.heldout_fraction} is out of range: use a value in (0, 1)")
    if config.max_pairs is not None and config.max_pairs < 1:
        raise UserError(f"--max-pairs {config.max_pairs} must be a positive number of pairs")
    check_input(config.checkpoint_path, Checkpoint, "--checkpoint-path")


def main(config: Config) -> PreferenceDataset:
    from nemotron.data import preferences
    from nemotron.data.tokenizer import eod_id, load_tokenizer
    from nemotron.data.world import World
    from nemotron.fsutil import output_staging_dir, publish_staged
    from nemotron.heartbeat import Heartbeat
    from nemotron.log import get_logger
    from nemotron.step import config_snapshot, step_output_dir

    log = get_logger("nano2.stage2.data_curation")
    carried = carried_by(Checkpoint, config.checkpoint_path, config.checkpoint_artifact)
    validate(config, Placement.from_environment(), carried)
    checkpoint = Checkpoint.load(path=config.checkpoint_path, tracked_artifact=config.checkpoint_artifact)
    tokenizer = load_tokenizer(checkpoint.tokenizer_path)
    if config.sources:
        pairs = [pair for source in config.sources for pair in preferences.read_pairs(source)]
        train, held_out = preferences.split_held_out(pairs, config.heldout_fraction, config.seed)
    else:
        train, held_out = preferences.world_preference_pairs(
            World(config.seed), config.rejected_per_prompt, config.seed
        )
    if config.max_pairs is not None:
        train = train[: apply_scale(config.max_pairs, config.scale)]
    max_length = int(checkpoint.model["seq_length"]) + 1
    train, dropped_train = preferences.tokenize_pairs(train, tokenizer, eod_id(tokenizer), max_length)
    held_out, dropped_heldout = preferences.tokenize_pairs(held_out, tokenizer, eod_id(tokenizer), max_length)
    if not train or not held_out:
        raise UserError(
            f"no pairs fit the model's {max_length} tokens on the {'train' if not train else 'held-out'} side"
        )

    output_dir = step_output_dir(config, __file__)
    heartbeat = Heartbeat.for_step(output_dir, STEP, len(train) + len(held_out))  # coarse: pairs written
    staging = output_staging_dir(output_dir)
    try:
        heartbeat.beat(0)
        preferences.write_pairs(train, staging / "train.jsonl")
        preferences.write_pairs(held_out, staging / "heldout.jsonl")
        shutil.copyfile(checkpoint.tokenizer_path, staging / "tokenizer.json")
        publish_staged(staging, output_dir)
        heartbeat.beat(len(train) + len(held_out), force=True)
    finally:
        heartbeat.close()
        shutil.rmtree(staging, ignore_errors=True)
    log.info("%d training and %d held-out pairs -> %s", len(train), len(held_out), output_dir)
    dataset = PreferenceDataset(
        path=output_dir,
        num_examples=len(train),
        num_heldout=len(held_out),
        train_path=output_dir / "train.jsonl",
        heldout_path=output_dir / "heldout.jsonl",
        tokenizer_path=output_dir / "tokenizer.json",
        checkpoint_path=Path(checkpoint.path),
        vocab_size=tokenizer.get_vocab_size(),
        max_length=max_length,
        metrics={
            "train_pairs": len(train),
            "heldout_pairs": len(held_out),
            "dropped_too_long": dropped_train + dropped_heldout,
        },
        config=config_snapshot(config),
        lineage=[checkpoint.as_lineage(step="training")],
    )
    dataset.save()
    return dataset


if __name__ == "__main__":
    run_step(main, Config, STEP)
