"""nano2 stage1 data curation: conversations -> chat template -> stage0's tokenizer -> assistant-masked packed rows.

Takes the stage0 Checkpoint as input: its tokenizer (the vocabulary must match the model's) and its sequence length
(rows are packed to ``seq_length + 1`` tokens). With no ``--sources`` it builds instructions from the same world as
stage0's corpus (``--seed``): questions about each fact answered with the fact's value, one question phrasing per fact
held out into ``eval/instruct.jsonl``. With ``--sources`` it reads JSONL files of ``{"messages": [{role, content}]}``.

    python -m nemotron.recipes.nano2.stage1_instruction_tuning.data_curation --checkpoint-path STAGE0/training
    ... stage0 training.py | python src/nemotron/recipes/nano2/stage1_instruction_tuning/data_curation.py
"""

from __future__ import annotations

from nemotron.data.artifacts import Dataset
from nemotron.data.instruction_tuning import INSTRUCT_FILE, STEP, curate, provides, validate
from nemotron.data.instruction_tuning import ChatCurationConfig as Config
from nemotron.step import run_step

__all__ = ["INSTRUCT_FILE", "Config", "main", "provides", "validate"]


def main(config: Config) -> Dataset:
    return curate(config, __file__)


if __name__ == "__main__":
    run_step(main, Config, STEP)
