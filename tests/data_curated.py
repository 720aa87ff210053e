"""A real curated Dataset for tests: the data_curation step run once per session at tiny scale (a few seconds).

Other areas may use ``curated_dataset`` (a ``nemotron.data.artifacts.Dataset``) instead of building their own.
"""

from __future__ import annotations

import pytest

CURATED_SEED = 1234


@pytest.fixture(scope="session")
def curated_dataset(tmp_path_factory):
    from nemotron.recipes.nano2.stage0_pretrain.data_curation import Config, main

    return main(Config(scale="tiny", seed=CURATED_SEED, output_dir=tmp_path_factory.mktemp("curated") / "data"))
