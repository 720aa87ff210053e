"""Preference pairs for DPO: ``{"prompt", "chosen", "rejected"}`` records, built from the world or read from JSONL.

``prompt`` is the user's message, ``chosen``/``rejected`` two assistant replies; they are rendered with stage1's chat
template (``nemotron.data.chat``) so DPO trains on exactly the format the instruction-tuned model answers in.
The embedded default asks the world's facts with stage1's questions: the chosen reply is the true value, the rejected
one a wrong value of the same kind. **Held-out** pairs use each fact's held-out question (never trained on by stage1
or here), so preference accuracy on them measures what the model generalised, not what it memorised; each held-out
question is paired with *every* wrong value of its kind, so the figure does not hang on which distractor a seed drew
(with one random distractor per question an instruction-tuned model already ranked all 100 pairs right: no headroom).

Tokenized pairs are stored as JSONL with ``prompt_ids``/``chosen_ids``/``rejected_ids`` (replies end with EOD).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

from nemotron.errors import UserError
from nemotron.fsutil import atomic_write_text

PAIR_FIELDS = ("prompt", "chosen", "rejected")


def world_preference_pairs(world, rejected_per_prompt: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(train pairs, held-out pairs) on stage1's questions about ``world``'s facts: the same held-out question per fact
    as stage1 (``chat.world_instructions``), ``rejected_per_prompt`` random wrong values per training question, every
    wrong value per held-out question. Wrong values are of the fact's own kind (a city for a city)."""
    from nemotron.data.chat import QUESTIONS, world_instructions

    fact_of = {q.format(**dict(f.fills)): f for f in world.facts for q in QUESTIONS[f.kind]}
    instructions = world_instructions(world)
    train_questions = [conversation[0]["content"] for conversation in instructions.train]
    held_questions = [item["messages"][0]["content"] for item in instructions.held_out]
    rng = random.Random(f"nemotron-preferences-{seed}")

    def pairs_for(question: str, count: int | None) -> list[dict]:
        fact = fact_of[question]
        wrong = [v for v in fact.distractor_pool if v != fact.value]
        wrong = wrong if count is None else rng.sample(wrong, count)
        return [{"prompt": question, "chosen": fact.value, "rejected": value, "kind": fact.kind} for value in wrong]

    train = [pair for q in train_questions for pair in pairs_for(q, rejected_per_prompt)]
    held_out = [pair for q in held_questions for pair in pairs_for(q, None)]
    rng.shuffle(train)
    return train, held_out


def read_pairs(path: Path) -> list[dict]:
    """Records of a JSONL file with string ``prompt``, ``chosen``, ``rejected``; a bad line is a one-line error."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"preference file {str(path)!r} does not exist: give a .jsonl file of prompt/chosen/rejected")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path}:{number}: not a JSON object (expected prompt/chosen/rejected)") from None
        if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in PAIR_FIELDS):
            raise UserError(f"{path}:{number}: needs string fields {', '.join(PAIR_FIELDS)}")
        if record["chosen"] == record["rejected"]:
            raise UserError(f"{path}:{number}: chosen and rejected are the same text")
        pairs.append({k: record[k] for k in PAIR_FIELDS})
    if not pairs:
        raise UserError(f"preference file {str(path)!r} holds no pairs")
    return pairs


def split_held_out(pairs: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out whole prompts (never a prompt on both sides), chosen by a seeded shuffle."""
    prompts = sorted({p["prompt"] for p in pairs})
    random.Random(f"nemotron-heldout-{seed}").shuffle(prompts)
    count = max(1, round(len(prompts) * fraction))
    if count >= len(prompts):
        raise UserError(f"{len(prompts)} distinct prompts are too few to hold out {fraction:.0%} and train on the rest")
    held = set(prompts[:count])
    return [p for p in pairs if p["prompt"] not in held], [p for p in pairs if p["prompt"] in held]


def tokenize_pairs(pairs: list[dict], tokenizer, eod: int, max_length: int) -> tuple[list[dict], int]:
    """Pairs with token ids in stage1's chat template: the prompt is a user turn plus the assistant header, each
    response is the assistant's reply plus EOD, tokenized exactly as stage1 trains on it. Pairs whose prompt + longer
    response exceed ``max_length`` tokens are dropped (their count is returned)."""
    from nemotron.data.chat import tokenize_prompt

    out, dropped = [], 0
    for pair in pairs:
        prompt_ids = tokenize_prompt([{"role": "user", "content": pair["prompt"]}], tokenizer)
        chosen = tokenizer.encode(" " + pair["chosen"]).ids + [eod]
        rejected = tokenizer.encode(" " + pair["rejected"]).ids + [eod]
        if len(prompt_ids) + max(len(chosen), len(rejected)) > max_length:
            dropped += 1
            continue
        out.append({**pair, "prompt_ids": prompt_ids, "chosen_ids": chosen, "rejected_ids": rejected})
    return out, dropped


def write_pairs(pairs: list[dict], path: Path) -> None:
    atomic_write_text(path, "".join(json.dumps(p) + "\n" for p in pairs))


def load_tokenized_pairs(path: Path) -> list[dict]:
    return list(_iter_jsonl(Path(path)))


def _iter_jsonl(path: Path) -> Iterator[dict]:
    with path.open() as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
