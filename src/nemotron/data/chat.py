"""Chat data for instruction tuning: conversations, the chat template, assistant-only loss masks, packing.

A conversation is a list of ``{"role", "content"}`` messages (roles ``system``, ``user``, ``assistant``). The template
renders each message as ``<|role|> content`` on its own line and ends every assistant turn with ``<|endoftext|>``, the
one special token stage0's tokenizer has, so the tuned model learns to stop. Only assistant content (and its closing
``<|endoftext|>``) is trained on: ``loss_mask`` is 1 on those tokens and 0 on everything the user or system wrote.

The embedded default is built from the same deterministic ``World`` as stage0's corpus: each fact is asked with four
question templates, one of them (chosen per fact by the seed) **held out** of training and kept as an evaluation item.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nemotron.data.tokenizer import EOD_TOKEN
from nemotron.data.world import World
from nemotron.errors import UserError

ROLES = ("system", "user", "assistant")
Message = dict[str, str]

# kind -> question templates; the answer is the fact's value alone (exact match compares it to the reply).
QUESTIONS: dict[str, tuple[str, ...]] = {
    "city": (
        "Where does {name} live?",
        "In which city is the home of {name}?",
        "Name the city where {name} lives.",
        "Which city is {name} from?",
    ),
    "job": (
        "What does {name} do for a living?",
        "What is the job of {name}?",
        "Tell me the profession of {name}.",
        "How does {name} earn money?",
    ),
    "pet": (
        "What pet does {name} have?",
        "Which animal does {name} keep at home?",
        "Name the pet of {name}.",
        "What animal lives with {name}?",
    ),
    "colour": (
        "What is the favourite colour of {name}?",
        "Which colour does {name} like best?",
        "Name the colour that {name} prefers.",
        "What colour does {name} love?",
    ),
    "sum": (
        "What is {a} plus {b}?",
        "Add {a} and {b}.",
        "Compute the sum of {a} and {b}.",
        "How much is {a} + {b}?",
    ),
}


def render_message(message: Message) -> str:
    return f"<|{message['role']}|> {message['content']}\n"


def assistant_prefix() -> str:
    """What a prompt ends with so the model writes the assistant's reply next."""
    return "<|assistant|>"


def render_prompt(messages: list[Message]) -> str:
    """Messages so far (ending with a user turn), then the assistant header: the text a model continues."""
    return "".join(render_message(m) for m in messages) + assistant_prefix()


# --------------------------------------------------------------------------------------------- embedded default
@dataclass(frozen=True)
class WorldInstructions:
    train: list[list[Message]]
    held_out: list[dict]  # {"messages": [user], "target": value, "kind": kind}


def world_instructions(world: World) -> WorldInstructions:
    """One conversation per (fact, training question); the held-out question of each fact becomes an eval item."""
    rng = random.Random(f"nemotron-instruct-{world.seed}")
    train, held_out = [], []
    for fact in world.facts:
        templates = QUESTIONS[fact.kind]
        held = rng.randrange(len(templates))
        for index, template in enumerate(templates):
            question = template.format(**dict(fact.fills))
            user = {"role": "user", "content": question}
            if index == held:
                held_out.append({"messages": [user], "target": fact.value, "kind": fact.kind})
            else:
                train.append([user, {"role": "assistant", "content": fact.value}])
    rng.shuffle(train)
    return WorldInstructions(train, held_out)


# --------------------------------------------------------------------------------------------------- JSONL sources
def read_conversations(path: Path) -> Iterator[list[Message]]:
    """``messages`` of each JSONL record, checked: known roles, string content, at least one assistant turn."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"chat source {str(path)!r} does not exist: give a .jsonl file of {{'messages': [...]}}")
    with path.open() as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                yield _checked_messages(line, f"{path}:{number}")


def _checked_messages(line: str, where: str) -> list[Message]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: not valid JSON ({exc.msg})") from None
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list) or not messages:
        raise UserError(f"{where}: expected an object with a non-empty 'messages' list")
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise UserError(f"{where}: message {message!r} needs a 'role' among {', '.join(ROLES)}")
        if not isinstance(message.get("content"), str):
            raise UserError(f"{where}: message {message!r} needs a string 'content'")
    if not any(m["role"] == "assistant" for m in messages):
        raise UserError(f"{where}: no 'assistant' message, so nothing to train on")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


# ------------------------------------------------------------------------------------------ tokenize and pack
def tokenize_conversation(messages: list[Message], tokenizer) -> tuple[list[int], list[int]]:
    """Token ids of the templated conversation and its loss mask (1 on assistant content and its closing EOD)."""
    eod = tokenizer.token_to_id(EOD_TOKEN)
    ids: list[int] = []
    mask: list[int] = []
    for message in messages:
        if message["role"] == "assistant":
            header = tokenizer.encode(assistant_prefix()).ids
            reply = tokenizer.encode(" " + message["content"]).ids + [eod]
            ids += header + reply
            mask += [0] * len(header) + [1] * len(reply)
            ids += tokenizer.encode("\n").ids
            mask += [0]
        else:
            part = tokenizer.encode(render_message(message)).ids
            ids += part
            mask += [0] * len(part)
    return ids, mask


def tokenize_prompt(messages: list[Message], tokenizer) -> list[int]:
    """Token ids of a prompt (no assistant reply yet) ending with the assistant header, split exactly as in training."""
    ids: list[int] = []
    for message in messages:
        ids += tokenize_conversation([message], tokenizer)[0]
    return ids + tokenizer.encode(assistant_prefix()).ids


def pack(sequences: Iterable[tuple[list[int], list[int]]], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedily pack (ids, mask) pairs into rows of ``length`` tokens; a conversation longer than a row is cut.

    Rows are padded with ``pad_id`` under mask 0. Conversations share a row and attend across their boundary, as
    stage0's packed documents do; the mask keeps the loss on assistant tokens only.
    """
    rows_ids: list[list[int]] = []
    rows_mask: list[list[int]] = []
    current_ids: list[int] = []
    current_mask: list[int] = []
    for ids, mask in sequences:
        ids, mask = ids[:length], mask[:length]
        if len(current_ids) + len(ids) > length:
            rows_ids.append(current_ids)
            rows_mask.append(current_mask)
            current_ids, current_mask = [], []
        current_ids += ids
        current_mask += mask
    if current_ids:
        rows_ids.append(current_ids)
        rows_mask.append(current_mask)
    tokens = np.full((len(rows_ids), length), pad_id, dtype=np.int32)
    loss_mask = np.zeros((len(rows_ids), length), dtype=np.uint8)
    for row, (ids, mask) in enumerate(zip(rows_ids, rows_mask, strict=True)):
        tokens[row, : len(ids)] = ids
        loss_mask[row, : len(mask)] = mask
    return tokens, loss_mask


def save_packed(prefix: Path, tokens: np.ndarray, loss_mask: np.ndarray) -> None:
    """``PREFIX.tokens.npy`` and ``PREFIX.loss_mask.npy`` (rows of seq_length + 1: inputs and shifted labels)."""
    np.save(f"{prefix}.tokens.npy", tokens)
    np.save(f"{prefix}.loss_mask.npy", loss_mask)


def load_packed(prefix: Path) -> tuple[np.ndarray, np.ndarray]:
    paths = [Path(f"{prefix}.tokens.npy"), Path(f"{prefix}.loss_mask.npy")]
    for path in paths:
        if not path.is_file():
            raise UserError(f"packed SFT data {path} does not exist: give a stage1 data_curation Dataset")
    return np.load(paths[0]), np.load(paths[1])
