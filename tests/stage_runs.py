"""Real tiny runs of the nano2 stages, once per session, shared by every test (and later stage) that needs them.

``stage0_tiny_run`` / ``stage1_tiny_run`` each run their stage as people do (``python -m <stage package>``, one real
process) and return ``(tmp_dir, artifacts by step name)``. stage1 starts from stage0's checkpoint and compares
with stage0's Results of it (its evaluation baseline).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

NANO2 = "nemotron.recipes.nano2"


def stage_env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "NEMOTRON_ARTIFACT_ROOT": str(tmp / "artifact_root")}


def run_in(tmp: Path, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=stage_env(tmp), timeout=1800, **kwargs)


def _run_stage(tmp: Path, stage: str, *args: str) -> dict:
    done = run_in(tmp, [sys.executable, "-m", f"{NANO2}.{stage}", "--scale", "tiny", *args])
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)["artifacts"]


@pytest.fixture(scope="session")
def stage0_tiny_run(tmp_path_factory):
    """stage0 at --scale tiny: ``(tmp, {"data_curation": ..., "training": ..., "evaluation": ...})``."""
    tmp = tmp_path_factory.mktemp("stage0")
    return tmp, _run_stage(tmp, "stage0_pretrain", "--output-root", str(tmp / "run"))


@pytest.fixture(scope="session")
def stage1_tiny_run(stage0_tiny_run, tmp_path_factory):
    """stage1 at --scale tiny on top of ``stage0_tiny_run``'s checkpoint, same artifact dict shape."""
    _, stage0 = stage0_tiny_run
    tmp = tmp_path_factory.mktemp("stage1")
    init, baseline = stage0["training"]["path"], stage0["evaluation"]["path"]
    return tmp, _run_stage(
        tmp,
        "stage1_instruction_tuning",
        *("--init-checkpoint-path", init, "--eval.baseline-path", baseline, "--output-root", str(tmp / "run")),
    )


def assert_steps_reported_progress(artifacts: dict) -> None:
    """Each step left a finished progress report (nemotron.heartbeat) in its own output directory."""
    from nemotron.heartbeat import PROGRESS_FILE, read_progress

    for step, artifact in artifacts.items():
        record = read_progress(Path(artifact["path"]) / PROGRESS_FILE)
        assert record is not None and record["kind"] == step, (step, record)
        assert record["done"] == record["total"] > 0, (step, record)
