"""The stage0 data_curation step end to end: artifact, token files, CLI as file and module, user errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nemotron.data.artifacts import Dataset

ROOT = Path(__file__).resolve().parents[1]
STEP_FILE = ROOT / "src/nemotron/recipes/nano2/stage0_pretrain/data_curation.py"
STEP_MODULE = "nemotron.recipes.nano2.stage0_pretrain.data_curation"
PROSE = "The quiet harbour town wakes early, and the fishermen mend their nets while gulls circle overhead."


def _run(args, cwd=ROOT, **kwargs):
    env = {**os.environ, "NEMOTRON_ARTIFACT_ROOT": str(kwargs.pop("artifact_root", "/nonexistent-root"))}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _texts(path):
    return pq.read_table(path).column("text").to_pylist()


def test_artifact_describes_real_files_and_metrics(curated_dataset):
    ds = Dataset.load(path=curated_dataset.path)
    assert ds == curated_dataset
    for path in (ds.train_path, ds.valid_path, ds.tokenizer_path, ds.eval_dir / "facts_mc.jsonl"):
        assert path.exists(), path
    for prefix in (ds.train_prefix, ds.valid_prefix):
        assert Path(f"{prefix}.bin").is_file() and Path(f"{prefix}.idx").is_file()
    m = ds.metrics
    assert m["documents_read"] == 5000  # 1 % of the embedded corpus's 500,000
    dropped = m["dropped_empty"] + m["dropped_quality"] + m["dropped_duplicate"]
    assert m["documents_kept"] == m["documents_read"] - dropped
    assert ds.num_examples == m["train_documents"] == len(_texts(ds.train_path))
    assert m["valid_documents"] == len(_texts(ds.valid_path)) > 0
    assert m["tokens"] == ds.num_tokens and m["valid_tokens"] > 0
    assert 0 <= m["duplicate_rate"] < 0.1
    assert 257 <= ds.vocab_size <= 1024
    assert not list(Path(ds.path).glob(".staging-*"))


def test_indexed_datasets_round_trip_to_the_tokenizer_ids(curated_dataset):
    from tokenizers import Tokenizer

    from nemotron.data.indexed import load_token_documents

    tokenizer = Tokenizer.from_file(str(curated_dataset.tokenizer_path))
    eod = tokenizer.token_to_id("<|endoftext|>")
    for parquet, prefix in (
        (curated_dataset.train_path, curated_dataset.train_prefix),
        (curated_dataset.valid_path, curated_dataset.valid_prefix),
    ):
        texts = _texts(parquet)
        tokens = load_token_documents(prefix)
        assert len(tokens) == len(texts)
        for i, encoding in enumerate(tokenizer.encode_batch(texts)):
            assert tokens[i].tolist() == encoding.ids + [eod]
        assert tokenizer.decode(tokens[0].tolist()[:-1]) == texts[0]
    assert int(load_token_documents(curated_dataset.train_prefix).sequence_lengths.sum()) == curated_dataset.num_tokens


def test_missing_indexed_dataset_is_a_user_error(tmp_path):
    from nemotron.data.indexed import load_token_documents
    from nemotron.errors import UserError

    with pytest.raises(UserError, match="no indexed dataset"):
        load_token_documents(tmp_path / "nothing")


@pytest.mark.slow
def test_step_as_a_file_prints_one_json_document_and_is_deterministic(curated_dataset, tmp_path):
    out = tmp_path / "again"
    result = _run([str(STEP_FILE), "--scale", "tiny", "--seed", "1234", "--output-dir", str(out)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # exactly one JSON document, nothing else on stdout
    assert document["schema"] == "nemotron.step-output/v1"
    assert document["artifacts"]["data_curation"]["type"] == "Dataset"
    rerun = Dataset.load(path=out)
    assert _texts(rerun.train_path) == _texts(curated_dataset.train_path)
    assert rerun.tokenizer_path.read_text() == curated_dataset.tokenizer_path.read_text()
    assert Path(f"{rerun.train_prefix}.bin").read_bytes() == Path(f"{curated_dataset.train_prefix}.bin").read_bytes()


@pytest.mark.slow
def test_step_as_a_module_on_user_sources_with_a_given_tokenizer(curated_dataset, tmp_path):
    sources = tmp_path / "corpus"
    sources.mkdir()
    records = [{"body": f"{PROSE} Chapter {i} of the harbour tale.", "id": i} for i in range(300)]
    records.append(records[0])  # a duplicate to drop
    (sources / "part1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (sources / "part2.txt").write_text(f"{PROSE} A separate text file.")
    out = tmp_path / "user"
    args = ["-m", STEP_MODULE, "--sources", str(sources), "--text-field", "body", "--output-dir", str(out)]
    args += ["--tokenizer-path", str(curated_dataset.tokenizer_path), "--max-documents", "30000"]  # tiny: 300
    result = _run(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ds = Dataset.load(path=out)
    assert ds.metrics["documents_read"] == 300  # 1 % of --max-documents
    assert ds.metrics["dropped_duplicate"] == 0  # the duplicate lies beyond the first 300
    assert ds.vocab_size == curated_dataset.vocab_size
    assert ds.tokenizer_path.read_text() == curated_dataset.tokenizer_path.read_text()
    assert list(ds.eval_dir.iterdir()) == []  # user corpora carry no held-out facts
    assert json.loads(result.stdout)["artifacts"]["data_curation"]["path"] == str(out)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sources", "/no/such/corpus.jsonl"], "source '/no/such/corpus.jsonl' does not exist"),
        (["--sources", "{tmp}/data.csv"], "unsupported extension '.csv'"),
        (["--sources", "{tmp}/d.jsonl", "--text-field", "content"], "no text field 'content'"),
        (["--quality-threshold", "1.5"], "--quality-threshold 1.5 is out of range"),
        (["--tokenizer-path", "{tmp}/missing.json"], "tokenizer '.*missing.json' does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    (tmp_path / "data.csv").write_text("a,b\n")
    (tmp_path / "d.jsonl").write_text('{"text": "hello there"}\n')
    out = tmp_path / "out"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = _run([str(STEP_FILE), *args, "--output-dir", str(out)], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists()


def test_step_module_imports_stay_light():
    code = (
        "import sys, nemotron.recipes.nano2.stage0_pretrain.data_curation\n"
        "print([m for m in ('torch', 'megatron', 'pyarrow', 'tokenizers') if m in sys.modules])"
    )
    result = _run(["-c", code])
    assert result.stdout.strip() == "[]", result.stderr


def _jsonl_corpus(path, label, count=40):
    path.write_text("".join(json.dumps({"text": f"{PROSE} {label} part {i}."}) + "\n" for i in range(count)))
    return path


def test_rerun_replaces_the_artifact_and_a_failed_run_leaves_it_intact(curated_dataset, tmp_path):
    from nemotron.errors import UserError
    from nemotron.recipes.nano2.stage0_pretrain.data_curation import Config, main

    out = tmp_path / "out"
    common = {"output_dir": out, "scale": "full", "tokenizer_path": curated_dataset.tokenizer_path}
    main(Config(sources=(str(_jsonl_corpus(tmp_path / "a.jsonl", "first")),), **common))
    second = main(Config(sources=(str(_jsonl_corpus(tmp_path / "b.jsonl", "second")),), **common))
    texts = _texts(second.train_path) + _texts(second.valid_path)
    assert len(texts) == 40 and all("second part" in t for t in texts)
    assert Dataset.load(path=out) == second

    broken = tmp_path / "broken.jsonl"
    broken.write_text(_jsonl_corpus(tmp_path / "c.jsonl", "third").read_text() + '{"title": "no text"}\n')
    with pytest.raises(UserError, match="line 41 has no text field"):
        main(Config(sources=(str(broken),), **common))
    assert Dataset.load(path=out) == second
    assert _texts(second.train_path) + _texts(second.valid_path) == texts
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_output_dir_that_is_a_file_is_a_user_error(tmp_path):
    from nemotron.errors import UserError
    from nemotron.recipes.nano2.stage0_pretrain.data_curation import Config, main

    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot create output directory"):
        main(Config(output_dir=tmp_path / "file" / "out"))
