"""stage2 building blocks: preference pairs from the world and from JSONL, DPO batches, log-probs and loss."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nemotron.data.chat import world_instructions
from nemotron.data.preferences import read_pairs, split_held_out, world_preference_pairs
from nemotron.data.world import World
from nemotron.errors import UserError
from nemotron.training.dpo import collate_pairs, dpo_loss_fn, preference_metrics, sequence_logps


def test_world_pairs_hold_out_stage1s_questions_and_reject_wrong_values_of_the_same_kind():
    world = World(7)
    train, held_out = world_preference_pairs(world, rejected_per_prompt=3, seed=7)
    stage1_held = {item["messages"][0]["content"] for item in world_instructions(world).held_out}
    assert {p["prompt"] for p in held_out} == stage1_held
    assert not stage1_held & {p["prompt"] for p in train}
    assert len(train) == 3 * 3 * len(world.facts)
    # every held-out question against every wrong value of its fact's kind, each exactly once
    for fact in world.facts:
        asked = {p["rejected"] for p in held_out if p["chosen"] == fact.value and p["kind"] == fact.kind}
        assert asked >= set(fact.distractor_pool) - {fact.value}
    assert len(held_out) == sum(len(set(f.distractor_pool) - {f.value}) for f in world.facts)
    values_by_kind = {f.kind: set(f.distractor_pool) for f in world.facts}
    for pair in train + held_out:
        assert pair["chosen"] != pair["rejected"]
        assert pair["rejected"] in values_by_kind[pair["kind"]]
    assert world_preference_pairs(World(7), 3, 7) == (train, held_out)  # a pure function of the seed


def test_read_pairs_names_the_bad_line(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go away.", "extra": 1}) + "\n\n")
    assert read_pairs(good) == [{"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go away."}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "Hi?", "chosen": "Hello."}) + "\n")
    with pytest.raises(UserError, match=r"bad.jsonl:1: needs string fields prompt, chosen, rejected"):
        read_pairs(bad)
    with pytest.raises(UserError, match="does not exist"):
        read_pairs(tmp_path / "missing.jsonl")


def test_split_held_out_never_puts_one_prompt_on_both_sides():
    pairs = [{"prompt": f"q{i % 10}", "chosen": "a", "rejected": f"b{i}"} for i in range(40)]
    train, held = split_held_out(pairs, 0.2, seed=1)
    assert len({p["prompt"] for p in held}) == 2 and len(train) + len(held) == 40
    assert not {p["prompt"] for p in held} & {p["prompt"] for p in train}


def test_collate_masks_exactly_the_response_labels():
    pairs = [{"prompt_ids": [5, 6, 7], "chosen_ids": [8, 0], "rejected_ids": [9, 10, 0]}]
    batch = collate_pairs(pairs, pad_id=0)
    assert batch["tokens"].tolist() == [[5, 6, 7, 8, 0], [5, 6, 7, 9, 10]]  # right-padded with pad_id
    masked = [batch["labels"][r][batch["loss_mask"][r] > 0].tolist() for r in range(2)]
    assert masked == [[8, 0], [9, 10, 0]]


class _BigramTable(torch.nn.Module):
    """A real (if tiny) causal LM: logits depend on the current token only, with megatron's call signature."""

    def __init__(self, vocab: int):
        super().__init__()
        self.table = torch.nn.Embedding(vocab, vocab)

    def forward(self, tokens, position_ids, attention_mask):
        return self.table(tokens)


def test_logps_and_dpo_loss_against_hand_computed_values():
    torch.manual_seed(0)
    model = _BigramTable(12)
    pairs = [
        {"prompt_ids": [1, 2], "chosen_ids": [3, 0], "rejected_ids": [4, 5, 0]},
        {"prompt_ids": [6], "chosen_ids": [7, 0], "rejected_ids": [8, 0]},
    ]
    batch = collate_pairs(pairs, pad_id=0)
    logps = sequence_logps(model, batch)
    table = torch.log_softmax(model.table.weight, dim=-1)
    expected_rejected0 = table[2, 4] + table[4, 5] + table[5, 0]
    assert logps[2].item() == pytest.approx(expected_rejected0.item(), abs=1e-5)
    # policy == reference: every margin is 0, so the loss per pair is log 2
    batch["reference_logps"] = logps.detach()
    total, count = dpo_loss_fn(beta=0.1)(model, batch)
    assert count.item() == 2 and (total / count).item() == pytest.approx(math.log(2), abs=1e-6)
    # the NLL term adds the chosen replies' mean per-token NLL (2 tokens each here)
    total, count = dpo_loss_fn(beta=0.1, sft_weight=1.0)(model, batch)
    nll = -(logps[0] / 2 + logps[1] / 2) / 2
    assert (total / count).item() == pytest.approx(math.log(2) + nll.item(), abs=1e-5)
    # and gradient descent on it prefers the chosen replies
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    for _ in range(20):
        optimizer.zero_grad()
        total, count = dpo_loss_fn(beta=0.5)(model, batch)
        (total / count).backward()
        optimizer.step()
    after = sequence_logps(model, batch).detach()
    metrics = preference_metrics(torch.stack([after[:2], after[2:]], 1), torch.stack([logps[:2], logps[2:]], 1), 0.5)
    assert metrics["reward_accuracy"] == 1.0 and metrics["reward_margin"] > 0
