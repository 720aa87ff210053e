"""Toy data_curation of stage0_toy (see launcher_toy.steps)."""

from dataclasses import dataclass

from launcher_toy.steps import DataConfig, curate
from nemotron.step import run_step


@dataclass
class Config(DataConfig):
    pass


def main(config: Config):
    return curate(config, "stage0_toy")


if __name__ == "__main__":
    run_step(main, Config, "data_curation")
