"""The plan-time memory estimate (``nemotron.training.memory``) beside the memory training really takes, on CPU ranks.

    uv run python bench/bench_memory.py

For each layout (model, sequence length, micro-batch) a child process builds the model as a training step does
(``training.run.prepare_model_run``, one rank), builds the loop's optimizer and runs a few full steps (forward,
backward, AdamW) of the loop's loss on random tokens. Measured: the child's peak resident set (``ru_maxrss``) minus
its resident set after imports and process-group setup, before the model exists, so what is compared is the model,
its optimizer state and the activations, as the estimate counts them (fp32 on CPU, megatron's unfused attention).
Prints one row per layout: the estimate's parts, its total, the measured peak and estimate / measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys

# (name, family, scale, changes to the scale's model, micro-batch)
LAYOUTS = [
    ("nano2 tiny", "hybrid", "tiny", {}, 16),
    ("nano2 tiny, seq 512", "hybrid", "tiny", {"seq_length": 512}, 4),
    ("nano2 tiny x4 wide", "hybrid", "tiny", {"hidden_size": 512, "ffn_hidden_size": 2048}, 8),
    ("nemotron4 tiny", "dense", "tiny", {}, 16),
    ("nemotron4 tiny, seq 1024", "dense", "tiny", {"seq_length": 1024}, 4),
    ("nemotron4 small, seq 512", "dense", "small", {"seq_length": 512}, 2),
]
VOCAB = 1024
STEPS = 3


def model_config(family: str, scale: str, changes: dict):
    if family == "hybrid":
        from nemotron.training.model import MODEL_PRESETS as models
    else:
        from nemotron.recipes.nemotron4.stage0_pretrain.training import MODELS as models
    return dataclasses.replace(models[scale], **changes)


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(family: str, scale: str, changes: dict, micro_batch: int) -> dict:
    """In the child: build, train ``STEPS`` steps, return the peak above the start."""
    import torch

    from nemotron.training import loop
    from nemotron.training.distributed import init_distributed
    from nemotron.training.run import prepare_model_run

    config = model_config(family, scale, changes)
    init_distributed()
    baseline = rss_bytes()
    run = prepare_model_run(config, seed=1, vocab_size=VOCAB)
    settings = loop.TrainSettings(STEPS, micro_batch, micro_batch, 1e-3, 1e-4, 0, "cosine", 1, 0.1, 1.0,
                                  (0.9, 0.95), STEPS, 1, bf16=False)  # fmt: skip
    optimizer, _scheduler = loop.build_optimizer(run.model, settings)
    generator = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        tokens = torch.randint(0, VOCAB, (micro_batch, config.seq_length + 1), generator=generator)
        batch = {
            "tokens": tokens[:, :-1],
            "labels": tokens[:, 1:],
            "loss_mask": torch.ones(micro_batch, config.seq_length),
            "position_ids": torch.arange(config.seq_length).expand(micro_batch, -1),
        }
        optimizer.zero_grad(set_to_none=True)
        total, count = loop.language_model_loss(run.model, batch)
        (total / count).backward()
        optimizer.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kilobytes
    return {"measured": peak - baseline, "padded_vocab": run.vocab_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*json.loads(args.child))))
        return
    from nemotron.training.memory import GB, Layout, estimate_memory

    print(f"{'layout':<28} {'state GB':>9} {'activ. GB':>9} {'estimate':>9} {'measured':>9} {'est/meas':>9}")
    for name, family, scale, changes, micro in LAYOUTS:
        child = json.dumps([family, scale, changes, micro])
        done = subprocess.run([sys.executable, __file__, "--child", child], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{name}: the child failed\n{done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        config = model_config(family, scale, changes)
        estimate = estimate_memory(config, result["padded_vocab"], Layout(), sequences=micro, on_gpu=False)
        measured = result["measured"]
        print(
            f"{name:<28} {estimate.model_state / GB:>9.3f} {estimate.activations / GB:>9.3f} "
            f"{estimate.total / GB:>9.3f} {measured / GB:>9.3f} {estimate.total / measured:>9.2f}"
        )


if __name__ == "__main__":
    main()
