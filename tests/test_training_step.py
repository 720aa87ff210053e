"""nano2 stage0 training, run for real: learning, artifact, SIGTERM -> exit 75 -> exact resume, torchrun, bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nemotron.errors import REQUEUE_EXIT_CODE
from nemotron.heartbeat import HANG_MARKER, PROGRESS_FILE, read_progress
from nemotron.training.artifacts import Checkpoint

STEP = "nemotron.recipes.nano2.stage0_pretrain.training"
TRAIN_ITERS = 120
# Same arguments for the uninterrupted and the interrupted run: their loss sequences must match exactly.
COMMON = ["--train-iters", str(TRAIN_ITERS), "--log-interval", "10", "--warmup-iters", "10"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # set in this process by in-process tests; each subprocess starts its own world
    return env


def _train(dataset_dir: Path, output_dir: Path, *extra: str, launcher: tuple[str, ...] = (sys.executable, "-m")):
    return subprocess.run(
        [*launcher, STEP, "--dataset-path", str(dataset_dir), "--output-dir", str(output_dir), *COMMON, *extra],
        capture_output=True,
        text=True,
        env=_env(),
        stdin=subprocess.DEVNULL,
        timeout=600,
    )


def _metrics(output_dir: Path) -> list[dict]:
    path = output_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _curve(output_dir: Path, tag: str = "train/loss") -> list[tuple[int, float]]:
    """One TensorBoard curve of a step's output directory, as TensorBoard itself reads it (every events file, a
    restart's purge applied)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(output_dir))
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def _float32(values: list[float]) -> list[float]:
    """What an events file stores of a Python float."""
    import numpy as np

    return [float(np.float32(value)) for value in values]


@pytest.fixture(scope="session")
def trained(curated_dataset, tmp_path_factory):
    """One uninterrupted tiny training run (real subprocess): (Checkpoint, completed process)."""
    output = tmp_path_factory.mktemp("training") / "run"
    done = _train(Path(curated_dataset.path), output)
    assert done.returncode == 0, done.stderr[-3000:]
    return Checkpoint.load(path=output), done


@pytest.mark.slow
def test_tiny_training_learns_and_records_everything(trained, curated_dataset):
    from nemotron.training.checkpointing import checkpoint_tensors

    checkpoint, done = trained
    metrics = checkpoint.metrics
    assert metrics["valid_loss"] < metrics["unigram_loss"] - 1.0, metrics
    assert checkpoint.num_steps == TRAIN_ITERS
    assert checkpoint.tokens_seen == TRAIN_ITERS * 16 * 128
    assert checkpoint.world_size == 1
    assert checkpoint.training_loss == metrics["training_loss"]
    # The published layer kinds on CPU too: Mamba-2 layers run in plain PyTorch, nothing is substituted.
    assert checkpoint.substitutions == []
    assert checkpoint.model["hybrid_override_pattern"] == "M-*-"
    weights = checkpoint_tensors(Path(checkpoint.checkpoint_path))
    # megatron's sharded names: the fused in_proj/conv1d split into their parts (z, x, B, C, dt), as TP splits them
    assert {"decoder.layers.0.mixer.A_log", "decoder.layers.0.mixer.conv1d.weight.x"} <= set(weights)
    assert "optimizer.state.exp_avg_sq.decoder.layers.0.mixer.A_log" in weights  # AdamW's moments too
    assert checkpoint.tokenizer_path == curated_dataset.tokenizer_path
    assert checkpoint.lineage[0].type == "Dataset" and checkpoint.lineage[0].path == Path(curated_dataset.path)
    assert checkpoint.layout == {"tensor_parallel": 1, "pipeline_parallel": 1, "data_parallel": 1}
    lines = _metrics(Path(checkpoint.path))
    steps = [line for line in lines if "loss" in line]
    assert [s["step"] for s in steps] == list(range(10, TRAIN_ITERS + 1, 10))
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert {"valid_loss", "unigram_loss"} <= set(lines[-1])
    assert (Path(checkpoint.path) / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    document = json.loads(done.stdout)  # stdout carries exactly one JSON document
    assert document["artifacts"]["training"]["type"] == "Checkpoint"


def test_training_writes_tensorboard_curves(trained):
    checkpoint, _ = trained
    output = Path(checkpoint.path)
    assert list(output.glob("events.out.tfevents.*"))
    logged = [m for m in _metrics(output) if "loss" in m]
    loss = _curve(output)
    assert [step for step, _ in loss] == [m["step"] for m in logged] == list(range(10, TRAIN_ITERS + 1, 10))
    assert [value for _, value in loss] == _float32([m["loss"] for m in logged])
    assert [value for _, value in _curve(output, "train/lr")] == _float32([m["lr"] for m in logged])
    for tag in ("train/grad_norm", "train/tokens_per_second"):
        assert [step for step, _ in _curve(output, tag)] == [m["step"] for m in logged]
        assert all(value > 0 for _, value in _curve(output, tag))
    assert _curve(output, "valid/loss") == [(TRAIN_ITERS, *_float32([checkpoint.metrics["valid_loss"]]))]


def test_resumed_curves_drop_what_a_killed_attempt_logged_past_its_checkpoint(tmp_path):
    """SIGKILL leaves iterations after the last checkpoint in the events file; the resumed attempt trains them again
    and its curve replaces them, so TensorBoard shows each iteration once."""
    from nemotron.training.curves import Curves

    with Curves(tmp_path, "training") as killed:  # checkpoint at 20, logged up to 30 before the kill
        for step in (10, 20, 30):
            killed.log(step, {"train/loss": 100.0 + step})
    with Curves(tmp_path, "training", resumed_at=20) as resumed:
        for step in (30, 40):
            resumed.log(step, {"train/loss": float(step)})
    assert _curve(tmp_path) == [(10, 110.0), (20, 120.0), (30, 30.0), (40, 40.0)]


def test_training_reports_its_progress(trained):
    checkpoint, _ = trained
    record = read_progress(Path(checkpoint.path) / PROGRESS_FILE)  # the last write: forced after the final save
    assert record["kind"] == "training" and record["done"] == record["total"] == TRAIN_ITERS
    assert record["checkpoint_step"] == TRAIN_ITERS and record["attempt"] == 1
    assert record["loss"] == checkpoint.training_loss and record["tokens_per_second"] > 0 and record["rate"] > 0
    assert not (Path(checkpoint.path) / HANG_MARKER).exists()  # no watchdog unless NEMOTRON_HANG_TIMEOUT asks


@pytest.mark.slow
def test_stop_signals_are_caught_for_training_and_given_back_when_it_ends():
    from nemotron.training import loop

    before = signal.getsignal(signal.SIGTERM)
    loop.catch_stop_signals()
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # with the handler in place: remembered, not fatal
        assert loop._stop.name == "SIGTERM"
    finally:
        loop._stop.release()
    # what a stage module relies on: after training, a SIGTERM (scancel) during evaluation ends the process again
    assert signal.getsignal(signal.SIGTERM) == before and loop._stop.name is None


def test_sigterm_saves_exits_75_and_resume_matches_uninterrupted_run(trained, curated_dataset, tmp_path):
    reference, _ = trained
    output = tmp_path / "run"
    args = [sys.executable, "-m", STEP, "--dataset-path", str(curated_dataset.path), "--output-dir", str(output)]
    proc = subprocess.Popen([*args, *COMMON], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), text=True)
    deadline = time.monotonic() + 300
    while not any(m.get("step", 0) >= 30 for m in _metrics(output)):
        assert proc.poll() is None and time.monotonic() < deadline, "training ended before it could be interrupted"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == REQUEUE_EXIT_CODE, stderr[-3000:]
    stopped_at = int((output / "checkpoints" / "latest").read_text().strip().removeprefix("iter_"))
    assert 30 <= stopped_at < TRAIN_ITERS
    assert not (output / "metadata.json").exists()
    assert read_progress(output / PROGRESS_FILE)["checkpoint_step"] == stopped_at  # written right after the save

    resumed = _train(Path(curated_dataset.path), output)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {output / 'checkpoints'}" in resumed.stderr
    checkpoint = Checkpoint.load(path=output)
    assert checkpoint.training_loss == reference.training_loss  # bitwise: the same float
    assert [m["loss"] for m in _metrics(output) if "loss" in m] == [
        m["loss"] for m in _metrics(Path(reference.path)) if "loss" in m
    ]
    # TensorBoard: one continuous curve over both attempts (two events files), equal to the uninterrupted run's
    assert len(list(output.glob("events.out.tfevents.*"))) >= 3  # attempt 1, attempt 2, the final valid loss
    assert _curve(output) == _curve(Path(reference.path))
    assert [step for step, _ in _curve(output)] == list(range(10, TRAIN_ITERS + 1, 10))


@pytest.mark.slow
def test_torchrun_two_ranks_records_world_size_2_and_saves_in_the_background(curated_dataset, tmp_path):
    output = tmp_path / "run"
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m")
    done = _train(Path(curated_dataset.path), output, "--train-iters", "12", "--global-batch-size", "32",
                  "--save-interval", "4", "--async-save", launcher=launcher)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = Checkpoint.load(path=output)
    assert checkpoint.world_size == 2
    assert checkpoint.tokens_seen == 12 * 32 * 128
    assert json.loads(done.stdout)["artifacts"]["training"]["world_size"] == 2  # rank 0 only printed
    # steps 4 and 8 written by megatron's asynchronous save while training went on, published (complete, renamed
    # into place) only after a later step; step 12, the last, written before the process ended
    for step in (4, 8):
        assert re.search(rf"checkpoint of step {step} written in the background, published after step \d+", done.stderr)
    checkpoints = output / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("iter_*")) == ["iter_0000004", "iter_0000008", "iter_0000012"]
    assert all((checkpoints / name / "state.json").is_file() for name in ("iter_0000004", "iter_0000008"))
    assert (checkpoints / "latest").read_text().strip() == "iter_0000012" and not list(checkpoints.glob(".tmp-*"))


@pytest.mark.slow
def test_checkpoint_loads_for_inference(trained, curated_dataset):
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    from nemotron.training.inference import load_for_inference

    checkpoint, _ = trained
    _, forward = load_for_inference(checkpoint)
    valid = IndexedDataset(str(curated_dataset.valid_prefix))  # keep it alive: documents are views of its mmap
    document = torch.as_tensor(valid[0].astype("int64"))[None, :128]
    logits = forward(document)
    assert logits.shape == (1, document.shape[1], curated_dataset.vocab_size)
    assert logits.dtype == torch.float32
    loss = torch.nn.functional.cross_entropy(logits[0, :-1], document[0, 1:]).item()
    assert loss < checkpoint.metrics["unigram_loss"]
    # the in-process world of one leaves no torchrun variables behind for the processes this one starts next
    assert not {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"} & set(os.environ)


def test_missing_dataset_is_one_line_exit_2(tmp_path):
    done = _train(tmp_path / "no-such-dataset", tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "no-such-dataset" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_bad_batch_size_is_one_line_exit_2(curated_dataset, tmp_path):
    done = _train(Path(curated_dataset.path), tmp_path / "out", "--global-batch-size", "20")
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --global-batch-size 20: must be a multiple of")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "metadata.json").exists()


def test_full_preset_is_nemotron_nano_12b_v2():
    from nemotron.training.model import MODEL_PRESETS

    full = MODEL_PRESETS["full"]
    pattern = full.hybrid_override_pattern
    assert (full.num_layers, pattern.count("M"), pattern.count("-"), pattern.count("*")) == (62, 28, 28, 6)
    assert (full.hidden_size, full.ffn_hidden_size, full.num_attention_heads, full.num_query_groups) == (
        5120,
        20480,
        40,
        8,
    )
    assert full.seq_length == 8192
