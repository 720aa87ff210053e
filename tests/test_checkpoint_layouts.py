"""Checkpoints load at another layout: megatron-core's dist_checkpointing saves each tensor with its place in the
full tensor, so a checkpoint saved at tensor-parallel 2 x pipeline-parallel 2 loads at 1 x 1 and the reverse
(``tests/checkpoint_layouts.py`` runs the three phases on four real gloo CPU ranks under torchrun).

Tolerance: 1e-5 absolute on logits of magnitude ~2. The weights are restored exactly (same fp32 values, only
resharded); what differs between layouts is the order of fp32 sums: a row-parallel linear adds two partial
products where one rank computes the whole dot product (a pipeline changes no arithmetic: the second stage
continues from the exact activations the first one sent). Measured differences are 5e-7 to 7e-7 (a few ulps at
this magnitude); a wrong shard, a transposed split or lost optimizer moments differ by 1e-2 or more.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
TOLERANCE = 1e-5


FAMILIES = ("hybrid", "gpt")  # nano2's MambaModel (our mixer's sharded state dict), nemotron4's GPTModel


@pytest.fixture(scope="module")
def moved(tmp_path_factory) -> tuple[Path, dict]:
    """Both families through the three phases, in one torchrun world of four ranks."""
    import torch

    work = tmp_path_factory.mktemp("layouts")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4",
         str(TESTS / "checkpoint_layouts.py"), str(work), str(work / "results.pt"), *FAMILIES],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    phases = torch.load(work / "results.pt")
    seconds = {family: [round(p["seconds"], 1) for p in phases[family]] for family in phases}
    print(f"{time.monotonic() - started:.0f} s; phases: {seconds}")
    return work, phases


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_a_checkpoint_saved_at_tp2_pp2_loads_at_tp1_pp1_and_back_with_equal_logits(moved, family):
    work, phases = moved
    first, second, third = phases[family]

    def gap(a, b) -> float:
        return (a - b).abs().max().item()

    # TP=2 x PP=2 -> TP=1 x PP=1: the weights of step 3, then one step more taken at TP=1 from the restored moments
    assert gap(first["saved"], second["loaded"]) < TOLERANCE
    assert gap(first["after_a_step"], second["saved"]) < TOLERANCE
    # TP=1 x PP=1 -> TP=2 x PP=2, from moments that four data-parallel ranks saved a quarter each of
    assert gap(second["saved"], third["loaded"]) < TOLERANCE
    assert gap(second["after_a_step"], third["after_a_step"]) < TOLERANCE
    parameters = second["parameters"]  # TP=1 x PP=1: every rank holds the whole model
    assert sum(second["moments_per_rank"]) == parameters  # DP=4: every moment once, on one rank
    assert max(second["moments_per_rank"]) < parameters / 2  # split, not replicated
    # and the step between them did change the logits by far more than the tolerance (the comparison can fail)
    assert gap(first["saved"], second["saved"]) > 100 * TOLERANCE
    # the checkpoint records the layout it was saved at
    state = (work / family / "a" / "iter_0000003" / "state.json").read_text()
    assert '"tensor_parallel": 2' in state and '"pipeline_parallel": 2' in state and '"data_parallel": 1' in state


def test_a_checkpoint_of_the_per_shard_format_still_loads_at_its_layout(tmp_path):
    """Checkpoints written before dist_checkpointing (``model_tp0_pp0.pt``/``optim_tp0_pp0.pt`` per model-parallel
    shard) resume and initialise a later stage as before; only at their own world size."""
    import json

    import torch

    from nemotron.errors import UserError
    from nemotron.recipes.nemotron4.stage0_pretrain.training import MODELS
    from nemotron.training.checkpointing import load_checkpoint, load_model_weights
    from nemotron.training.loop import TrainSettings, build_optimizer
    from nemotron.training.run import prepare_model_run

    run = prepare_model_run(MODELS["tiny"], seed=3, vocab_size=1024)
    try:
        settings = TrainSettings(8, 2, 2, 1e-3, 1e-4, 1, "cosine", 1, 0.1, 1.0, (0.9, 0.95), 8, 1, False)
        optimizer, scheduler = build_optimizer(run.model, settings)
        old = tmp_path / "iter_0000007"
        old.mkdir()
        floating = (k for k, v in run.model.state_dict().items() if torch.is_tensor(v) and v.is_floating_point())
        weights = run.model.state_dict() | {k: run.model.state_dict()[k] + 0.5 for k in floating}
        torch.save(weights, old / "model_tp0_pp0.pt")
        torch.save(optimizer.state_dict(), old / "optim_tp0_pp0.pt")
        document = {"step": 7, "consumed_samples": 14, "tokens_seen": 99, "last_loss": 2.5, "world_size": 1}
        (old / "state.json").write_text(json.dumps(document | {"scheduler": scheduler.state_dict()}))

        assert load_checkpoint(old, run.model, optimizer, scheduler).step == 7
        name = "decoder.layers.0.mlp.linear_fc1.weight"
        assert torch.equal(run.model.state_dict()[name], weights[name])
        run.model.state_dict()[name].zero_()
        load_model_weights(old, run.model)
        assert torch.equal(run.model.state_dict()[name], weights[name])
        (old / "state.json").write_text(json.dumps(document | {"world_size": 2, "scheduler": {}}))
        with pytest.raises(UserError, match="per-shard format.* written by 2 ranks, this run has 1"):
            load_checkpoint(old, run.model, optimizer, scheduler)
    finally:
        run.close()
