"""The acceptance run: the real nano2 stage0 (data curation -> megatron-core training -> lm-eval) at tiny scale,
launched the way the README says, then launched again and reused.

Training is shortened by an override (this test is about orchestration; the stage's own tests assert learning), which
also exercises an override reaching a real step's CLI."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from launcher_env import LauncherEnv

LAUNCH = ("nano2.stage0", "--executor", "local", "--scale", "tiny", "training.train_iters=40")
STAGE0 = ("stage0_pretrain.data_curation", "stage0_pretrain.training", "stage0_pretrain.evaluation")


@pytest.mark.slow
def test_nano2_stage0_runs_locally_then_every_step_is_reused(launcher_env: LauncherEnv) -> None:
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
