"""Reading raw documents from files, directories and globs of ``.txt``, ``.jsonl`` and ``.parquet``, streaming.

``resolve_sources`` checks everything a person can get wrong (missing paths, unknown extensions, a text field that
a file lacks) before any output is written; ``iter_documents`` then yields one document at a time: JSONL line by
line, Parquet record batch by record batch, text files line by line — memory does not grow with the corpus.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from nemotron.errors import UserError

EXTENSIONS = (".txt", ".jsonl", ".parquet")
PARQUET_BATCH_ROWS = 1024
TxtSplit = Literal["file", "paragraph"]


class SourceError(UserError):
    """A source path, extension or field a person got wrong; the message names it and what would be valid."""


def _supported(path: Path) -> bool:
    return path.suffix.lower() in EXTENSIONS


def resolve_sources(sources: Sequence[str | Path], text_field: str = "text") -> list[Path]:
    """Expand files, directories (recursive, sorted) and globs into the list of files to read, validated."""
    files: list[Path] = []
    for source in sources:
        text = str(source)
        if glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not matches:
                raise SourceError(
                    f"source glob {text!r} matches no file: give files, directories or globs of {_kinds()}"
                )
            files.extend(_checked_extension(p) for p in matches)
            continue
        path = Path(text).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _supported(p))
            if not found:
                raise SourceError(f"source directory {text!r} holds no {_kinds()} file")
            files.extend(found)
        elif path.is_file():
            files.append(_checked_extension(path))
        else:
            raise SourceError(f"source {text!r} does not exist: give files, directories or globs of {_kinds()}")
    for path in files:
        _check_text_field(path, text_field)
    return files


def _kinds() -> str:
    return ", ".join(EXTENSIONS)


def _checked_extension(path: Path) -> Path:
    if not _supported(path):
        raise SourceError(f"source {str(path)!r} has unsupported extension {path.suffix or '(none)'!r}: use {_kinds()}")
    return path


def _check_text_field(path: Path, text_field: str) -> None:
    """Fail before writing anything when a structured file lacks the text field (checked on its schema/first row)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            names = pq.ParquetFile(path).schema_arrow.names
        except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
            raise SourceError(f"source {str(path)!r} is not a readable Parquet file ({exc})") from None
        if text_field not in names:
            raise _missing_field(path, text_field, names)
    elif suffix == ".jsonl":
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    _text_of(json_record(line, path, number), text_field, path, number)
                    break


def _missing_field(path: Path, text_field: str, names: Sequence[str], where: str = "") -> SourceError:
    available = ", ".join(repr(n) for n in list(names)[:10]) or "none"
    return SourceError(
        f"source {str(path)!r}{where} has no text field {text_field!r}: available fields are {available} "
        "(choose one with --text-field)"
    )


def json_record(line: str, path: Path, number: int | str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SourceError(f"source {str(path)!r} line {number} is not JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise SourceError(f"source {str(path)!r} line {number} is not a JSON object")
    return record


def _text_of(record: dict, text_field: str, path: Path, number: int | str) -> str:
    if text_field not in record:
        raise _missing_field(path, text_field, list(record), where=f" line {number}")
    value = record[text_field]
    if not isinstance(value, str):
        raise SourceError(
            f"source {str(path)!r} line {number}: field {text_field!r} is {type(value).__name__}, not a string"
        )
    return value


# ------------------------------------------------------------------------------------------------- reading
def iter_documents(files: Sequence[Path], text_field: str = "text", txt_split: TxtSplit = "file") -> Iterator[str]:
    """Raw document texts from ``files`` (as returned by ``resolve_sources``), in order, one at a time.

    ``.txt``: one document per file (``txt_split="file"``) or per blank-line-separated paragraph (``"paragraph"``,
    for large files). ``.jsonl``: one document per line. ``.parquet``: one per row; null texts are skipped.
    """
    for path in files:
        suffix = path.suffix.lower()
        if suffix == ".txt":
            yield from _iter_txt(path, txt_split)
        elif suffix == ".jsonl":
            yield from _iter_jsonl(path, text_field)
        else:
            yield from iter_parquet_texts(path, text_field)


def _iter_txt(path: Path, txt_split: TxtSplit) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        if txt_split == "file":
            yield f.read()
            return
        paragraph: list[str] = []
        for line in f:
            if line.strip():
                paragraph.append(line)
            elif paragraph:
                yield "".join(paragraph)
                paragraph = []
        if paragraph:
            yield "".join(paragraph)


def _iter_jsonl(path: Path, text_field: str) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                yield _text_of(json_record(line, path, number), text_field, path, number)


def iter_document_piece(path: Path, text_field: str, txt_split: TxtSplit, piece: int, pieces: int) -> Iterator[str]:
    """The documents of one of ``pieces`` parts of a file, for reading a large file in parallel: a ``.jsonl`` file's
    lines that start in the piece's byte range, a ``.parquet`` file's row groups in its range; a ``.txt`` file is
    not cut (it is all in piece 0). Every document is in exactly one piece. A bad line is named by its byte offset
    (counting the lines before it would read the pieces before)."""
    suffix = path.suffix.lower()
    if suffix == ".txt":
        yield from _iter_txt(path, txt_split) if piece == 0 else ()
    elif suffix == ".jsonl":
        size = path.stat().st_size
        yield from _iter_jsonl_range(path, text_field, size * piece // pieces, size * (piece + 1) // pieces)
    else:
        import pyarrow.parquet as pq

        groups = pq.ParquetFile(path).num_row_groups
        mine = list(range(groups * piece // pieces, groups * (piece + 1) // pieces))
        yield from iter_parquet_texts(path, text_field, row_groups=mine) if mine else ()


def _iter_jsonl_range(path: Path, text_field: str, start: int, end: int) -> Iterator[str]:
    with open(path, "rb") as f:
        if start > 0:
            f.seek(start - 1)
            f.readline()  # the rest of a line that started before ``start``: the piece before reads it
        while (position := f.tell()) < end:
            raw = f.readline()
            if not raw:
                return
            line = raw.decode("utf-8", errors="replace")
            if line.strip():
                where = f"at byte {position}"
                yield _text_of(json_record(line, path, where), text_field, path, where)


def iter_parquet_texts(
    path: Path, text_field: str = "text", batch_rows: int = PARQUET_BATCH_ROWS, row_groups: list[int] | None = None
) -> Iterator[str]:
    """Texts of one Parquet column, read one record batch at a time (of ``row_groups`` only, if given)."""
    import pyarrow.parquet as pq

    batches = pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=[text_field], row_groups=row_groups)
    for batch in batches:
        for value in batch.column(0).to_pylist():
            if value is not None:
                yield value
