"""Instruction-tuning data, the building block of a recipe's SFT data_curation step: conversations -> chat template
-> the pretrained model's tokenizer -> packed rows with an assistant-only loss mask, plus held-out instructions.

Takes a pretrained Checkpoint as input: its tokenizer (the vocabulary must match the model's) and its sequence length
(rows are packed to ``seq_length + 1`` tokens). With no ``sources`` it builds instructions from the same embedded
world as the checkpoint's pretraining corpus: questions about each fact answered with the fact's value, one question
phrasing per fact held out into ``eval/instruct.jsonl``. With ``sources`` it reads JSONL files of
``{"messages": [{role, content}]}``.

A recipe's step module is this block under its own name: ``Config`` = ``ChatCurationConfig``, ``validate``,
``provides``, and ``main`` = ``curate(config, __file__)`` (the step's file names its default output directory).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nemotron.data.artifacts import Dataset
from nemotron.errors import UserError
from nemotron.scale import check_scale
from nemotron.step import Placement, StepConfig, carried_by, check_input
from nemotron.training.artifacts import Checkpoint

STEP = "data_curation"
INSTRUCT_FILE = "instruct.jsonl"
INSTRUCT_TASK = "instruct"


@dataclass
class ChatCurationConfig(StepConfig):
    """Curate chat conversations into packed, assistant-masked training rows for SFT."""

    seed: int = 1234
    """Run seed; the embedded world's seed is the one stage0's corpus used (read from the checkpoint's dataset)."""
    checkpoint_path: Path | None = None
    """stage0 Checkpoint directory (its tokenizer and sequence length), else --checkpoint-artifact, else stdin."""
    checkpoint_artifact: str | None = None
    """Tracked checkpoint, e.g. pretrain-checkpoint:latest."""
    sources: tuple[str, ...] = ()
    """JSONL files with a chat 'messages' list per line; none = the embedded world instructions."""
    valid_fraction: float = 0.05
    """Share of --sources conversations kept for validation (the embedded default validates on held-out items)."""


def validate(config: ChatCurationConfig, placement: Placement, carried: frozenset[str]) -> None:
    """Every check before work: at the start of ``curate``, and by the launcher at plan time (one process, any host)."""
    check_scale(config.scale)
    if not 0.0 < config.valid_fraction < 1.0:
        raise UserError(f"--valid-fraction {config.valid_fraction} is out of range: use a value in (0, 1)")
    check_input(config.checkpoint_path, Checkpoint, "--checkpoint-path")
    if placement.files_here:
        for source in config.sources:
            if not Path(source).expanduser().is_file():
                raise UserError(f"--sources {source!r} does not exist: give .jsonl files of chat 'messages'")


def provides(config: ChatCurationConfig) -> frozenset[str]:
    """Held-out instructions, always: the embedded world's, or --sources conversations from the validation split."""
    return frozenset({INSTRUCT_TASK})


def curate(config: ChatCurationConfig, step_file: str) -> Dataset:
    """The step: validate, read the checkpoint's tokenizer, write the packed splits and held-out instructions into
    the step's output directory (``step_file``: the calling step module's ``__file__``) and save the Dataset."""
    import shutil

    from nemotron.heartbeat import Heartbeat
    from nemotron.log import get_logger
    from nemotron.step import config_snapshot, step_output_dir

    log = get_logger(__name__)
    carried = carried_by(Checkpoint, config.checkpoint_path, config.checkpoint_artifact)
    validate(config, Placement.from_environment(), carried)
    checkpoint = Checkpoint.load(path=config.checkpoint_path, tracked_artifact=config.checkpoint_artifact)
    output_dir = step_output_dir(config, step_file)

    from nemotron.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(Path(checkpoint.tokenizer_path))
    seq_length = int(checkpoint.model["seq_length"])
    train, valid, held_out = _conversations(config, _world_seed(checkpoint, config.seed))
    log.info("%d train / %d valid conversations, %d held-out instructions", len(train), len(valid), len(held_out))

    # coarse progress: conversations written
    with Heartbeat.staged_step(output_dir, STEP, len(train) + len(valid)) as staging:
        stats = _write_files(staging, train, valid, held_out, tokenizer, seq_length)
        shutil.copyfile(checkpoint.tokenizer_path, staging / "tokenizer.json")

    dataset = Dataset(
        path=output_dir,
        num_examples=len(train),
        num_tokens=stats["tokens"],
        train_path=output_dir / "train.jsonl",
        valid_path=output_dir / "valid.jsonl",
        tokenizer_path=output_dir / "tokenizer.json",
        train_prefix=output_dir / "train_packed",
        valid_prefix=output_dir / "valid_packed",
        eval_dir=output_dir / "eval",
        vocab_size=tokenizer.get_vocab_size(),
        provides=sorted(provides(config)),
        metrics=stats,
        config=config_snapshot(config),
        lineage=[checkpoint.as_lineage(step="checkpoint")],
    )
    dataset.save()
    return dataset


def _world_seed(checkpoint, default: int) -> int:
    """The seed of the world the checkpoint was pretrained on, so the instructions ask about facts it learned."""
    try:
        return int(Dataset.load(path=checkpoint.dataset_path).config.get("seed", default))
    except UserError:
        return default


def _conversations(config: ChatCurationConfig, world_seed: int):
    """(train, valid, held-out items): the world's instructions, or user JSONL split by content hash."""
    import hashlib
    import json

    from nemotron.data.chat import read_conversations, world_instructions
    from nemotron.data.world import World

    if not config.sources:
        instructions = world_instructions(World(world_seed))
        valid = [
            item["messages"] + [{"role": "assistant", "content": item["target"]}] for item in instructions.held_out
        ]
        return instructions.train, valid, instructions.held_out
    train, valid = [], []
    for source in config.sources:
        for messages in read_conversations(Path(source)):
            digest = hashlib.sha256(json.dumps(messages).encode()).digest()
            (valid if int.from_bytes(digest[:8]) / 2**64 < config.valid_fraction else train).append(messages)
    if not train:
        raise UserError(f"--sources {' '.join(config.sources)}: no training conversations (all went to validation)")
    valid = valid or train[:1]  # a tiny source still gets a validation loss and an instruction to score
    held_out = [_as_eval_item(m) for m in valid if m[-1]["role"] == "assistant"]
    return train, valid, held_out


def _as_eval_item(messages: list[dict]) -> dict:
    return {"messages": messages[:-1], "target": messages[-1]["content"], "kind": "chat"}


def _write_files(staging: Path, train, valid, held_out, tokenizer, seq_length: int) -> dict[str, float]:
    import json

    from nemotron.data.chat import pack, save_packed, tokenize_conversation
    from nemotron.data.tokenizer import eod_id
    from nemotron.fsutil import atomic_write_text

    stats: dict[str, float] = {}
    for split, conversations in (("train", train), ("valid", valid)):
        atomic_write_text(
            staging / f"{split}.jsonl", "".join(json.dumps({"messages": m}) + "\n" for m in conversations)
        )
        tokenized = [tokenize_conversation(m, tokenizer) for m in conversations]
        tokens, mask = pack(tokenized, seq_length + 1, eod_id(tokenizer))
        save_packed(staging / f"{split}_packed", tokens, mask)
        prefix = "" if split == "train" else "valid_"
        stats[f"{prefix}conversations"] = len(conversations)
        stats[f"{prefix}rows"] = int(tokens.shape[0])
        stats[f"{prefix}tokens"] = sum(len(ids) for ids, _ in tokenized)
        stats[f"{prefix}assistant_tokens"] = int(mask.sum())
    (staging / "eval").mkdir()
    atomic_write_text(staging / "eval" / INSTRUCT_FILE, "".join(json.dumps(item) + "\n" for item in held_out))
    stats["eval_instruct_items"] = len(held_out)
    return stats
