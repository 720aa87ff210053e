"""A real, tiny causal LM and the files of a tiny Dataset, for the evaluation tests (no checkpoint needed).

The model is a one-layer causal transformer trained for a few hundred steps on sentences of a toy world, so it
really has learned facts the held-out items ask about; the tests compare the lm-eval adapter against
straightforward one-sequence-at-a-time computations with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PEOPLE = ["Alice", "Bob", "Carol", "Dan", "Erin", "Frank", "Grace", "Heidi"]
CITIES = ["Paris", "Rome", "Oslo", "Lima"]
EOD = "<|endoftext|>"


def toy_facts() -> dict[str, str]:
    return {person: CITIES[i % len(CITIES)] for i, person in enumerate(PEOPLE)}


def toy_corpus() -> list[str]:
    facts = toy_facts()
    return [f"{person} lives in {city}." for person, city in facts.items()] + [
        f"The home of {person} is {city}." for person, city in facts.items()
    ]


class TinyCausalLM:
    """Embedding + one causal self-attention block + LM head; ``forward(tokens[B,T]) -> logits[B,T,V]``."""

    def __init__(self, vocab_size: int, max_length: int, width: int = 48, seed: int = 0):
        import torch

        torch.manual_seed(seed)
        self.token = torch.nn.Embedding(vocab_size, width)
        self.position = torch.nn.Embedding(max_length, width)
        self.block = torch.nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=96, dropout=0.0, batch_first=True)
        self.head = torch.nn.Linear(width, vocab_size)
        self.modules = torch.nn.ModuleList([self.token, self.position, self.block, self.head])

    def __call__(self, tokens):
        import torch

        length = tokens.shape[1]
        mask = torch.nn.Transformer.generate_square_subsequent_mask(length)
        hidden = self.token(tokens) + self.position(torch.arange(length))
        return self.head(self.block(hidden, src_mask=mask, is_causal=True))

    def train_on(self, sequences: list[list[int]], steps: int, pad_id: int) -> None:
        import torch

        width = max(len(s) for s in sequences)
        batch = torch.full((len(sequences), width), pad_id)
        for row, seq in enumerate(sequences):
            batch[row, : len(seq)] = torch.tensor(seq)
        optimizer = torch.optim.AdamW(self.modules.parameters(), lr=3e-3)
        for _ in range(steps):
            logits = self(batch[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        self.modules.eval()


def write_toy_dataset(root: Path):
    """tokenizer.json, valid.parquet and eval/facts_{mc,gen}.jsonl of a toy world; returns the tokenizer."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    (root / "eval").mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=[EOD], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(toy_corpus(), trainer)
    tokenizer.save(str(root / "tokenizer.json"))
    pq.write_table(pa.table({"text": toy_corpus()[:6]}), root / "valid.parquet")
    facts = toy_facts()
    with (root / "eval" / "facts_mc.jsonl").open("w") as f:
        for person, city in facts.items():
            f.write(json.dumps({"query": f"{person} lives in", "choices": CITIES, "gold": CITIES.index(city)}) + "\n")
    with (root / "eval" / "facts_gen.jsonl").open("w") as f:
        for person, city in facts.items():
            f.write(json.dumps({"prompt": f"The home of {person} is", "target": city}) + "\n")
    return tokenizer


@pytest.fixture(scope="session")
def toy_world(tmp_path_factory):
    """(dataset dir, tokenizer, trained TinyCausalLM, max_length) shared by the evaluation tests."""
    root = tmp_path_factory.mktemp("toy_world")
    tokenizer = write_toy_dataset(root)
    eod_id = tokenizer.token_to_id(EOD)
    max_length = 24
    model = TinyCausalLM(tokenizer.get_vocab_size(), max_length)
    model.train_on([[eod_id, *tokenizer.encode(t).ids, eod_id] for t in toy_corpus()], steps=150, pad_id=eod_id)
    return root, tokenizer, model, max_length
