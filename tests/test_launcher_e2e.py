"""The acceptance run: the real nano2 stage0 (data curation -> megatron-core training -> lm-eval) at tiny scale,
launched the way the README says, then launched again and reused.

Training is shortened by an override (this test is about orchestration; the stage's own tests assert learning), which
also exercises an override reaching a real step's CLI. The profile asks for Weights & Biases in offline mode
(``[tracking]``), with an API key in the submitting shell: the run is also the W&B acceptance (loss history in each
step's offline run directory, the key in no file), and ``lineage`` / ``plot`` are run on it."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import pytest
import wandb_records
from launcher_env import LauncherEnv

LAUNCH = ("nano2.stage0", "--profile", "tracked", "--scale", "tiny", "training.train_iters=40")
STAGE0 = ("stage0_pretrain.data_curation", "stage0_pretrain.training", "stage0_pretrain.evaluation")
TRACKED_PROFILE = (
    'extends = "local"\nsecrets = ["WANDB_API_KEY"]\n[tracking]\nproject = "nemotron-e2e"\nmode = "offline"\n'
)
API_KEY = "wandb-key-value-4f1c9e0b7a2d"  # a secret's value: must appear in no file the run writes


@pytest.mark.slow
def test_nano2_stage0_runs_locally_then_every_step_is_reused(launcher_env: LauncherEnv, tmp_path: Path) -> None:
    # W&B needs the tracking extra (CI installs it); on a laptop without it, the same run without [tracking]
    tracked = bool(os.environ.get("CI")) or importlib.util.find_spec("wandb") is not None
    (launcher_env.profiles / "tracked.toml").write_text(TRACKED_PROFILE if tracked else 'extends = "local"\n')
    wandb_dirs = {f"WANDB_{name}_DIR": str(tmp_path / "wandb_home" / name) for name in ("CACHE", "CONFIG", "DATA")}
    launcher_env.env.update({"WANDB_API_KEY": API_KEY, **wandb_dirs})  # W&B's own files land under tmp_path too
    first = launcher_env.launch(*LAUNCH, timeout=1200)
    assert first.returncode == 0, first.stderr[-4000:]
    document = first.document
    assert {name: s["state"] for name, s in document["steps"].items()} == dict.fromkeys(STAGE0, "completed")
    types = [
        json.loads((Path(s["artifact"]) / "metadata.json").read_text())["type"] for s in document["steps"].values()
    ]
    assert types == ["Dataset", "Checkpoint", "Results"]
    evaluation = json.loads((Path(document["steps"][STAGE0[2]]["artifact"]) / "metadata.json").read_text())
    training = document["steps"][STAGE0[1]]["artifact"]
    checkpoint = json.loads((Path(training) / "metadata.json").read_text())
    assert checkpoint["num_steps"] == 40 and checkpoint["config"]["train_iters"] == 40
    assert training in [entry["path"] for entry in evaluation["lineage"]]  # wired by the plan

    started = time.perf_counter()
    second = launcher_env.launch(*LAUNCH)
    elapsed = time.perf_counter() - started
    assert second.returncode == 0, second.stderr
    assert {name: s["state"] for name, s in second.document["steps"].items()} == dict.fromkeys(STAGE0, "reused")
    print(f"second (fully reused) launch took {elapsed:.2f} s", file=sys.stderr)  # a figure, not an assert

    status = launcher_env.launch("status", document["run_id"])
    assert status.returncode == 0 and "completed" in status.stderr

    if tracked:
        _assert_tracked_in_wandb(*(Path(document["steps"][name]["artifact"]) for name in STAGE0), tmp_path)
    _assert_lineage_and_plot(launcher_env, document, tmp_path)


def _assert_tracked_in_wandb(data: Path, training: Path, evaluation: Path, tmp_path: Path) -> None:
    from nemotron.tracking import artifact_name

    """Each tracked step wrote a W&B offline run: training its loss at every logged iteration and its Checkpoint with
    its input named; the API key's value is in no file of the run (artifacts, records, logs, W&B's own files)."""
    run_file = wandb_records.run_file(training)
    logged = [json.loads(line) for line in (training / "metrics.jsonl").read_text().splitlines()]
    losses = {row["_step"]: row["train/loss"] for row in wandb_records.history(run_file) if "train/loss" in row}
    assert losses == {m["step"]: m["loss"] for m in logged if "loss" in m}
    assert sorted(losses) == [10, 20, 30, 40]
    (checkpoint,) = wandb_records.logged_artifacts(run_file)
    metadata = json.loads(checkpoint.metadata)
    assert checkpoint.type == "Checkpoint" and metadata["path"] == str(training)
    assert metadata["inputs"] == [{"step": "data_curation", "name": artifact_name(data)}]  # as data_curation logged it
    assert metadata["metrics"]["valid_loss"] > 0 and metadata["code_digest"]
    (results,) = wandb_records.logged_artifacts(wandb_records.run_file(evaluation))
    inputs = {entry["step"]: entry["name"] for entry in json.loads(results.metadata)["inputs"]}
    assert inputs == {"training": checkpoint.name, "data_curation": artifact_name(data)}
    assert checkpoint.name == artifact_name(training)
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and API_KEY.encode() in p.read_bytes()]
    assert leaks == []


def _assert_lineage_and_plot(launcher_env: LauncherEnv, document: dict, tmp_path: Path) -> None:
    run_id, artifacts = document["run_id"], [s["artifact"] for s in document["steps"].values()]
    lineage = launcher_env.launch("lineage", run_id)
    assert lineage.returncode == 0, lineage.stderr
    graph = lineage.document
    assert graph["roots"] == [artifacts[2]]  # the run's last artifact: the evaluation's Results
    kinds = {node["path"]: (node["type"], node["step"]) for node in graph["nodes"].values() if node["type"] != "Source"}
    assert kinds == {
        artifacts[0]: ("Dataset", "stage0_pretrain.data_curation"),
        artifacts[1]: ("Checkpoint", "stage0_pretrain.training"),
        artifacts[2]: ("Results", "stage0_pretrain.evaluation"),
    }
    assert all(graph["nodes"][path]["code_digest"] for path in artifacts)  # set by the launcher for every job
    assert [n["step"] for n in graph["nodes"].values() if n["type"] == "Source"] == ["embedded corpus (seed 1234)"]

    out = tmp_path / "run.png"
    plot = launcher_env.launch("plot", run_id, "--out", str(out))
    assert plot.returncode == 0, plot.stderr
    png = out.read_bytes()
    assert len(png) > 0 and png[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = json.loads(_png_text(png)["Description"])  # what the PNG says it holds
    assert drawn == plot.document["axes"] == {"training": [STAGE0[1]], "evaluation": [STAGE0[2]]}


def _png_text(png: bytes) -> dict[str, str]:
    """The PNG's tEXt chunks (keyword -> text)."""
    import struct

    chunks, position = {}, 8
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind, body = png[position + 4 : position + 8], png[position + 8 : position + 8 + length]
        if kind == b"tEXt":
            keyword, _, value = body.partition(b"\0")
            chunks[keyword.decode("latin-1")] = value.decode("latin-1")
        position += 12 + length
    return chunks
