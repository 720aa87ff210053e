"""Normalisation, the quality score, the dedup hash set, the split, and the curation pass over real Parquet files."""

from __future__ import annotations

import re
import unicodedata

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemotron.data.curate import curate_to_parquet
from nemotron.data.filters import (
    HashSet,
    content_hash,
    count_letters,
    is_valid_split,
    normalize_text,
    quality_score,
)
from nemotron.errors import UserError

PROSE = "The river runs past the old mill, where the baker sells fresh bread every morning before sunrise."


def test_normalize_folds_unicode_compatibility_forms_and_whitespace():
    assert normalize_text("Ｈｅｌｌｏ\u00a0ﬁne\tworld  ") == "Hello fine world"
    assert normalize_text("  a  b \r\n\r\n\r\n\r\n  c\t\td\n") == "a b\n\nc d"
    assert normalize_text(" \n\t \u3000 ") == ""


@given(st.text(max_size=200))
def test_normalize_is_idempotent(text):
    once = normalize_text(text)
    assert normalize_text(once) == once


def test_quality_scores_prose_high_and_names_the_weak_check():
    assert quality_score(PROSE).score == 1.0
    cases = {
        "too short": "word_count",
        "a b c d e f g h i j k l": "word_length",
        " ".join("qwertyuiopasdfghjklzxcvbnm"[i:] + "qwertyuiop" for i in range(12)): "word_length",  # junk tokens
        "12 34 56 78 90 12 34 56 78 90 1.5 2.5 3.5": "alpha_fraction",
        "\n".join(["buy cheap watches now today"] * 6): "unique_lines",
    }
    for text, weakest in cases.items():
        quality = quality_score(text)
        assert quality.score < 0.5, text
        assert quality.weakest == weakest, text


@given(st.text(max_size=300))
def test_quality_score_is_in_unit_interval(text):
    assert 0.0 <= quality_score(text).score <= 1.0


@settings(max_examples=50)
@given(st.lists(st.integers(min_value=0, max_value=2**64 - 1), max_size=300))
def test_hash_set_agrees_with_python_set(keys):
    table, reference = HashSet(capacity=16), set()
    for key in keys:
        key = key or 1  # 0 is folded onto 1 (the empty-slot marker); content_hash collisions are as likely
        assert table.add(key) == (key not in reference)
        reference.add(key)
    assert len(table) == len(reference)


def test_hash_set_costs_at_most_16_bytes_per_entry():
    table = HashSet(capacity=16)
    for i in range(50_000):
        table.add(content_hash(f"document {i}"))
    assert len(table) == 50_000
    assert table.nbytes <= 16 * 50_000 * 1.4  # 8-byte slots, table at most half full (power-of-two sizes)


def test_split_is_deterministic_and_close_to_the_fraction():
    digests = [content_hash(f"doc {i}") for i in range(20_000)]
    chosen = [is_valid_split(d, 0.1) for d in digests]
    assert chosen == [is_valid_split(d, 0.1) for d in digests]
    assert 0.09 < sum(chosen) / len(chosen) < 0.11


def _texts(path):
    return pq.read_table(path).column("text").to_pylist()


def test_curation_dedups_normalised_text_and_counts_every_drop(tmp_path):
    documents = [f"{PROSE} Story number {i} ends here." for i in range(200)]
    documents += [
        documents[0].replace(" ", "  "),  # same after whitespace normalisation
        documents[1].replace("The", "Ｔｈｅ"),  # same after NFKC
        documents[2],  # exact duplicate
        "   \n\t ",  # empty after normalisation
        "tiny",  # low quality
        "\n".join(["spam spam spam spam spam spam"] * 5),  # repeated lines
    ]
    train, valid = tmp_path / "train.parquet", tmp_path / "valid.parquet"
    stats = curate_to_parquet(documents, train, valid, quality_threshold=0.5, valid_fraction=0.2)
    metrics = stats.metrics()
    assert metrics["documents_read"] == 206
    assert metrics["dropped_duplicate"] == 3
    assert metrics["dropped_empty"] == 1
    assert metrics["dropped_quality"] == 2
    assert metrics["dropped_quality_word_count"] == 1 and metrics["dropped_quality_unique_lines"] == 1
    assert metrics["duplicate_rate"] == pytest.approx(3 / 206)
    kept = _texts(train) + _texts(valid)
    assert sorted(kept) == sorted(documents[:200])
    assert 20 < len(_texts(valid)) < 60
    assert metrics["documents_kept"] == 200


def test_curation_gives_each_split_a_document_when_the_hash_would_not(tmp_path):
    train, valid = tmp_path / "train.parquet", tmp_path / "valid.parquet"
    stats = curate_to_parquet([PROSE, PROSE + " Again."], train, valid, quality_threshold=0.5, valid_fraction=0.01)
    assert (stats.train_documents, stats.valid_documents) == (1, 1)
    assert len(_texts(train)) == len(_texts(valid)) == 1


def test_curation_with_nothing_left_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="survived curation"):
        curate_to_parquet(["x", "y"], tmp_path / "t.parquet", tmp_path / "v.parquet", 0.5, 0.05)


# The document-at-a-time regex versions these functions replaced, kept as the reference they must equal.
def _reference_normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = [re.sub(r"[^\S\n]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _reference_letters(text: str) -> int:
    return len(re.sub(r"[\W\d_]+", "", text))


# Every whitespace code point, line breaks of all kinds, letters, digits of other scripts, numeric symbols, "_",
# compatibility forms NFKC folds, a combining mark and a lone surrogate (JSON can carry one).
AWKWARD_CHARS = [chr(c) for c in range(0x3000 + 1) if chr(c).isspace()] + list("\n\r\t aZé_0٣²½ⅣＡﬁ\u0301\ud800.😀")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(AWKWARD_CHARS) | st.text(max_size=3), max_size=60).map("".join))
def test_normalize_and_letter_count_equal_the_regex_reference(text):
    assert normalize_text(text) == _reference_normalize(text)
    assert count_letters(text) == _reference_letters(text)
