"""bench/gpu_check.py, the one-shot GPU check, in its CPU dry mode: the same code path (CPU-made checkpoint in a child
process, both recipes' models trained by the recipes' loop, the checkpoint loaded into a freshly built model), tiny
and short, so the script a GPU session runs cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


@pytest.mark.slow
def test_gpu_check_dry_run_passes_on_cpu():
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    trained = {row["model"]: row for row in rows if "model" in row}
    assert set(trained) == {"nano2", "nemotron4"}
    assert "nemotron.training.mamba" in trained["nano2"]["mixer"]  # no kernels here: the plain-PyTorch mixer
    assert all(row["loss_falls"] and row["tokens_per_s"] > 0 for row in trained.values())
    loaded = {row["check"]: row for row in rows if "check" in row}
    assert set(loaded) == {"CPU checkpoint of nano2 loads", "CPU checkpoint of nemotron4 loads"}
    for row in loaded.values():  # same machine, same modules: exact up to rounding
        assert row["ok"] and row["relative_error"] < 1e-5, row
    assert done.stdout.rstrip().splitlines()[-1].startswith("gpu_check: PASS")


def test_gpu_check_without_a_gpu_says_to_use_the_dry_run():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the script would run its real check")
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--dry-run" in done.stderr
