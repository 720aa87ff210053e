"""Weighted blends of Dataset artifacts in pretraining: read through megatron's BlendedDataset in the weights'
proportions, recorded in the checkpoint's lineage, and refused in one line when an entry is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nemotron.errors import UserError
from nemotron.training.blend import BlendEntry, megatron_blend, parse_blend

STEP = "nemotron.recipes.nano2.stage0_pretrain.training"
TRAIN_ITERS = 10  # x 16 samples per step (tiny preset): 160 samples consumed


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("/data/web:0", "weight 0 must be a positive number"),
        ("/data/web:-0.5", "weight -0.5 must be a positive number"),
        ("/data/web:nan", "weight nan must be a positive number"),
        ("/data/web:most", "weight 'most' is not a number"),
        ("/data/web", "is not DIR:WEIGHT"),
        (":0.5", "is not DIR:WEIGHT"),
        ("data/web:0.5", "as an absolute path"),
    ],
)
def test_a_malformed_blend_entry_is_one_line_naming_it(entry: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as raised:
        parse_blend([entry])
    assert "\n" not in str(raised.value) and repr(entry) in str(raised.value)


def test_a_blend_entry_keeps_colons_of_its_directory_and_a_dataset_is_named_once(tmp_path: Path) -> None:
    assert parse_blend([f"{tmp_path}/a:b:2", f"{tmp_path}/c:1e-1"]) == [
        BlendEntry(tmp_path / "a:b", 2.0),
        BlendEntry(tmp_path / "c", 0.1),
    ]
    with pytest.raises(UserError, match="names .* twice"):
        parse_blend([f"{tmp_path}/a:1", f"{tmp_path}/./a:2"])


def test_each_datasets_weight_is_spread_over_its_shards_by_their_tokens(tmp_path: Path) -> None:
    from nemotron.data.artifacts import Dataset, DatasetShard

    def dataset(name: str, shard_tokens: list[int]) -> Dataset:
        root = tmp_path / name
        shards = [DatasetShard(path=f"shards/{i:05d}", train_documents=1, valid_documents=1,
                               train_tokens=t, valid_tokens=1) for i, t in enumerate(shard_tokens)]  # fmt: skip
        files = {f: root / f for f in ("train.parquet", "valid.parquet", "tokenizer.json", "eval")}
        return Dataset(path=root, num_examples=1, num_tokens=1, train_path=files["train.parquet"],
                       valid_path=files["valid.parquet"], tokenizer_path=files["tokenizer.json"],
                       train_prefix=root / "train_text_document", valid_prefix=root / "valid_text_document",
                       eval_dir=files["eval"], vocab_size=8, shards=shards)  # fmt: skip

    web, math = dataset("web", [300, 100]), dataset("math", [])
    blend = megatron_blend([web, math], [7.0, 3.0], "train")
    assert blend.prefixes == [
        tmp_path / "web/shards/00000/train_text_document",
        tmp_path / "web/shards/00001/train_text_document",
        tmp_path / "math/train_text_document",
    ]
    assert blend.weights == pytest.approx([0.525, 0.175, 0.3]) and blend.owners == [0, 0, 1]
    alone = megatron_blend([math], None, "valid")
    assert (alone.prefixes, alone.weights) == ([tmp_path / "math/valid_text_document"], None)


@pytest.fixture(scope="module")
def second_dataset(curated_dataset, tmp_path_factory):
    """Another tiny corpus (another seed's world), tokenized with the first one's tokenizer, as a blend needs."""
    from nemotron.recipes.nano2.stage0_pretrain.data_curation import Config, main

    output = tmp_path_factory.mktemp("curated-second") / "data"
    return main(Config(scale="tiny", seed=7, tokenizer_path=Path(curated_dataset.tokenizer_path), output_dir=output))


@pytest.mark.slow
def test_training_on_a_blend_draws_samples_by_weight_and_records_both(
    curated_dataset, second_dataset, tmp_path: Path
) -> None:
    from nemotron.training.artifacts import Checkpoint

    web, math = Path(curated_dataset.path), Path(second_dataset.path)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    args = ["--dataset-path", str(web), "--output-dir", str(tmp_path / "run"), "--blend", f"{web}:0.7", f"{math}:0.3"]
    schedule = ["--train-iters", str(TRAIN_ITERS), "--warmup-iters", "2", "--log-interval", "5"]
    done = subprocess.run(
        [sys.executable, "-m", STEP, *args, *schedule],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = Checkpoint.load(path=tmp_path / "run")
    # Counted from megatron's dataset_index over the samples the loop consumed (TRAIN_ITERS x global batch).
    assert checkpoint.metrics["blend_share_0"] == pytest.approx(0.7, abs=0.03)
    assert checkpoint.metrics["blend_share_1"] == pytest.approx(0.3, abs=0.03)
    recorded = [(Path(e.path), e.step, e.weight) for e in checkpoint.lineage]
    assert recorded == [(web, "data_curation", pytest.approx(0.7)), (math, "blend", pytest.approx(0.3))]


def test_a_blend_of_datasets_with_different_tokenizers_is_refused_at_start(curated_dataset, tmp_path: Path) -> None:
    from nemotron.training.blend import check_blend

    other = tmp_path / "other"
    other.mkdir()
    (other / "tokenizer.json").write_text("{}")
    metadata = curated_dataset.model_copy(update={"path": other, "tokenizer_path": other / "tokenizer.json"})
    metadata.save()
    with pytest.raises(UserError, match="another tokenizer than --dataset-path"):
        check_blend(parse_blend([f"{other}:1"]), Path(curated_dataset.path))
    with pytest.raises(UserError, match="no Dataset artifact there"):
        check_blend(parse_blend([f"{tmp_path / 'absent'}:1"]), Path(curated_dataset.path))


def test_the_launcher_reads_a_blend_override_as_one_entry_per_comma() -> None:
    from nemotron.launcher.overrides import parse_override, parse_values
    from nemotron.training.pretraining import PretrainConfig

    override = parse_override("training.blend=/data/web:0.7,/data/math:0.3")
    values = parse_values(PretrainConfig, [override], "stage0_pretrain.training")
    assert values == {"blend": ("/data/web:0.7", "/data/math:0.3")}
