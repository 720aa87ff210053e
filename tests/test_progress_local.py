"""``status`` of a local run while nano2 training runs: attempt, iteration/total, last loss and an ETA."""

from __future__ import annotations

import time

import pytest

TRAINING = "stage0_pretrain.training"


@pytest.mark.slow
def test_status_of_running_local_training_shows_iteration_total_and_loss(launcher_env, curated_dataset):
    dataset = f"training.dataset_path={curated_dataset.path}"
    launched = launcher_env.launch("nano2.stage0.training", "--executor", "local", dataset,
                                   "training.train_iters=2000", "training.warmup_iters=2", "--detach")  # fmt: skip
    assert launched.returncode == 0, launched.stderr
    run_id = launched.document["run_id"]
    try:
        deadline, step, shown = time.monotonic() + 300, {}, ""
        while time.monotonic() < deadline:
            status = launcher_env.launch("status", run_id)
            step, shown = status.document["steps"][TRAINING], status.stderr
            if step.get("progress", {}).get("done", 0) > 0:
                break
            time.sleep(1)
        progress = step["progress"]
        assert step["state"] == "running" and progress["total"] == 2000 and 0 < progress["done"] < 2000
        assert progress["loss"] > 0 and progress["attempt"] == 1 and step["attempts"][0]["number"] == 1
        assert f"{progress['done']}/2000 loss " in shown and " ETA " in shown  # the table's progress column
    finally:
        cancelled = launcher_env.launch("cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
