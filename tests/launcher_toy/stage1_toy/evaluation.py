"""Toy evaluation of stage1_toy (see launcher_toy.steps)."""

from dataclasses import dataclass

from launcher_toy.steps import EvalConfig, evaluate
from nemotron.step import run_step


@dataclass
class Config(EvalConfig):
    pass


def main(config: Config):
    return evaluate(config, "stage1_toy")


if __name__ == "__main__":
    run_step(main, Config, "evaluation")
