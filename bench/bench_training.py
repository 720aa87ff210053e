"""Tokens/s of our megatron-core training loop for the hybrid model (``M-*-`` at tiny: Mamba-2, FFN, attention,
FFN) beside the same stack with its Mamba-2 layers replaced by attention (``*-*-``), and vs a plain-PyTorch loop
training that attention-only model, in one run; then what the loop's heartbeat (progress.json, hang watchdog) costs.

All train the tiny preset's shape (hidden 128, FFN 512, 4 query / 2 KV heads, Mamba-2 with 4 heads of 32, state 16,
one group; squared-ReLU, RMSNorm, no bias, seq 128, micro-batch 16) on the same random tokens with AdamW and
gradient clipping. On a machine without the CUDA kernels the Mamba-2 layer is ``nemotron.training.mamba``'s
plain-PyTorch mixer. Figures are medians of per-step throughput after warm-up steps.

The heartbeat comparison is one run of ``--heartbeat-steps`` steps in which the loop's heartbeat (progress.json
every 5 s, the watchdog armed) beats after even steps only: steps with and without it interleave, so a busy machine
slows both alike. A step's time is the time between two calls of the batch source, so everything the loop does
between steps counts; the median shows the per-step cost, the mean also the writes (all of them in half the steps:
an upper bound). Beside it, the cost measured directly: a beat, a write. Usage::

    uv run python bench/bench_training.py [--steps 40] [--scale tiny] [--heartbeat-steps 200]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

WARMUP_STEPS = 5


class PlainBlock(nn.Module):
    """One layer of the hybrid stack in plain PyTorch: '*' = pre-norm GQA attention, '-' = pre-norm squared-ReLU MLP."""

    def __init__(self, kind: str, cfg):
        super().__init__()
        self.kind = kind
        self.norm = nn.RMSNorm(cfg.hidden_size, eps=1e-5)
        self.heads, self.groups, self.head_dim = cfg.num_attention_heads, cfg.num_query_groups, cfg.kv_channels
        if kind == "*":
            qkv = (self.heads + 2 * self.groups) * self.head_dim
            self.qkv = nn.Linear(cfg.hidden_size, qkv, bias=False)
            self.proj = nn.Linear(self.heads * self.head_dim, cfg.hidden_size, bias=False)
        else:
            self.fc1 = nn.Linear(cfg.hidden_size, cfg.ffn_hidden_size, bias=False)
            self.fc2 = nn.Linear(cfg.ffn_hidden_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        if self.kind == "-":
            return x + self.fc2(F.relu(self.fc1(h)).square())
        b, t, _ = h.shape
        q, k, v = self.qkv(h).split(
            [self.heads * self.head_dim, self.groups * self.head_dim, self.groups * self.head_dim], -1
        )
        q = q.view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = k.view(b, t, self.groups, self.head_dim).transpose(1, 2)
        v = v.view(b, t, self.groups, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return x + self.proj(out.transpose(1, 2).reshape(b, t, -1))


class PlainModel(nn.Module):
    def __init__(self, cfg, vocab_size: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(PlainBlock(kind, cfg) for kind in cfg.hybrid_override_pattern)
        self.norm = nn.RMSNorm(cfg.hidden_size, eps=1e-5)
        self.out = nn.Linear(cfg.hidden_size, vocab_size, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.out(self.norm(x))


def random_batches(vocab_size: int, seq_length: int, seed: int = 0):
    def batch(first: int, size: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed + first)
        text = torch.randint(0, vocab_size, (size, seq_length + 1), generator=g)
        return {
            "tokens": text[:, :-1],
            "labels": text[:, 1:],
            "loss_mask": torch.ones(size, seq_length),
            "position_ids": torch.arange(seq_length).expand(size, seq_length),
        }

    return batch


def bench_plain(cfg, vocab_size: int, batch_size: int, steps: int) -> float:
    torch.manual_seed(0)
    model = PlainModel(cfg, vocab_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, foreach=False)
    batches = random_batches(vocab_size, cfg.seq_length)
    rates = []
    for step in range(steps):
        started = time.perf_counter()
        batch = batches(step * batch_size, batch_size)
        optimizer.zero_grad(set_to_none=True)
        logits = model(batch["tokens"])
        loss = F.cross_entropy(logits.reshape(-1, vocab_size), batch["labels"].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        rates.append(batch["tokens"].numel() / (time.perf_counter() - started))
    return statistics.median(rates[WARMUP_STEPS:])


def train_settings(steps: int, batch_size: int):
    from nemotron.training.loop import TrainSettings

    return TrainSettings(
        train_iters=steps,
        micro_batch_size=batch_size,
        global_batch_size=batch_size,
        lr=1e-3,
        min_lr=1e-4,
        warmup_iters=1,
        decay_style="cosine",
        wsd_decay_iters=1,
        weight_decay=0.1,
        grad_clip=1.0,
        adam_betas=(0.9, 0.95),
        save_interval=10 * steps,  # one checkpoint, at the end, outside the timed steps
        log_interval=1,
        bf16=False,
    )


def bench_megatron(config, vocab_size: int, batch_size: int, steps: int) -> float:
    from nemotron.training.loop import train
    from nemotron.training.run import prepare_model_run

    run = prepare_model_run(config, seed=0, vocab_size=vocab_size)
    settings = train_settings(steps, batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        train(run.model, random_batches(vocab_size, run.model_config.seq_length), settings, Path(tmp), run.ctx)
        lines = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    run.close()
    return statistics.median(line["tokens_per_second"] for line in lines[WARMUP_STEPS:-1])


def bench_heartbeat(scale: str, vocab_size: int, batch_size: int, steps: int) -> dict[str, list[float]]:
    """Seconds per step of our loop with its heartbeat and without, interleaved step by step in one run."""
    from nemotron.heartbeat import Heartbeat
    from nemotron.training.loop import train
    from nemotron.training.memory import Layout
    from nemotron.training.run import prepare_run

    class EveryOtherStep(Heartbeat):
        """The loop's own heartbeat (progress.json every 5 s, the watchdog armed), beating after even steps only."""

        def beat(self, done: int, *, force: bool = False, **fields) -> None:
            if done % 2 == 0:
                super().beat(done, force=force, **fields)

    run = prepare_run(scale, seed=0, vocab_size=vocab_size, layout=Layout())
    calls: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        heartbeat = EveryOtherStep(Path(tmp), "training", steps, writer=True, hang_timeout=600.0)
        source = _timed(random_batches(vocab_size, run.model_config.seq_length), calls)
        train(run.model, source, train_settings(steps, batch_size), Path(tmp), run.ctx, heartbeat=heartbeat)
    run.close()
    # calls[k] starts step k+1 (0-based k); the time to calls[k+1] includes the beat after it, done = k+1
    periods: dict[str, list[float]] = {"with": [], "without": []}
    for k in range(WARMUP_STEPS, len(calls) - 1):
        periods["with" if (k + 1) % 2 == 0 else "without"].append(calls[k + 1] - calls[k])
    return periods


def heartbeat_costs(repeats: int = 100_000) -> tuple[float, float]:
    """(seconds per step the loop spends on a beat that writes nothing, seconds per progress.json write), measured
    directly: a per-step cost of microseconds is far below the noise of any A/B of whole training steps."""
    from nemotron.heartbeat import Heartbeat

    with tempfile.TemporaryDirectory() as tmp:
        heartbeat = Heartbeat(Path(tmp), "training", 10**9, writer=True, hang_timeout=600.0)
        heartbeat.beat(0)  # the first beat writes and starts the watchdog
        started = time.perf_counter()
        for step in range(1, repeats + 1):  # what the loop does per step: fault hook, fields, beat
            heartbeat.inject_faults(step)
            progress = {"loss": 1.0, "tokens_per_second": round(1234.56, 1)}
            heartbeat.beat(step, **progress, checkpoint_step=None)
        per_beat = (time.perf_counter() - started) / repeats
        writes = 200
        started = time.perf_counter()
        for step in range(writes):
            heartbeat.beat(step, force=True, loss=1.0, tokens_per_second=1234.5, checkpoint_step=None)
        per_write = (time.perf_counter() - started) / writes
        heartbeat.close()
    return per_beat, per_write


def _timed(source, calls: list[float]):
    """``source`` noting when each batch is asked for: once per step (global batch = one micro-batch)."""

    def batch(first: int, size: int) -> dict[str, torch.Tensor]:
        calls.append(time.perf_counter())
        return source(first, size)

    return batch


def main() -> None:
    import dataclasses

    from nemotron.training.model import MODEL_PRESETS, padded_vocab_size

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--scale", default="tiny", choices=["tiny", "small"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--heartbeat-steps", type=int, default=200, help="steps of the heartbeat run (0: skip)")
    args = parser.parse_args()
    hybrid = MODEL_PRESETS[args.scale]
    cfg = dataclasses.replace(hybrid, hybrid_override_pattern=hybrid.hybrid_override_pattern.replace("M", "*"))
    vocab = padded_vocab_size(1024)  # the tiny corpus's BPE vocabulary
    with_mamba = bench_megatron(hybrid, vocab, args.batch_size, args.steps)
    megatron = bench_megatron(cfg, vocab, args.batch_size, args.steps)
    plain = bench_plain(cfg, vocab, args.batch_size, args.steps)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        f"model {args.scale}: hidden {cfg.hidden_size}, seq {cfg.seq_length}, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads, {args.steps} steps (median after {WARMUP_STEPS})"
    )
    print(f"megatron-core loop, hybrid {hybrid.hybrid_override_pattern}:         {with_mamba:10.0f} tokens/s")
    print(f"megatron-core loop, attention-only {cfg.hybrid_override_pattern}: {megatron:10.0f} tokens/s")
    print(f"plain PyTorch loop, attention-only {cfg.hybrid_override_pattern}: {plain:10.0f} tokens/s")
    print(f"ratio hybrid/attention-only (megatron): {with_mamba / megatron:.2f}")
    print(f"ratio megatron/plain (attention-only):  {megatron / plain:.2f}")
    print(f"peak RSS of this process: {peak_gb:.2f} GB")
    if args.heartbeat_steps > 0:
        periods = bench_heartbeat(args.scale, vocab, args.batch_size, args.heartbeat_steps)
        tokens = args.batch_size * cfg.seq_length
        with_, without = periods["with"], periods["without"]
        print(f"heartbeat: one run of {args.heartbeat_steps} steps, with and without interleaved, {len(with_)} each")
        for name, stat in (("median step", statistics.median), ("mean step (writes count twice)", statistics.fmean)):
            on, off = tokens / stat(with_), tokens / stat(without)
            print(f"  {name}: with {on:8.0f} tokens/s, without {off:8.0f} tokens/s, overhead {off / on - 1:+.2%}")
        per_beat, per_write = heartbeat_costs()
        step_s = statistics.quantiles(without, n=10)[0]  # an unhurried step: the 10th percentile, not the noise
        from nemotron.heartbeat import MIN_INTERVAL_S as interval

        cost = per_beat + per_write * step_s / interval  # a write every ``interval`` seconds
        print(
            f"  direct: {per_beat * 1e6:.2f} us per beat, {per_write * 1e3:.2f} ms per progress.json write (every "
            f"{interval:.0f} s) -> {cost / step_s:.4%} of a {step_s * 1e3:.0f} ms step"
        )


if __name__ == "__main__":
    main()
