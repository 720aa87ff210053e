"""nemotron4 stage1 data curation: conversations about the world of stage0's corpus (or JSONL ``messages``) ->
chat-templated, assistant-masked, packed rows tokenized with the stage0 model's own tokenizer
(``nemotron.data.instruction_tuning``)."""

from __future__ import annotations

from nemotron.data.artifacts import Dataset
from nemotron.data.instruction_tuning import ChatCurationConfig as Config
from nemotron.data.instruction_tuning import curate, provides, validate
from nemotron.step import run_step

__all__ = ["Config", "main", "provides", "validate"]


def main(config: Config) -> Dataset:
    return curate(config, __file__)


if __name__ == "__main__":
    run_step(main, Config, "data_curation")
