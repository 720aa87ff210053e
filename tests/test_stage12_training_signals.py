"""stage1 (SFT) and stage2 (DPO) training, run for real: SIGTERM -> checkpoint + exit 75 -> exact resume; torchrun.

The same contract stage0's training keeps (tests/test_training_step.py), through the shared loop with each stage's
own batches and loss. stage1's uninterrupted reference is ``stage1_tiny_run``'s training, repeated from its recorded
config; stage2's is a short run on a small PreferenceDataset curated here from stage1's checkpoint, so each DPO
process scores 48 pairs with the reference model instead of the stage's 900.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from stage_runs import stage_env

from nemotron.errors import REQUEUE_EXIT_CODE
from nemotron.training.artifacts import Checkpoint

NANO2 = "nemotron.recipes.nano2"
TRAINING = {"stage1": f"{NANO2}.stage1_instruction_tuning.training", "stage2": f"{NANO2}.stage2_alignment.training"}
DPO_ITERS = 24
DPO_COMMON = ("--train-iters", str(DPO_ITERS), "--log-interval", "4")
PROGRESS = re.compile(r"nemotron\.training\.loop step (\d+) loss")
# Records, in every Python process of a run, which rank renamed a metadata.json into place (an artifact save).
ARTIFACT_WRITE_HOOK = """\
import os
import sys


def _record_artifact_saves(event, args):
    if event == "os.rename" and str(args[1]).endswith("metadata.json"):
        with open(os.environ["ARTIFACT_SAVES_LOG"], "a") as log:
            log.write(f"{os.environ.get('RANK', 'no-rank')} {args[1]}\\n")


sys.addaudithook(_record_artifact_saves)
"""


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = stage_env(tmp) | extra
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # each subprocess starts its own world
    return env


def _run(tmp: Path, args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, capture_output=True, text=True, env=_env(tmp, **env), stdin=subprocess.DEVNULL, timeout=900
    )


def _train(stage: str, tmp: Path, inputs: list[str], output: Path, *extra: str) -> subprocess.CompletedProcess:
    return _run(tmp, [sys.executable, "-m", TRAINING[stage], *inputs, "--output-dir", str(output), *extra])


def _logged_losses(output_dir: Path) -> list[tuple[int, float]]:
    lines = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return [(line["step"], line["loss"]) for line in lines if "loss" in line]


def _without_speed(metrics: dict) -> dict:
    return {name: value for name, value in metrics.items() if name != "tokens_per_second"}


def _replay_arguments(step_config: type, recorded: dict) -> list[str]:
    """CLI arguments that repeat a recorded run: every Config field (but the output directory) not at its default."""
    args = []
    for field in dataclasses.fields(step_config):
        if field.name != "output_dir" and recorded[field.name] != field.default:
            args += [f"--{field.name.replace('_', '-')}", str(recorded[field.name])]
    return args


@pytest.fixture(scope="session")
def sft_reference(stage1_tiny_run):
    """(arguments, uninterrupted run's output directory): stage1's tiny training, repeated from its recorded config."""
    from nemotron.recipes.nano2.stage1_instruction_tuning.training import Config

    _, stage1 = stage1_tiny_run
    return _replay_arguments(Config, stage1["training"]["config"]), Path(stage1["training"]["path"])


@pytest.fixture(scope="session")
def sft_inputs(stage1_tiny_run) -> list[str]:
    """The packed chat data and the stage0 checkpoint stage1's training started from."""
    _, stage1 = stage1_tiny_run
    config = stage1["training"]["config"]
    return ["--dataset-path", config["dataset_path"], "--init-checkpoint-path", config["init_checkpoint_path"]]


@pytest.fixture(scope="session")
def dpo_inputs(stage1_tiny_run, tmp_path_factory) -> list[str]:
    """A small PreferenceDataset (48 training pairs of the embedded world) for stage1's checkpoint."""
    _, stage1 = stage1_tiny_run
    tmp = tmp_path_factory.mktemp("dpo-data")
    step = f"{NANO2}.stage2_alignment.data_curation"
    args = ["--checkpoint-path", stage1["training"]["path"], "--max-pairs", "4800", "--output-dir", str(tmp / "data")]
    done = _run(tmp, [sys.executable, "-m", step, *args])
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["artifacts"]["data_curation"]["num_examples"] == 48
    return ["--dataset-path", str(tmp / "data")]


@pytest.fixture(scope="session")
def dpo_reference(dpo_inputs, tmp_path_factory):
    """(arguments, uninterrupted run's output directory): DPO_ITERS steps on ``dpo_inputs``."""
    tmp = tmp_path_factory.mktemp("dpo-reference")
    args = [*dpo_inputs, *DPO_COMMON]
    done = _train("stage2", tmp, args, tmp / "run")
    assert done.returncode == 0, done.stderr[-3000:]
    return args, tmp / "run"


def _interrupt_after_first_progress_line(args: list[str], tmp: Path) -> tuple[int, int, str]:
    """Start training, send SIGTERM once it logs a step; return (exit code, step it logged, stderr)."""
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=_env(tmp)
    )
    watchdog = threading.Timer(900, proc.kill)  # a hung run fails the test instead of hanging the suite
    watchdog.start()
    try:
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if match := PROGRESS.search(line):
                proc.send_signal(signal.SIGTERM)
                break
        else:
            pytest.fail("training ended before it logged a step:\n" + "".join(seen)[-3000:])
        _, rest = proc.communicate()
    finally:
        watchdog.cancel()
    return proc.returncode, int(match.group(1)), "".join(seen) + rest


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_sigterm_saves_exits_75_and_resume_matches_uninterrupted_run(stage, request, tmp_path):
    args, reference_dir = request.getfixturevalue({"stage1": "sft_reference", "stage2": "dpo_reference"}[stage])
    reference = Checkpoint.load(path=reference_dir)
    output = tmp_path / "run"
    command = [sys.executable, "-m", TRAINING[stage], *args, "--output-dir", str(output)]

    code, logged_step, stderr = _interrupt_after_first_progress_line(command, tmp_path)
    assert code == REQUEUE_EXIT_CODE, stderr[-3000:]
    stopped_at = int((output / "checkpoints" / "latest").read_text().strip().removeprefix("iter_"))
    assert logged_step <= stopped_at < reference.num_steps
    assert f"stopped by SIGTERM after step {stopped_at}; checkpoint saved" in stderr
    assert not (output / "metadata.json").exists()  # no complete artifact yet

    resumed = _run(tmp_path, command)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {output / 'checkpoints' / f'iter_{stopped_at:07d}'} (step {stopped_at})" in resumed.stderr
    assert min(int(step) for step in PROGRESS.findall(resumed.stderr)) > stopped_at  # continued, did not restart
    checkpoint = Checkpoint.load(path=output)
    assert (checkpoint.num_steps, checkpoint.tokens_seen) == (reference.num_steps, reference.tokens_seen)
    assert checkpoint.training_loss == reference.training_loss  # bitwise: the same float
    assert _without_speed(checkpoint.metrics) == _without_speed(reference.metrics)
    assert _logged_losses(output) == _logged_losses(reference_dir)  # each step once, same losses


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "iters"),
    [("stage1", 4), ("stage2", 2)],
)
def test_torchrun_two_ranks_records_world_size_2_and_only_rank_0_writes(stage, iters, request, tmp_path):
    inputs = request.getfixturevalue({"stage1": "sft_inputs", "stage2": "dpo_inputs"}[stage])
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(ARTIFACT_WRITE_HOOK)
    saves_log = tmp_path / "artifact-saves.log"
    output = tmp_path / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    # 2 ranks x micro-batch 16: one micro-batch per rank and step
    overrides = ["--train-iters", str(iters), "--warmup-iters", "0", "--global-batch-size", "32", "--log-interval", "1"]
    done = _run(
        tmp_path,
        [*torchrun, "-m", TRAINING[stage], *inputs, "--output-dir", str(output), *overrides],
        PYTHONPATH=os.pathsep.join(filter(None, [str(hook_dir), os.environ.get("PYTHONPATH")])),
        ARTIFACT_SAVES_LOG=str(saves_log),
    )
    assert done.returncode == 0, done.stderr[-3000:]

    document = json.loads(done.stdout)  # one JSON document: a second rank printing would add another
    assert document["artifacts"]["training"]["world_size"] == 2
    assert done.stderr.count("[training] Checkpoint -> ") == 1
    assert saves_log.read_text().splitlines() == [f"0 {output / 'metadata.json'}"]
    checkpoint = Checkpoint.load(path=output)
    assert (checkpoint.world_size, checkpoint.num_steps) == (2, iters)
    saved = Path(checkpoint.checkpoint_path)
    assert json.loads((saved / "state.json").read_text())["world_size"] == 2
    assert sorted(p.name for p in saved.glob("rng_rank*.pt")) == ["rng_rank00000.pt", "rng_rank00001.pt"]
    assert [step for step, _ in _logged_losses(output)] == list(range(1, iters + 1))  # rank 0 alone logs


@pytest.mark.slow
def test_sigterm_during_the_dpo_reference_pass_still_exits_75(dpo_inputs, tmp_path):
    """A preemption before the first step (here: while DPO scores the pairs with the reference model) must end in
    a requeue (exit 75), not in a process killed by the signal."""
    output = tmp_path / "run"
    command = [sys.executable, "-m", TRAINING["stage2"], *dpo_inputs, *DPO_COMMON, "--output-dir", str(output)]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=_env(tmp_path)
    )
    for line in proc.stderr:
        if "reference log-probs of" in line:
            proc.send_signal(signal.SIGTERM)
            break
    _, stderr = proc.communicate(timeout=900)
    assert proc.returncode == REQUEUE_EXIT_CODE, stderr[-3000:]
    assert not (output / "metadata.json").exists()
    if not (output / "checkpoints" / "latest").exists():  # the usual case: stopped before step 1
        assert "stopped by SIGTERM while preparing to train from step 0; nothing new to save" in stderr
