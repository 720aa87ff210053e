"""A tiny Dataset artifact for training tests, built with megatron's IndexedDatasetBuilder (no data step needed).

The corpus is a small world of facts told in a few templates (people, cities, pets), tokenized word by word with a
real ``tokenizers`` WordLevel tokenizer: a 4-layer model learns it within a few hundred steps, so "valid loss well
below the unigram baseline" is a fair test of learning.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

PEOPLE = [f"person{i}" for i in range(24)]
CITIES = ["paris", "tokyo", "lima", "oslo", "cairo", "perth", "quito", "seoul"]
PETS = ["cat", "dog", "owl", "fox", "eel", "yak"]
TEMPLATES = [
    "{p} lives in {c} and keeps a {a} .",
    "the {a} of {p} is happy in {c} .",
    "in {c} , {p} walks the {a} every day .",
]


def _documents(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    facts = {p: (rng.choice(CITIES), rng.choice(PETS)) for p in PEOPLE}
    docs = []
    for _ in range(count):
        people = rng.sample(PEOPLE, 3)
        docs.append(" ".join(rng.choice(TEMPLATES).format(p=p, c=facts[p][0], a=facts[p][1]) for p in people))
    return docs


def build_tiny_dataset(root: Path, seed: int = 7, train_docs: int = 3000, valid_docs: int = 200):
    import numpy as np
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
    from tokenizers import Tokenizer, models, pre_tokenizers

    from nemotron.data.artifacts import Dataset

    docs = _documents(seed, train_docs + valid_docs)
    words = sorted({w for d in docs for w in d.split()})
    vocab = {"<|endoftext|>": 0, "<unk>": 1} | {w: i + 2 for i, w in enumerate(words)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    root.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(root / "tokenizer.json"))
    counts = {}
    for split, texts in (("train", docs[:train_docs]), ("valid", docs[train_docs:])):
        prefix = root / f"{split}_text_document"
        builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=np.uint16)
        tokens = 0
        for text in texts:
            ids = np.asarray(tokenizer.encode(text).ids + [0], dtype=np.uint16)
            builder.add_document(ids, [ids.size])
            tokens += ids.size
        builder.finalize(f"{prefix}.idx")
        counts[split] = tokens
        (root / f"{split}.parquet").touch()
    (root / "eval").mkdir(exist_ok=True)
    dataset = Dataset(
        path=root,
        num_examples=train_docs,
        num_tokens=counts["train"],
        train_path=root / "train.parquet",
        valid_path=root / "valid.parquet",
        tokenizer_path=root / "tokenizer.json",
        train_prefix=root / "train_text_document",
        valid_prefix=root / "valid_text_document",
        eval_dir=root / "eval",
        vocab_size=tokenizer.get_vocab_size(),
    )
    dataset.save()
    return dataset


@pytest.fixture(scope="session")
def training_dataset(tmp_path_factory):
    """A saved tiny ``Dataset`` artifact (train/valid indexed datasets + tokenizer.json)."""
    return build_tiny_dataset(tmp_path_factory.mktemp("training-data"))
