"""Reading what a W&B offline run wrote: its ``run-<id>.wandb`` file, as ``wandb sync`` would upload it.

wandb 0.31 ships no Python reader for it (its core is a Go binary), so this reads the format itself: a 7-byte header
(``:W&B``, magic 0xBEE1, version 0), then LevelDB log records in 32 KiB blocks (each a 7-byte header: CRC, length,
type FULL/FIRST/MIDDLE/LAST), each record a ``wandb_internal_pb2.Record`` protobuf (W&B's own schema).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

BLOCK = 32768
HEADER = struct.Struct("<4sHB")
RECORD = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert HEADER.unpack(data[: HEADER.size]) == (b":W&B", 0xBEE1, 0), f"{path} is not a W&B run file"
    position, pending = HEADER.size, b""
    while position + RECORD.size <= len(data):
        left_in_block = BLOCK - position % BLOCK
        if left_in_block < RECORD.size:  # too little room for a header: the writer padded to the next block
            position += left_in_block
            continue
        _crc, length, kind = RECORD.unpack(data[position : position + RECORD.size])
        pending += data[position + RECORD.size : position + RECORD.size + length]
        position += RECORD.size + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def history(path: Path) -> list[dict]:
    """Every ``run.log`` row: ``{"_step": ..., "train/loss": ...}`` with JSON values decoded."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            )
    return rows


def logged_artifacts(path: Path) -> list:
    return [record.artifact for record in records(path) if record.WhichOneof("record_type") == "artifact"]


def run_file(output_dir: Path) -> Path:
    """The one offline run file a step wrote under ``output_dir/wandb``."""
    found = sorted(Path(output_dir).glob("wandb/offline-run-*/run-*.wandb"))
    assert found, f"no W&B offline run under {output_dir}/wandb"
    return found[-1]
