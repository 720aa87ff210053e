"""Local runs of nano2 training: ``status`` while it runs (attempt, iteration/total, last loss, ETA), and a hang the
watchdog ends, retried by the runner from the last checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

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


@pytest.mark.slow
def test_a_hung_local_training_is_ended_by_its_watchdog_and_resumed_in_a_second_attempt(launcher_env, curated_dataset):
    (launcher_env.profiles / "hangs.toml").write_text(
        'extends = "local"\n[fault_tolerance]\nhang_timeout = 5\n[env]\nNEMOTRON_FAULT_HANG_AT = "12"\n'
    )
    dataset = f"training.dataset_path={curated_dataset.path}"
    done = launcher_env.launch("nano2.stage0.training", "--profile", "hangs", dataset, "training.train_iters=20",
                               "training.warmup_iters=2", "training.save_interval=10", timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = done.document["steps"][TRAINING]["attempts"]
    assert (first["failure"], first["exit_code"], first["decision"]) == ("hang", 76, "retry")
    assert second["failure"] == "completed"
    log = (Path(done.document["run_dir"]) / "logs" / f"{TRAINING}.log").read_text()
    assert "watchdog: rank 0 made no progress for" in log and "_injected_hang" in log  # its stack
    assert "resumed from" in log and "(step 10)" in log
