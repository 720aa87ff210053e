"""nano2 stage0 data curation: the embedded world corpus (or your files) -> a tokenized Dataset for pretraining.

Examples:
  python -m nemotron.recipes.nano2.stage0_pretrain.data_curation --scale tiny
  python -m nemotron.recipes.nano2.stage0_pretrain.data_curation --sources 'corpus/*.jsonl' --text-field content
"""

from __future__ import annotations

from nemotron.data.artifacts import Dataset
from nemotron.data.pretraining import CorpusConfig as Config
from nemotron.data.pretraining import array_tasks, curate, provides, validate
from nemotron.step import run_step

__all__ = ["Config", "array_tasks", "main", "provides", "validate"]


def main(config: Config) -> Dataset:
    return curate(config, __file__)


if __name__ == "__main__":
    run_step(main, Config, "data_curation")
