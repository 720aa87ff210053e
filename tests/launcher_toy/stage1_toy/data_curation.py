"""Toy data_curation of stage1_toy (see launcher_toy.steps): it takes stage0_toy's checkpoint, as a later stage's
curation takes the model it starts from (its tokenizer)."""

from dataclasses import dataclass
from pathlib import Path

from launcher_toy.steps import DataConfig, curate
from nemotron.step import run_step


@dataclass
class Config(DataConfig):
    checkpoint_path: Path | None = None
    checkpoint_artifact: str | None = None


def main(config: Config):
    return curate(config, "stage1_toy")


if __name__ == "__main__":
    run_step(main, Config, "data_curation")
