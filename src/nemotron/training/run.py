"""Setting up a training process (distributed + shim + seeded model) and writing its outputs (metrics, loss PNG).

Shared by every stage's training step, so a later SFT/DPO step builds the same model the same way.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nemotron.errors import UserError
from nemotron.log import get_logger
from nemotron.training.artifacts import Checkpoint
from nemotron.training.checkpointing import current_layout, load_model_weights
from nemotron.training.cpu_shim import apply_cpu_shim, reset_rng_tracker
from nemotron.training.distributed import DistributedContext, destroy_distributed, init_distributed
from nemotron.training.loop import catch_stop_signals
from nemotron.training.memory import Layout
from nemotron.training.model import (
    MODEL_PRESETS,
    ModelConfig,
    build_model,
    padded_vocab_size,
    recompute_layers,
    transformer_config,
)

log = get_logger("training")


@dataclass
class PreparedRun:
    ctx: DistributedContext
    model: torch.nn.Module
    model_config: ModelConfig
    vocab_size: int
    layout: Layout
    substitutions: list[str] = field(default_factory=list)

    def load_weights(self, checkpoint) -> None:
        """Start from another Checkpoint's weights (same family and architecture)."""
        theirs = ModelConfig.from_dict(checkpoint.model)
        if theirs != self.model_config or checkpoint.model.get("vocab_size") != self.vocab_size:
            raise UserError(
                f"init checkpoint {checkpoint.path} has model {checkpoint.model}, this run builds "
                f"{self.model_config.as_dict() | {'vocab_size': self.vocab_size}}: "
                "use a checkpoint of the same model family and scale"
            )
        load_model_weights(Path(checkpoint.checkpoint_path), self.model)

    def close(self) -> None:
        destroy_distributed()


def prepare_run(
    scale: str, seed: int, vocab_size: int, layout: Layout, models: dict[str, ModelConfig] = MODEL_PRESETS
) -> PreparedRun:
    """A training run of ``models[scale]`` (a recipe's table: the hybrid ``MODEL_PRESETS``, the dense
    a dense ``GPTConfig`` table): from here on SIGTERM/SIGUSR1 end in a checkpoint and exit 75 (see ``loop.train``)."""
    catch_stop_signals()
    return prepare_model_run(models[scale], seed, vocab_size, layout)


def prepare_run_from(init_from: Checkpoint, seed: int, vocab_size: int, layout: Layout) -> PreparedRun:
    """``prepare_run`` for the model a Checkpoint holds rather than a recipe's scale table, so one fine-tuning block
    (SFT, DPO) tunes any model family. Its substitutions stay recorded: the tuned model keeps them."""
    catch_stop_signals()
    model = ModelConfig.from_dict(init_from.model)
    run = prepare_model_run(model, seed, vocab_size, layout)
    run.substitutions = [*init_from.substitutions, *(s for s in run.substitutions if s not in init_from.substitutions)]
    return run


def prepare_model_run(config: ModelConfig, seed: int, vocab_size: int, layout: Layout = Layout()) -> PreparedRun:
    """Initialise distributed + parallel state, then build the seeded model of ``layout`` for this machine."""
    ctx = init_distributed(layout.tensor_parallel, layout.pipeline_parallel)
    apply_cpu_shim()
    padded = padded_vocab_size(vocab_size, layout.tensor_parallel)
    reset_rng_tracker(seed)
    tconfig = transformer_config(
        config,
        tensor_parallel=layout.tensor_parallel,
        pipeline_parallel=layout.pipeline_parallel,
        sequence_parallel=layout.sequence_parallel,
    )
    model = build_model(config, padded, tconfig)
    if layout.recompute == "full":
        recompute_layers(model)
    model.to(ctx.device)
    params = sum(p.numel() for p in model.parameters())
    layers = f"{config.num_layers} layers {getattr(config, 'hybrid_override_pattern', '')}".rstrip()
    log.info(
        "model: %s, %s, hidden %d, %.2fM parameters per model-parallel rank; layout %s",
        config.family,
        layers,
        config.hidden_size,
        params / 1e6,
        dataclasses.replace(layout, data_parallel=ctx.data_parallel_size).text(),
    )
    return PreparedRun(ctx, model, config, padded, layout)


def train_or_requeue(run: PreparedRun, batches, settings, output_dir: Path, **loop_options) -> Any:
    """``loop.train`` as every training step runs it: a stop signal (preemption, time limit, ``scancel``) saved a
    checkpoint, so the process exits 75 for the job to be requeued; a NaN loss is the user's learning rate (one
    line). Either way the process group is closed first."""
    from nemotron.errors import REQUEUE_EXIT_CODE
    from nemotron.training import loop

    try:
        shard = run.layout.shard_optimizer
        return loop.train(run.model, batches, settings, output_dir, run.ctx, shard_optimizer=shard, **loop_options)
    except loop.TrainingInterrupted as stopped:
        run.close()
        log.warning("%s; exiting %d so the job is requeued", stopped, REQUEUE_EXIT_CODE)
        raise SystemExit(REQUEUE_EXIT_CODE) from None
    except FloatingPointError as err:
        run.close()
        raise UserError(f"{err}: lower --lr (now {settings.lr})") from None


def checkpoint_artifact(run: PreparedRun, state, output_dir: Path, config: Any, data: Any, **fields: Any) -> Checkpoint:
    """The Checkpoint of a finished ``train_or_requeue``: the weights of its last step, the model they fit and
    the world that trained them, the step's ``config`` (a Config, or its snapshot with more) and the Dataset whose
    tokenizer and corpus it read (``data``);
    ``fields`` are the step's own (lineage, metrics), or replace those (a fine-tuning that keeps its input's)."""
    from nemotron.step import config_snapshot

    fields = {
        "tokenizer_path": data.tokenizer_path,
        "dataset_path": Path(data.path),
        "config": config_snapshot(config),
    } | fields
    return Checkpoint(
        path=output_dir,
        num_steps=state.step,
        training_loss=state.last_loss,
        checkpoint_path=output_dir / "checkpoints" / f"iter_{state.step:07d}",
        tokens_seen=state.tokens_seen,
        model=run.model_config.as_dict() | {"vocab_size": run.vocab_size},
        world_size=run.ctx.world_size,
        layout=current_layout(),
        substitutions=run.substitutions,
        **fields,
    )


def write_outputs(
    output_dir: Path, training_loss: float, valid_loss: float, unigram_loss: float, baseline: str = "unigram"
) -> dict[str, float]:
    """Append the final metrics to ``metrics.jsonl``, draw ``loss.png``; return the artifact's metrics.

    ``unigram_loss`` is the bar the valid loss is drawn against, named ``<baseline>_loss`` (SFT: the initial model's).
    """
    metrics_path = output_dir / "metrics.jsonl"
    steps = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    steps = [s for s in steps if "loss" in s]
    speeds = [s["tokens_per_second"] for s in steps[1:]] or [s["tokens_per_second"] for s in steps]
    metrics = {
        "training_loss": training_loss,
        "valid_loss": valid_loss,
        f"{baseline}_loss": unigram_loss,
        "tokens_per_second": sum(speeds) / len(speeds),
    }
    with metrics_path.open("a") as f:
        f.write(json.dumps({"step": steps[-1]["step"], **metrics}) + "\n")
    _plot_loss(steps, valid_loss, unigram_loss, output_dir / "loss.png", baseline)
    from nemotron.training.curves import write_scalars

    final = {"valid/loss": valid_loss, f"valid/{baseline}_loss": unigram_loss}
    write_scalars(output_dir, steps[-1]["step"], final, "training")  # TensorBoard: beside the training loss
    log.info("valid loss %.4f (%s baseline %.4f)", valid_loss, baseline, unigram_loss)
    return metrics


def _plot_loss(steps: list[dict], valid_loss: float, unigram_loss: float, target: Path, baseline: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([s["step"] for s in steps], [s["loss"] for s in steps], label="training loss")
    ax.axhline(valid_loss, color="tab:green", linestyle="--", label=f"valid loss {valid_loss:.3f}")
    ax.axhline(unigram_loss, color="tab:red", linestyle=":", label=f"{baseline} baseline {unigram_loss:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend()
    fig.tight_layout()
    tmp = target.with_name(f".{target.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(target)
