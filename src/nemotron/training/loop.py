"""The training loop, readable top to bottom: micro-batches -> megatron's forward/backward schedule -> all-reduce ->
clip -> step -> log -> save.

The same code runs every layout: megatron-core's schedule runs the step's micro-batches (one after another on one
pipeline stage; 1F1B across stages, activations sent between them, under pipeline parallelism), tensor-parallel
layers reduce inside the model, gradients are averaged over the data-parallel group and clipped by the whole model's
norm (``distributed.clip_gradients``).

Reusable by later stages: ``train`` takes the model, a sample source and an ``Objective`` (SFT/DPO pass their own).
Stopping early on SIGTERM/SIGUSR1 (preemption, Slurm time limit) saves a checkpoint and raises
``TrainingInterrupted``; the step turns that into exit code ``REQUEUE_EXIT_CODE`` (75).
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

from nemotron.heartbeat import Heartbeat, hang_timeout_from_env
from nemotron.log import get_logger
from nemotron.training.checkpointing import CheckpointWriter, TrainingState, latest_checkpoint, load_checkpoint
from nemotron.training.curves import Curves
from nemotron.training.distributed import DistributedContext, all_reduce_gradients, any_rank, clip_gradients
from nemotron.training.model import causal_mask
from nemotron.training.presets import TrainSettings  # torch-free: the launcher checks them at plan time

log = get_logger("training.loop")

Batch = dict[str, torch.Tensor]
# (first sample index, number of samples) -> batch
BatchSource = Callable[[int, int], Batch]


class Objective(NamedTuple):
    """What a stage trains for, split where a pipeline splits it: ``forward`` runs this rank's stage of the model on
    a batch (any stage: the last one returns what ``loss`` reads), ``loss`` turns the last stage's output into (sum of
    per-item losses, number of items counted). Called as ``objective(model, batch)`` it is both, on a model that is
    one whole stage."""

    forward: Callable[[torch.nn.Module, Batch], torch.Tensor]
    loss: Callable[[torch.Tensor, Batch], tuple[torch.Tensor, torch.Tensor]]

    def __call__(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loss(self.forward(model, batch), batch)


class TrainingInterrupted(Exception):
    """A stop signal arrived; a checkpoint of ``step`` was saved before raising (``saved``), or the signal came
    while the run was being prepared, before any new step."""

    def __init__(self, step: int, signal_name: str, saved: bool = True):
        if saved:
            message = f"stopped by {signal_name} after step {step}; checkpoint saved"
        else:
            message = f"stopped by {signal_name} while preparing to train from step {step}; nothing new to save"
        super().__init__(message)
        self.step = step


def _per_token_losses(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """The last stage returns each position's next-token cross-entropy (megatron computes it inside the model)."""
    tokens = batch["tokens"]
    return model(tokens, batch["position_ids"], causal_mask(tokens.shape[1], tokens.device), labels=batch["labels"])


def _masked_sum(per_token: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    loss_mask = batch["loss_mask"].float()
    return (per_token.float() * loss_mask).sum(), loss_mask.sum()


# Next-token cross-entropy summed over unmasked positions: pretraining's and SFT's objective.
language_model_loss = Objective(_per_token_losses, _masked_sum)


def build_optimizer(model: torch.nn.Module, settings: TrainSettings, shard: bool = False):
    """AdamW without weight decay on norms (1-D params), and megatron's LR/WD scheduler (warmup + decay or WSD).

    ``shard``: AdamW's moments split over the data-parallel ranks (ZeRO stage 1): each rank updates the parameters
    it owns and broadcasts them. torch's ``ZeroRedundancyOptimizer`` rather than megatron's ``DistributedOptimizer``,
    which needs CUDA tensors (it type-checks for ``torch.cuda.FloatTensor`` and allocates on "cuda"), so it could
    not run on the CPU ranks the tests train on; this one runs the same code over gloo and NCCL. Every parameter
    still gets the same AdamW update, so sharded and unsharded training compute the same numbers."""
    from megatron.core import parallel_state
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "wd_mult": 1.0}, {"params": no_decay, "wd_mult": 0.0}]
    adamw = {
        "lr": settings.lr,
        "betas": settings.adam_betas,
        "weight_decay": settings.weight_decay,
        "foreach": False,  # the per-parameter loop gives identical results run to run on CPU
    }
    data_parallel = parallel_state.get_data_parallel_group()
    if shard and torch.distributed.get_world_size(data_parallel) > 1:
        from torch.distributed.optim import ZeroRedundancyOptimizer

        groups = [group for group in groups if group["params"]]  # it refuses an empty group
        optimizer = ZeroRedundancyOptimizer(
            groups, optimizer_class=torch.optim.AdamW, process_group=data_parallel, **adamw
        )
    else:
        optimizer = torch.optim.AdamW(groups, **adamw)
    scheduler = OptimizerParamScheduler(
        optimizer,
        init_lr=0.0,
        max_lr=settings.lr,
        min_lr=settings.min_lr,
        lr_warmup_steps=settings.warmup_iters,
        lr_decay_steps=settings.train_iters,
        lr_decay_style=settings.decay_style,
        start_wd=settings.weight_decay,
        end_wd=settings.weight_decay,
        wd_incr_steps=settings.train_iters,
        wd_incr_style="constant",
        wsd_decay_steps=settings.wsd_decay_iters if settings.decay_style == "WSD" else None,
        lr_wsd_decay_style="linear" if settings.decay_style == "WSD" else None,
    )
    return optimizer, scheduler


class _StopSignal:
    """Remembers that SIGTERM/SIGUSR1 arrived; the loop checks between steps so a step is never cut in half."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.name: str | None = None
        self.previous: dict[int, object] = {}  # the handlers to give back; empty while not catching

    def catch(self) -> None:
        if not self.previous:
            self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def release(self) -> None:
        """Give the signals back (training is over: a SIGTERM during a later step in this process must end it)."""
        for sig, handler in self.previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        self.previous, self.name = {}, None

    def _handle(self, signum, _frame):
        self.name = signal.Signals(signum).name


# One per process, like the signal handlers it installs.
_stop = _StopSignal()


def catch_stop_signals() -> None:
    """From now on SIGTERM/SIGUSR1 ask ``train`` to stop (exit 75 -> requeue) instead of killing the process.

    Call it before long preparation (model build, a DPO reference pass, a baseline evaluation): a preemption or
    time-limit signal arriving there must still end in a requeue, not in a job killed by the signal.
    """
    _stop.catch()


def train(
    model: torch.nn.Module,
    batches: BatchSource,
    settings: TrainSettings,
    output_dir: Path,
    ctx: DistributedContext,
    objective: Objective = language_model_loss,
    heartbeat: Heartbeat | None = None,
    shard_optimizer: bool = False,
) -> TrainingState:
    """Train to ``settings.train_iters``, resuming from ``output_dir/checkpoints`` if a checkpoint is there.

    ``heartbeat``: None for the step's own (``output_dir/progress.json`` by rank 0, the hang watchdog if
    ``NEMOTRON_HANG_TIMEOUT`` is set); a benchmark passes its own (bench/bench_training.py). ``shard_optimizer``:
    see ``build_optimizer``."""
    per_rank = settings.global_batch_size // ctx.data_parallel_size
    accumulation = per_rank // settings.micro_batch_size
    optimizer, scheduler = build_optimizer(model, settings, shard=shard_optimizer)
    checkpoints = output_dir / "checkpoints"
    metrics_path = output_dir / "metrics.jsonl"
    state = TrainingState()
    resume_from = latest_checkpoint(checkpoints)
    if resume_from is not None:
        state = load_checkpoint(resume_from, model, optimizer, scheduler)
        log.info("resumed from %s (step %d)", resume_from, state.step)
    if ctx.is_rank_zero:
        _truncate_metrics(metrics_path, after_step=state.step)
    catch_stop_signals()
    if any_rank(_stop.name is not None, ctx.device):  # arrived while the run was being prepared
        raise TrainingInterrupted(state.step, _stop.name or "a signal on another rank", saved=False)
    autocast = torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=settings.bf16)
    if heartbeat is None:
        heartbeat = Heartbeat(
            output_dir,
            "training",
            settings.train_iters,
            writer=ctx.is_rank_zero,
            hang_timeout=hang_timeout_from_env(None),
        )
    checkpoint_step = state.step if resume_from is not None else None
    writer = CheckpointWriter(checkpoints, asynchronous=settings.async_save)
    curves = Curves(output_dir, "training", resumed_at=state.step, writer=ctx.is_rank_zero, config=vars(settings))

    model.train()
    with heartbeat, curves:  # the watchdog watches from this first beat until training ends or raises
        # the same keys as every later record; a fresh run's loss is NaN, written as null
        heartbeat.beat(state.step, loss=state.last_loss, tokens_per_second=None, checkpoint_step=checkpoint_step)
        while state.step < settings.train_iters:
            started = time.perf_counter()
            heartbeat.inject_faults(state.step)
            optimizer.zero_grad(set_to_none=True)
            first = state.consumed_samples + ctx.data_parallel_rank * per_rank
            micro_batches = [
                batches(first + micro * settings.micro_batch_size, settings.micro_batch_size)
                for micro in range(accumulation)
            ]
            losses = run_schedule(model, micro_batches, objective, ctx, autocast, forward_only=False)
            # Each micro-batch contributes its share of this rank's mean loss (the schedule scaled its gradient so).
            loss_sum = sum((d["total"] / d["count"] / accumulation for d in losses), torch.zeros((), device=ctx.device))
            all_reduce_gradients(model)
            grad_norm = clip_gradients(model, settings.grad_clip)
            optimizer.step()
            scheduler.step(1)

            tokens = sum(int(b["tokens"].numel()) for b in micro_batches) * ctx.data_parallel_size
            state.step += 1
            state.consumed_samples += settings.global_batch_size
            state.tokens_seen += tokens
            state.last_loss = _data_parallel_mean(from_last_stage(loss_sum))
            if not math.isfinite(state.last_loss):
                raise FloatingPointError(f"training loss is {state.last_loss} at step {state.step}")
            tokens_per_second = tokens / (time.perf_counter() - started)
            if ctx.is_rank_zero and (state.step % settings.log_interval == 0 or state.step == settings.train_iters):
                lr = optimizer.param_groups[0]["lr"]
                _log_step(metrics_path, curves, state, lr, float(grad_norm), tokens_per_second)

            stopping = any_rank(_stop.name is not None, ctx.device)
            progress = {"loss": state.last_loss, "tokens_per_second": round(tokens_per_second, 1)}
            heartbeat.beat(state.step, **progress, checkpoint_step=checkpoint_step)  # also: saving is watched anew
            published = writer.poll()  # an asynchronous save that finished since the last step
            last = stopping or state.step == settings.train_iters  # must exist when this process exits
            if last or state.step % settings.save_interval == 0:
                published = writer.save(model, optimizer, scheduler, state, wait=last) or published
            if published is not None:
                if published != state.step:
                    log.info("checkpoint of step %d written in the background, published after step %d", published,
                             state.step)  # fmt: skip
                checkpoint_step = published
                # forced: the last one, after the final save, is the record of the finished run
                heartbeat.beat(state.step, force=True, **progress, checkpoint_step=checkpoint_step)
            if stopping:
                raise TrainingInterrupted(state.step, _stop.name or "a signal on another rank")
    _stop.release()
    return state


def run_schedule(
    model: torch.nn.Module,
    micro_batches: list[Batch],
    objective: Objective,
    ctx: DistributedContext,
    autocast,
    forward_only: bool,
) -> list[dict[str, torch.Tensor]]:
    """Forward (and backward) ``micro_batches`` through megatron-core's schedule for this layout; return, on the last
    pipeline stage, each micro-batch's ``{"total", "count"}`` (empty elsewhere). Gradients accumulate in ``.grad``.

    The schedule scales each micro-batch's loss by 1/len(micro_batches) before its backward, as a hand-written
    accumulation loop would; under pipeline parallelism it sends activations forward and their gradients back
    (megatron's 1F1B), so every micro-batch of a step must have the same shape."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    queue = iter(micro_batches)

    def forward_step(data_iterator, model):
        batch = {k: v.to(ctx.device, non_blocking=True) for k, v in next(data_iterator).items()}
        with autocast:
            output = objective.forward(model, batch)

        def loss_func(output: torch.Tensor):
            total, count = objective.loss(output, batch)
            return total / count, {"total": total.detach(), "count": count.detach()}

        return output, loss_func

    tokens = micro_batches[0]["tokens"]
    return get_forward_backward_func()(
        forward_step_func=forward_step,
        data_iterator=queue,
        model=model,
        num_microbatches=len(micro_batches),
        seq_length=tokens.shape[1],
        micro_batch_size=tokens.shape[0],
        forward_only=forward_only,
    )


def from_last_stage(value: torch.Tensor) -> torch.Tensor:
    """``value`` as the last pipeline stage computed it (the loss lives there), on every stage."""
    from megatron.core import parallel_state

    if parallel_state.get_pipeline_model_parallel_world_size() == 1:
        return value
    value = value.clone() if parallel_state.is_pipeline_last_stage() else torch.zeros_like(value)
    torch.distributed.all_reduce(value, group=parallel_state.get_pipeline_model_parallel_group())
    return value


def _data_parallel_mean(value: torch.Tensor) -> float:
    from megatron.core import parallel_state

    group = parallel_state.get_data_parallel_group()
    if torch.distributed.get_world_size(group) > 1:
        value = value.clone()
        torch.distributed.all_reduce(value, group=group)
        value /= torch.distributed.get_world_size(group)
    return float(value.item())


def _log_step(
    metrics_path: Path, curves: Curves, state: TrainingState, lr: float, grad_norm: float, tokens_per_second: float
) -> None:
    record = {"step": state.step, "loss": state.last_loss, "lr": lr, "tokens_per_second": round(tokens_per_second, 1)}
    with metrics_path.open("a") as f:
        f.write(json.dumps(record) + "\n")
    scalars = {"loss": state.last_loss, "lr": lr, "grad_norm": grad_norm, "tokens_per_second": tokens_per_second}
    curves.log(state.step, {f"train/{name}": value for name, value in scalars.items()})
    log.info("step %d loss %.4f lr %.2e %.0f tok/s", state.step, state.last_loss, lr, tokens_per_second)


def _truncate_metrics(metrics_path: Path, after_step: int) -> None:
    """Drop lines a killed run logged after its last checkpoint, so a resumed run's curve has each step once."""
    if not metrics_path.exists():
        return
    kept = [line for line in metrics_path.read_text().splitlines() if json.loads(line).get("step", 0) <= after_step]
    metrics_path.write_text("".join(line + "\n" for line in kept))


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    batches: BatchSource,
    num_samples: int,
    micro_batch_size: int,
    ctx: DistributedContext,
    objective: Objective = language_model_loss,
) -> float:
    """Mean per-token loss over samples ``0 .. num_samples-1``, split across data-parallel ranks (forward only,
    through the same schedule as training, so it runs at any layout)."""
    from megatron.core import parallel_state

    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=ctx.device)
    for first in range(
        ctx.data_parallel_rank * micro_batch_size, num_samples, micro_batch_size * ctx.data_parallel_size
    ):
        batch = batches(first, min(micro_batch_size, num_samples - first))
        for d in run_schedule(model, [batch], objective, ctx, contextlib.nullcontext(), forward_only=True):
            totals += torch.stack([d["total"].double(), d["count"].double()])
    totals = from_last_stage(totals)
    if torch.distributed.get_world_size() > 1:
        torch.distributed.all_reduce(totals, group=parallel_state.get_data_parallel_group())
    model.train()
    return float(totals[0] / totals[1])
