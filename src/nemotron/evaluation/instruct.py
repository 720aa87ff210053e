"""Instruction following: greedy generation after a chat prompt, scored by exact match against the expected reply.

A reply is the generated text up to the first ``<|endoftext|>`` (the end of an assistant turn) or newline, stripped;
it matches when it equals the target exactly (surrounding whitespace and a final period ignored). Prompts of equal
token length are generated together as one batch (no padding needed, so batching never changes a result).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from nemotron.data.chat import tokenize_prompt
from nemotron.data.tokenizer import EOD_TOKEN
from nemotron.errors import UserError


@dataclass(frozen=True)
class InstructOutcome:
    exact_match: float
    num_samples: int
    replies: list[dict]  # {"prompt", "target", "reply", "correct", "kind"} per item, in file order

    def metrics(self, prefix: str = "") -> dict[str, float]:
        by_kind: dict[str, list[bool]] = defaultdict(list)
        for reply in self.replies:
            by_kind[reply["kind"]].append(reply["correct"])
        flat = {f"{prefix}instruct/exact_match": self.exact_match}
        flat |= {f"{prefix}instruct/exact_match_{kind}": sum(v) / len(v) for kind, v in sorted(by_kind.items())}
        return flat


def read_items(path: Path, limit: int | None = None) -> list[dict]:
    if not Path(path).is_file():
        raise UserError(f"instruction items {path} do not exist: give a stage1 data_curation Dataset")
    items = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if not items:
        raise UserError(f"instruction items {path}: the file is empty, nothing to evaluate")
    return items[:limit]


def normalise(text: str) -> str:
    return text.strip().removesuffix(".").strip()


def evaluate_instructions(
    forward, tokenizer, items: list[dict], max_length: int, max_new_tokens: int = 16
) -> InstructOutcome:
    """Greedy-generate a reply to every item's ``messages`` and compare it with its ``target``."""
    prompts = [tokenize_prompt(item["messages"], tokenizer) for item in items]
    replies = [""] * len(items)
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, ids in enumerate(prompts):
        by_length[len(ids)].append(index)
    for group in by_length.values():
        generated = greedy_generate(forward, [prompts[i] for i in group], tokenizer, max_length, max_new_tokens)
        for index, text in zip(group, generated, strict=True):
            replies[index] = text
    records = [
        {
            "prompt": item["messages"][-1]["content"],
            "target": item["target"],
            "reply": reply,
            "correct": normalise(reply) == normalise(item["target"]),
            "kind": item.get("kind", "chat"),
        }
        for item, reply in zip(items, replies, strict=True)
    ]
    correct = sum(r["correct"] for r in records)
    return InstructOutcome(correct / len(records), len(records), records)


def greedy_generate(forward, prompts: list[list[int]], tokenizer, max_length: int, max_new_tokens: int) -> list[str]:
    """Greedy continuation of equal-length prompts until every row ended (EOD or newline) or the budget ran out."""
    eod = tokenizer.token_to_id(EOD_TOKEN)
    tokens = torch.tensor(prompts, dtype=torch.long)
    start = tokens.shape[1]
    done = torch.zeros(len(prompts), dtype=torch.bool)
    for _ in range(max_new_tokens):
        if tokens.shape[1] >= max_length or bool(done.all()):
            break
        next_ids = forward(tokens)[:, -1].argmax(dim=-1)
        tokens = torch.cat([tokens, next_ids[:, None]], dim=1)
        done |= next_ids == eod
    texts = []
    for row in tokens[:, start:].tolist():
        row = row[: row.index(eod)] if eod in row else row
        texts.append(tokenizer.decode(row).split("\n")[0])
    return texts
