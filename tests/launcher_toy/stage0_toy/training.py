"""Toy training of stage0_toy (see launcher_toy.steps)."""

from dataclasses import dataclass

from launcher_toy.steps import TrainConfig, train
from nemotron.step import run_step


@dataclass
class Config(TrainConfig):
    pass


def main(config: Config):
    return train(config, "stage0_toy")


if __name__ == "__main__":
    run_step(main, Config, "training")
