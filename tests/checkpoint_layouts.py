"""Run by tests/test_checkpoint_layouts.py under ``torchrun --nproc-per-node=4``: a recipe's tiny model moved
between layouts of the same four ranks through real checkpoints. Three phases, each a fresh model at its layout:

1. TP=2 x PP=2: train 3 steps, save checkpoint A (logits "saved"), train one more step (logits "after_a_step");
2. TP=1 x PP=1 x DP=4, AdamW's moments sharded over the 4 data-parallel ranks (ZeRO-1): load A (logits "loaded"),
   train one step, save checkpoint B at step 4 (logits "saved"), train one more step (logits "after_a_step");
3. TP=2 x PP=2: load B (logits "loaded"), train one step (logits "after_a_step": equal to phase 2's only if the
   moments each data-parallel rank saved of its share were all restored).

After each save every rank sends SIGUSR1 and SIGTERM to its child processes (megatron's checkpoint writer among
them), as a preemption signal sent to a whole Slurm step does: the later saves must still work.

Every step and every forward pass runs through megatron's schedule (``loop.run_schedule``): under pipeline
parallelism the logits exist on the last stage only, gathered there over its tensor-parallel ranks. Rank 0 writes
every phase's full logits on fixed tokens to RESULTS for the test to compare.

    torchrun --standalone --nproc-per-node=4 tests/checkpoint_layouts.py WORKDIR RESULTS FAMILY [FAMILY ...]

Several families in one world: the start-up (four processes importing torch and megatron) is most of its time.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

VOCAB = 1024
SEQ = 64


def phase(family: str, layout: tuple[int, int], load_from: Path | None, save_to: Path | None, steps: int) -> dict:
    import contextlib

    import torch
    from megatron.core import parallel_state
    from megatron.core import tensor_parallel as mtp

    from nemotron.recipes.nemotron4.stage0_pretrain.training import MODELS
    from nemotron.training.checkpointing import TrainingState, latest_checkpoint, load_checkpoint, save_checkpoint
    from nemotron.training.distributed import all_reduce_gradients
    from nemotron.training.loop import Objective, TrainSettings, build_optimizer, language_model_loss, run_schedule
    from nemotron.training.memory import Layout
    from nemotron.training.model import MODEL_PRESETS, causal_mask
    from nemotron.training.run import prepare_model_run

    started = time.perf_counter()
    config = MODELS["tiny"] if family == "gpt" else MODEL_PRESETS["tiny"]
    tensor, pipeline = layout  # sequence parallel wherever there is tensor parallelism, as the Config's default
    placed = Layout(tensor, pipeline, sequence_parallel=tensor > 1, shard_optimizer=True)
    run = prepare_model_run(config, seed=5, vocab_size=VOCAB, layout=placed)
    settings = TrainSettings(8, 2, 2, 1e-3, 1e-4, 1, "cosine", 1, 0.1, 1.0, (0.9, 0.95), 8, 1, False)
    optimizer, scheduler = build_optimizer(run.model, settings, shard=True)
    tokens = torch.randint(0, VOCAB, (2, SEQ), generator=torch.Generator().manual_seed(0))
    positions = torch.arange(SEQ).expand_as(tokens)
    batch = {"tokens": tokens, "position_ids": positions, "labels": tokens.roll(-1, 1)}
    batch["loss_mask"] = torch.ones_like(tokens)
    no_autocast = contextlib.nullcontext()

    def train_step() -> None:
        optimizer.zero_grad()
        run_schedule(run.model, [batch], language_model_loss, run.ctx, no_autocast, forward_only=False)
        all_reduce_gradients(run.model)  # sequence-parallel norms: each tensor-parallel rank saw half the sequence
        optimizer.step()
        scheduler.step(1)

    def forward(model, batch):
        return model(batch["tokens"], batch["position_ids"], causal_mask(SEQ))

    # the last stage's logits, carried out of the schedule as a "loss" of 0 over 1 item
    carry = Objective(forward, lambda logits, _: (logits, torch.ones(())))

    @torch.no_grad()
    def full_logits() -> torch.Tensor | None:  # collective: every rank calls it; the last stage returns them
        run.model.eval()
        out = run_schedule(run.model, [batch], carry, run.ctx, no_autocast, forward_only=True)
        run.model.train()
        if not out:
            return None
        logits = out[0]["total"]  # vocabulary split over the stage's tensor-parallel ranks
        return mtp.gather_from_tensor_model_parallel_region(logits)[..., :VOCAB].clone()

    step, result = 0, {"layout": layout}
    if load_from is not None:
        step = load_checkpoint(latest_checkpoint(load_from), run.model, optimizer, scheduler).step
        result["loaded"] = full_logits()
    for _ in range(steps):  # moments in the optimizer state, weights away from their init
        train_step()
        step += 1
    if save_to is not None:
        save_checkpoint(save_to, run.model, optimizer, scheduler, TrainingState(step=step))
        result["saved"] = full_logits()
        signal_writer_processes()  # what srun's forwarding does to every process of a step: the later saves must work
    if save_to is not None or load_from is not None:
        train_step()  # the next phase takes this step at its layout: equal only if the moments were restored too
        result["after_a_step"] = full_logits()
    result["seconds"] = time.perf_counter() - started
    result["parameters"] = sum(p.numel() for p in run.model.parameters())  # this rank's
    local = getattr(optimizer, "optim", optimizer)  # a sharded optimizer's share of AdamW lives in .optim
    moments = sum(state["exp_avg"].numel() for state in local.state.values())
    # every rank's view; the test keeps those of the rank that holds logits (the first of the last stage)
    views: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(views, result)
    held: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(held, moments)
    parallel_state.destroy_model_parallel()  # the process group stays: the next phase builds another layout on it
    return next(view for view in views if all(v is not None for v in view.values())) | {"moments_per_rank": held}


def signal_writer_processes() -> None:
    """SIGUSR1 and SIGTERM to this rank's child processes (megatron's checkpoint writer, multiprocessing's resource
    tracker), as a preemption signal sent to the whole step delivers them; they must survive it."""
    import os
    import signal
    import subprocess

    children = subprocess.run(["pgrep", "-P", str(os.getpid())], capture_output=True, text=True).stdout.split()
    assert children, "no checkpoint writer process to signal"
    for child in children:
        os.kill(int(child), signal.SIGUSR1)
        os.kill(int(child), signal.SIGTERM)
    time.sleep(0.2)


def main(work: Path, results: Path, families: list[str]) -> None:
    import torch

    from nemotron.training.distributed import destroy_distributed

    phases = {}
    for family in families:
        first = phase(family, (2, 2), None, work / family / "a", steps=3)
        second = phase(family, (1, 1), work / family / "a", work / family / "b", steps=1)  # saves step 4
        third = phase(family, (2, 2), work / family / "b", None, steps=0)
        phases[family] = [first, second, third]
    if torch.distributed.get_rank() == 0:
        torch.save(phases, results)
    destroy_distributed()


if __name__ == "__main__":  # dist_checkpointing's writer starts a process by spawn, which imports __main__
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
