"""Preference data, the building block of a recipe's alignment (DPO) data_curation step: (prompt, chosen, rejected)
pairs tokenized with the input model's tokenizer into a ``PreferenceDataset``.

With no ``sources`` it builds pairs from the same seeded world as the pretraining corpus: the prompt asks a fact, the
chosen response is its value, the rejected one a wrong value; each fact's held-out phrasing, paired with every wrong
value of its kind, goes to ``heldout.jsonl``. With ``sources`` it reads JSONL files of ``{"prompt", "chosen",
"rejected"}`` and holds out ``heldout_fraction`` of the prompts. The input checkpoint (the instruction-tuned model,
or any Checkpoint) gives the tokenizer and the longest pair (its sequence length).

A recipe's step module is this block under its own name: ``Config`` = ``PreferenceCurationConfig``, ``validate``,
and ``main`` = ``curate(config, __file__)`` (the step's file names its default output directory).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nemotron.data.preference_artifacts import PreferenceDataset
from nemotron.errors import UserError
from nemotron.scale import apply_scale, check_scale
from nemotron.step import Placement, StepConfig, carried_by, check_input
from nemotron.training.artifacts import Checkpoint

STEP = "data_curation"


@dataclass
class PreferenceCurationConfig(StepConfig):
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


def validate(config: PreferenceCurationConfig, placement: Placement, carried: frozenset[str]) -> None:
    """Every check before work: at the start of ``curate``, and by the launcher at plan time (one process, any host)."""
    check_scale(config.scale)
    if config.rejected_per_prompt < 1:
        raise UserError(f"--rejected-per-prompt {config.rejected_per_prompt}: must be at least 1")
    if not 0.0 < config.heldout_fraction < 1.0:
        raise UserError(f"--heldout-fraction {config.heldout_fraction} is out of range: use a value in (0, 1)")
    if config.max_pairs is not None and config.max_pairs < 1:
        raise UserError(f"--max-pairs {config.max_pairs} must be a positive number of pairs")
    check_input(config.checkpoint_path, Checkpoint, "--checkpoint-path")


def curate(config: PreferenceCurationConfig, step_file: str) -> PreferenceDataset:
    """The step: tokenize the pairs for the input checkpoint and save the PreferenceDataset in the step's output
    directory (``step_file``: the calling step module's ``__file__``)."""
    import shutil

    from nemotron.data import preferences
    from nemotron.data.tokenizer import eod_id, load_tokenizer
    from nemotron.heartbeat import Heartbeat
    from nemotron.log import get_logger
    from nemotron.step import config_snapshot, step_output_dir

    carried = carried_by(Checkpoint, config.checkpoint_path, config.checkpoint_artifact)
    validate(config, Placement.from_environment(), carried)
    checkpoint = Checkpoint.load(path=config.checkpoint_path, tracked_artifact=config.checkpoint_artifact)
    tokenizer = load_tokenizer(checkpoint.tokenizer_path)
    train, held_out = _pairs(config)
    max_length = int(checkpoint.model["seq_length"]) + 1
    train, dropped_train = preferences.tokenize_pairs(train, tokenizer, eod_id(tokenizer), max_length)
    held_out, dropped_heldout = preferences.tokenize_pairs(held_out, tokenizer, eod_id(tokenizer), max_length)
    if not train or not held_out:
        raise UserError(
            f"no pairs fit the model's {max_length} tokens on the {'train' if not train else 'held-out'} side"
        )

    output_dir = step_output_dir(config, step_file)
    with Heartbeat.staged_step(output_dir, STEP, len(train) + len(held_out)) as staging:  # coarse: pairs written
        preferences.write_pairs(train, staging / "train.jsonl")
        preferences.write_pairs(held_out, staging / "heldout.jsonl")
        shutil.copyfile(checkpoint.tokenizer_path, staging / "tokenizer.json")
    get_logger(__name__).info("%d training and %d held-out pairs -> %s", len(train), len(held_out), output_dir)
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


def _pairs(config: PreferenceCurationConfig) -> tuple[list[dict], list[dict]]:
    """(train, held-out) pairs: the user's JSONL split by prompt, or the embedded world's; at most the scaled
    ``max_pairs`` for training."""
    from nemotron.data import preferences
    from nemotron.data.world import World

    if config.sources:
        pairs = [pair for source in config.sources for pair in preferences.read_pairs(source)]
        train, held_out = preferences.split_held_out(pairs, config.heldout_fraction, config.seed)
    else:
        world = World(config.seed)
        train, held_out = preferences.world_preference_pairs(world, config.rejected_per_prompt, config.seed)
    if config.max_pairs is not None:
        train = train[: apply_scale(config.max_pairs, config.scale)]
    return train, held_out
