"""Chat template, assistant-only loss mask, packing and the SFT sample order: fast, on a real (small) BPE tokenizer."""

from __future__ import annotations

import numpy as np
import pytest

from nemotron.data.chat import pack, tokenize_conversation, tokenize_prompt, world_instructions
from nemotron.data.world import World


@pytest.fixture(scope="module")
def tokenizer():
    from nemotron.data.tokenizer import train_bpe_tokenizer

    return train_bpe_tokenizer(World(1234).documents(300), 400)


def test_loss_mask_covers_exactly_the_assistant_reply_and_its_eod(tokenizer):
    messages = [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Where does Alice live?"},
        {"role": "assistant", "content": "Paris"},
        {"role": "user", "content": "And Bruno?"},
        {"role": "assistant", "content": "Rome"},
    ]
    ids, mask = tokenize_conversation(messages, tokenizer)
    assert len(ids) == len(mask)
    trained = [i for i, m in zip(ids, mask, strict=True) if m]
    eod = tokenizer.token_to_id("<|endoftext|>")
    expected = tokenizer.encode(" Paris").ids + [eod] + tokenizer.encode(" Rome").ids + [eod]
    assert trained == expected
    assert tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if not m]).startswith("<|system|> Answer")
    # An eval prompt is the training conversation's exact token prefix up to the reply.
    prompt = tokenize_prompt(messages[:2], tokenizer)
    assert ids[: len(prompt)] == prompt and mask[len(prompt)] == 1


def test_world_instructions_hold_out_one_question_per_fact_and_follow_the_seed():
    world = World(1234)
    instructions = world_instructions(world)
    assert len(instructions.held_out) == len(world.facts) == 100
    assert len(instructions.train) == 3 * len(world.facts)
    trained_questions = {c[0]["content"] for c in instructions.train}
    assert not trained_questions & {item["messages"][0]["content"] for item in instructions.held_out}
    by_question = {c[0]["content"]: c[1]["content"] for c in instructions.train}
    assert by_question["What is 2 plus 3?"] == "5" or "What is 2 plus 3?" not in by_question
    assert world_instructions(World(1234)) == instructions
    assert world_instructions(World(7)).held_out != instructions.held_out


def test_pack_fills_rows_pads_with_mask_zero_and_cuts_overlong():
    sequences = [([1, 2, 3], [0, 1, 1]), ([4, 5], [0, 1]), ([6, 7, 8, 9, 10, 11], [1] * 6)]
    tokens, mask = pack(sequences, 5, pad_id=0)
    assert tokens.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    assert mask.tolist() == [[0, 1, 1, 0, 1], [1, 1, 1, 1, 1]]
    tokens, mask = pack([([1, 2], [1, 1])], 4, pad_id=9)
    assert tokens.tolist() == [[1, 2, 9, 9]] and mask.tolist() == [[1, 1, 0, 0]]


def test_sft_samples_shift_labels_and_mask_and_reshuffle_each_epoch_deterministically():
    from nemotron.training.sft import PackedSFTSamples

    rows = np.arange(6 * 5, dtype=np.int32).reshape(6, 5)
    mask = np.zeros_like(rows, dtype=np.uint8)
    mask[:, 3:] = 1
    samples = PackedSFTSamples(rows, mask, seq_length=4, seed=1)
    batch = samples.batch(0, 6)
    assert sorted(batch["tokens"][:, 0].tolist()) == [0, 5, 10, 15, 20, 25]  # one epoch = each row once
    assert (batch["labels"] == batch["tokens"] + 1).all()
    assert batch["loss_mask"].tolist() == [[0, 0, 1, 1]] * 6
    again = PackedSFTSamples(rows, mask, seq_length=4, seed=1)
    assert again.batch(6, 6)["tokens"].tolist() == samples.batch(6, 6)["tokens"].tolist()
    assert samples.batch(0, 6)["tokens"].tolist() != samples.batch(6, 6)["tokens"].tolist()


def test_sft_samples_reject_rows_of_the_wrong_length():
    from nemotron.errors import UserError
    from nemotron.training.sft import PackedSFTSamples

    rows = np.ones((2, 5), dtype=np.int32)
    with pytest.raises(UserError, match="rows of 9 tokens"):
        PackedSFTSamples(rows, np.ones_like(rows, dtype=np.uint8), seq_length=8, seed=1)
