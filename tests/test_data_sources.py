"""Reading real .txt directories, .jsonl and .parquet files, globs; bad sources are one-line UserErrors."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nemotron.data.sources import SourceError, iter_documents, resolve_sources


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_directory_of_txt_files_one_document_per_file_sorted_and_recursive(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.txt").write_text("first document\nsecond line\n")
    (tmp_path / "b" / "c.txt").write_text("nested document")
    (tmp_path / "notes.md").write_text("ignored: not a supported extension")
    files = resolve_sources([tmp_path])
    assert [p.name for p in files] == ["a.txt", "c.txt"]
    assert list(iter_documents(files)) == ["first document\nsecond line\n", "nested document"]


def test_txt_paragraph_split(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("one\nstill one\n\n\ntwo\n  \nthree")
    assert list(iter_documents([path], txt_split="paragraph")) == ["one\nstill one\n", "two\n", "three"]


def test_jsonl_with_a_configured_text_field(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [{"content": "alpha", "id": 1}, {"content": "beta", "id": 2}])
    files = resolve_sources([path], text_field="content")
    assert list(iter_documents(files, text_field="content")) == ["alpha", "beta"]


def test_parquet_over_several_record_batches(tmp_path):
    path = tmp_path / "d.parquet"
    texts = [f"document {i}" for i in range(2500)]
    pq.write_table(pa.table({"body": texts, "n": list(range(2500))}), path, row_group_size=700)
    files = resolve_sources([path], text_field="body")
    assert list(iter_documents(files, text_field="body")) == texts


def test_glob_mixes_kinds_in_sorted_order(tmp_path):
    _write_jsonl(tmp_path / "x1.jsonl", [{"text": "from jsonl"}])
    pq.write_table(pa.table({"text": ["from parquet"]}), tmp_path / "x2.parquet")
    (tmp_path / "x3.txt").write_text("from txt")
    files = resolve_sources([str(tmp_path / "x*")])
    assert list(iter_documents(files)) == ["from jsonl", "from parquet", "from txt"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.jsonl", "does not exist"),
        (lambda d: (d / "data.csv").write_text("a,b") and d / "data.csv", "unsupported extension '.csv'"),
        (lambda d: str(d / "nothing-*.jsonl"), "matches no file"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "holds no .txt, .jsonl, .parquet file"),
        (lambda d: _write_jsonl(d / "f.jsonl", [{"body": "x", "id": 1}]), "no text field 'text'.*'body', 'id'"),
        (lambda d: pq.write_table(pa.table({"body": ["x"]}), d / "f.parquet") or d / "f.parquet", "no text field"),
        (lambda d: (d / "bad.jsonl").write_text("{not json\n") and d / "bad.jsonl", "line 1 is not JSON"),
        (lambda d: (d / "bad.parquet").write_text("nope") and d / "bad.parquet", "not a readable Parquet"),
        (lambda d: _write_jsonl(d / "n.jsonl", [{"text": 3}]), "is int, not a string"),
    ],
)
def test_bad_sources_are_one_line_user_errors(tmp_path, make, message):
    source = make(tmp_path)
    with pytest.raises(SourceError, match=message) as info:
        resolve_sources([source])
    assert "\n" not in str(info.value)


def test_a_bad_record_deep_in_a_jsonl_file_names_its_line(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [{"text": "ok"}, {"text": "ok"}, {"other": "x"}])
    files = resolve_sources([path])
    with pytest.raises(SourceError, match="line 3 has no text field"):
        list(iter_documents(files))
