"""A small multi-file corpus with duplicates across files, for sharded-curation tests (``write_corpus``)."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = (
    *("river", "mountain", "forest", "village", "market", "harbor", "garden", "library", "station", "bridge"),
    *("tower", "valley", "meadow", "castle", "teacher", "farmer", "baker", "painter", "sailor", "doctor"),
    *("writer", "singer", "builder", "driver", "morning", "evening", "summer", "winter"),
)


def write_corpus(directory: Path, files: int = 4, documents_per_file: int = 60, seed: int = 7) -> Path:
    """``files`` JSONL files; about a fifth of the documents repeat one from another file (some with other
    whitespace, which normalisation folds), and a few are too short to pass the quality filter."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for f in range(files):
        with open(directory / f"part-{f:02d}.jsonl", "w") as out:
            for _ in range(documents_per_file):
                roll = rng.random()
                if written and roll < 0.2:
                    text = rng.choice(written).replace(" ", "  ", 1)  # the same document after normalisation
                elif roll < 0.25:
                    text = "too short"
                else:
                    sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) for _ in range(3)]
                    text = ". ".join(s.capitalize() for s in sentences) + "."
                    written.append(text)
                out.write(json.dumps({"text": text}) + "\n")
    return directory
