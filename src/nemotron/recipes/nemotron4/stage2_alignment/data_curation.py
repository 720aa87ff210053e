"""nemotron4 stage2 data curation: preference pairs about the world of stage0's corpus (or JSONL ``prompt``,
``chosen``, ``rejected``), tokenized with stage1's model's own tokenizer (``nemotron.data.alignment``)."""

from __future__ import annotations

from nemotron.data.alignment import PreferenceCurationConfig as Config
from nemotron.data.alignment import curate, validate
from nemotron.data.preference_artifacts import PreferenceDataset
from nemotron.step import run_step

__all__ = ["Config", "main", "validate"]


def main(config: Config) -> PreferenceDataset:
    return curate(config, __file__)


if __name__ == "__main__":
    run_step(main, Config, "data_curation")
