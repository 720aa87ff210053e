"""One-shot GPU check (issue 24): the GPU path of both recipes' models, in one prepared script under 8 minutes.

On a CUDA machine it
1. makes tiny nano2 and nemotron4 checkpoints on the CPU (a child process that sees no GPU: the plain-PyTorch Mamba-2
   mixer, megatron's local layers) and records their logits on a fixed batch;
2. builds nano2 (hybrid, ``small``: 14 layers ``M-M-M*-M-M-M*-``, hidden 1024) with whatever is installed
   (Transformer Engine + mamba_ssm/causal_conv1d kernels: the published spec; otherwise the plain-PyTorch stack),
   then, if the kernels are there, nano2 again with the plain-PyTorch mixer on the GPU, then nemotron4 (dense,
   ``small``: 8 layers, hidden 1024); trains each a few dozen steps in bf16 (the training loop the recipes run) on a
   learnable synthetic stream, checks that the loss falls, and prints tokens/s and MFU against the GPU's bf16 peak;
3. loads each CPU-made checkpoint into the same tiny model built on the GPU (Transformer Engine layers and the Mamba
   kernels where installed: the same parameter names, see ``nemotron.training.mamba``) and checks its logits
   against the CPU's.

``--dry-run`` runs the same code on the CPU at tiny size for a few steps, fp32 (tests run it, so it cannot rot).
Exit status 0 if every check passed, 1 otherwise. Usage::

    uv run python bench/gpu_check.py               # on a GPU machine
    uv run python bench/gpu_check.py --dry-run     # anywhere
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bf16 dense peaks (TFLOP/s, no sparsity) of the GPUs this project targets, from NVIDIA's data sheets.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0}
VOCAB = 1024  # the synthetic stream's vocabulary (a multiple of 128: the builder pads nothing)
LOSS_DROP = 0.5  # nats the loss must fall from the first three steps to the last three
LOGIT_TOLERANCE = 2e-3  # relative to the largest logit: fp32 on both sides, TF32 off; differences are summation order


def learnable_batches(vocab: int, seq_length: int, seed: int = 0, pool: int = 64):
    """A learnable stream: a fixed random Markov chain whose successors are drawn Zipf-like (token r about 1/r as
    often), so the loss falls from ln(vocab) as soon as a model learns token frequencies, then bigrams. A pool of
    ``pool`` sequences is generated once and cycled, so the timed steps do not include generating data."""
    import torch

    g = torch.Generator().manual_seed(seed)
    zipf = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64)
    successors = torch.multinomial(zipf, vocab * 4, replacement=True, generator=g).view(vocab, 4)
    choice = torch.multinomial(torch.tensor([0.55, 0.25, 0.15, 0.05]), pool * seq_length, True, generator=g)
    text = torch.empty(pool, seq_length + 1, dtype=torch.long)
    text[:, 0] = torch.randint(0, vocab, (pool,), generator=g)
    for t, column in enumerate(choice.view(pool, seq_length).T):
        text[:, t + 1] = successors[text[:, t], column]

    def batch(first: int, size: int) -> dict[str, torch.Tensor]:
        rows = text[torch.arange(first, first + size) % pool]
        return {
            "tokens": rows[:, :-1],
            "labels": rows[:, 1:],
            "loss_mask": torch.ones(size, seq_length),
            "position_ids": torch.arange(seq_length).expand(size, seq_length),
        }

    return batch


def settings(steps: int, micro_batch: int, bf16: bool):
    from nemotron.training.loop import TrainSettings

    return TrainSettings(
        train_iters=steps,
        micro_batch_size=micro_batch,
        global_batch_size=micro_batch,
        lr=3e-3,
        min_lr=1e-3,
        warmup_iters=2,
        decay_style="cosine",
        wsd_decay_iters=1,
        weight_decay=0.1,
        grad_clip=1.0,
        adam_betas=(0.9, 0.95),
        save_interval=10 * steps,  # one checkpoint, after the last step
        log_interval=1,
        bf16=bf16,
    )


def flops_per_token(config) -> float:
    """Training FLOPs per token: 6 x (parameters outside the input embedding) for the matmuls, plus attention's
    scores and values (12 x layers x heads x head dim x sequence, PaLM's accounting) and, per Mamba-2 layer, the SSD
    scan at megatron's chunk of 128 (3 x forward: ``2 h (q (n + p) + 2 n p)``). An estimate, as every MFU is."""
    from nemotron.training.model import GPTConfig, count_parameters

    matmuls = 6 * (count_parameters(config, VOCAB) - VOCAB * config.hidden_size)
    width = config.num_attention_heads * config.kv_channels
    if isinstance(config, GPTConfig):
        return matmuls + 12 * config.num_layers * width * config.seq_length
    pattern = config.hybrid_override_pattern
    h, n, p = config.mamba_num_heads, config.mamba_state_dim, config.mamba_head_dim
    ssd = 3 * 2 * h * (min(128, config.seq_length) * (n + p) + 2 * n * p)
    return matmuls + 12 * pattern.count("*") * width * config.seq_length + pattern.count("M") * ssd


def peak_flops(device) -> tuple[float | None, str]:
    import torch

    if device.type != "cuda":
        return None, "cpu"
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in name:
            return tflops * 1e12, name
    return None, name


def train_one(label: str, config, steps: int, micro_batch: int, bf16: bool, plain_mamba: bool = False) -> dict:
    """Build ``config`` on this machine, train ``steps`` steps with the recipes' loop; loss, tokens/s, MFU."""
    from nemotron.training import model as model_module
    from nemotron.training.loop import train
    from nemotron.training.run import prepare_model_run

    kernels = model_module.mamba_kernels_available
    if plain_mamba:  # the plain-PyTorch stack even where the kernels are installed (the fallback must work on GPU)
        model_module.mamba_kernels_available = lambda: False
    try:
        run = prepare_model_run(config, seed=0, vocab_size=VOCAB)
    finally:
        model_module.mamba_kernels_available = kernels
    mixers = sorted(
        {type(m).__module__ + "." + type(m).__name__ for m in run.model.modules() if "Mixer" in type(m).__name__}
    )
    with tempfile.TemporaryDirectory() as tmp:
        train(
            run.model,
            learnable_batches(VOCAB, config.seq_length),
            settings(steps, micro_batch, bf16),
            Path(tmp),
            run.ctx,
        )
        lines = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    device, params = run.ctx.device, sum(p.numel() for p in run.model.parameters())
    run.close()
    losses = [line["loss"] for line in lines if "loss" in line]
    rate = statistics.median(line["tokens_per_second"] for line in lines[len(lines) // 3 :] if "loss" in line)
    peak, device_name = peak_flops(device)
    first, last = statistics.fmean(losses[:3]), statistics.fmean(losses[-3:])
    return {
        "model": label,
        "device": device_name,
        "mixer": ", ".join(mixers) or "none",
        "params_m": round(params / 1e6, 2),
        "first_loss": round(first, 3),
        "last_loss": round(last, 3),
        "loss_falls": last < first - LOSS_DROP,
        "tokens_per_s": round(rate),
        "mfu": None if peak is None else round(rate * flops_per_token(config) / peak, 4),
    }


def tiny_models() -> dict:
    """The two recipes' tiny models: what a laptop trains, whose checkpoints a GPU run must load."""
    from nemotron.recipes.nemotron4.stage0_pretrain.training import MODELS as NEMOTRON4
    from nemotron.training.model import MODEL_PRESETS

    return {"nano2": MODEL_PRESETS["tiny"], "nemotron4": NEMOTRON4["tiny"]}


def make_cpu_checkpoints(directory: Path, steps: int) -> None:
    """(In a child that sees no GPU.) Train each tiny model on the CPU, save it, and record its fp32 logits on a
    held-back batch."""
    import torch

    from nemotron.training.checkpointing import latest_checkpoint
    from nemotron.training.loop import train
    from nemotron.training.model import causal_mask
    from nemotron.training.run import prepare_model_run

    for name, config in tiny_models().items():
        run = prepare_model_run(config, seed=0, vocab_size=VOCAB)
        batches = learnable_batches(VOCAB, config.seq_length)
        (directory / name).mkdir(parents=True, exist_ok=True)
        train(run.model, batches, settings(steps, 8, bf16=False), directory / name, run.ctx)
        probe = batches(10**6, 2)
        with torch.no_grad():
            run.model.eval()
            logits = run.model(probe["tokens"], probe["position_ids"], causal_mask(config.seq_length))
        torch.save({"probe": probe, "logits": logits}, directory / name / "reference.pt")
        (directory / name / "weights").write_text(str(latest_checkpoint(directory / name / "checkpoints")))
        run.close()


def load_cpu_checkpoint(directory: Path, name: str) -> dict:
    """Load a CPU-made tiny checkpoint into the same model built on this machine; compare logits (fp32, TF32 off)."""
    import torch

    from nemotron.training.checkpointing import load_model_weights
    from nemotron.training.model import causal_mask
    from nemotron.training.run import prepare_model_run

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    config = tiny_models()[name]
    run = prepare_model_run(config, seed=1, vocab_size=VOCAB)  # another seed: only loading makes the logits agree
    load_model_weights(Path((directory / name / "weights").read_text()), run.model)
    reference = torch.load(directory / name / "reference.pt")
    probe = {k: v.to(run.ctx.device) for k, v in reference["probe"].items()}
    with torch.no_grad():
        run.model.eval()
        logits = run.model(probe["tokens"], probe["position_ids"], causal_mask(config.seq_length, run.ctx.device))
    modules = sorted(
        {type(m).__module__ for m in run.model.modules() if "Mixer" in type(m).__name__ or "Linear" in type(m).__name__}
    )
    run.close()
    expected = reference["logits"]
    error = (logits.float().cpu() - expected).abs().max().item() / expected.abs().max().item()
    return {
        "check": f"CPU checkpoint of {name} loads",
        "modules": ", ".join(modules),
        "relative_error": error,
        "ok": error <= LOGIT_TOLERANCE,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="on the CPU, tiny models, a few steps, fp32")
    parser.add_argument("--steps", type=int, default=None, help="training steps per model (default 40; dry run 16)")
    parser.add_argument("--make-cpu-checkpoint", type=Path, help=argparse.SUPPRESS)  # the child of step 1
    args = parser.parse_args()
    if args.make_cpu_checkpoint:
        make_cpu_checkpoints(args.make_cpu_checkpoint, args.steps or 10)
        return 0

    import torch

    from nemotron.recipes.nemotron4.stage0_pretrain.training import MODELS as NEMOTRON4
    from nemotron.training.model import MODEL_PRESETS, mamba_kernels_available, transformer_engine_available

    on_gpu = torch.cuda.is_available() and not args.dry_run
    if not on_gpu and not args.dry_run:
        print("gpu_check: no CUDA device here; run with --dry-run to check the script on the CPU", file=sys.stderr)
        return 2
    scale, steps, micro_batch = ("small", args.steps or 40, 8) if on_gpu else ("tiny", args.steps or 16, 8)
    started = time.perf_counter()
    print(
        f"gpu_check: {'GPU' if on_gpu else 'CPU dry run'}, scale {scale}, {steps} steps, micro-batch {micro_batch}, "
        f"bf16 {on_gpu}; Transformer Engine {transformer_engine_available()}, Mamba kernels {mamba_kernels_available()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "cpu-tiny"
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # the child makes its checkpoint on the CPU
        child = [sys.executable, __file__, "--make-cpu-checkpoint", str(checkpoint), "--steps", "10"]
        subprocess.run(child, env=env, check=True)
        rows = [train_one("nano2", MODEL_PRESETS[scale], steps, micro_batch, on_gpu)]
        if on_gpu and mamba_kernels_available():
            rows.append(
                train_one("nano2 (plain-PyTorch mixer)", MODEL_PRESETS[scale], steps, micro_batch, on_gpu, True)
            )
        rows.append(train_one("nemotron4", NEMOTRON4[scale], steps, micro_batch, on_gpu))
        loaded = [load_cpu_checkpoint(checkpoint, name) for name in tiny_models()]
    for row in [*rows, *loaded]:
        print(json.dumps(row))
    ok = all(row["loss_falls"] for row in rows) and all(row["ok"] for row in loaded)
    print(f"gpu_check: {'PASS' if ok else 'FAIL'} in {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
