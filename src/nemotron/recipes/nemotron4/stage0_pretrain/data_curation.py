"""nemotron4 stage0 data curation: the embedded world corpus (or --sources) -> filtered, deduplicated, tokenized
Dataset with held-out evaluation items (``nemotron.data.pretraining``)."""

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
