"""Per-scale training presets: a stage declares a table, ``check_training`` turns it plus the CLI into TrainSettings.

Every training step has the same knobs (``--train-iters``, ``--micro-batch-size``, ``--global-batch-size``, ``--lr``,
``--min-lr``, ``--warmup-iters``, ``--save-interval``); a flag left unset (``None``) takes the value of the ``--scale``
preset. What differs per stage is data — its ``PRESETS`` table — so the rules (what an override replaces, what
follows from what, which values are refused) live here once: ``check_training`` is every training step's validation
(the launcher runs it at plan time with the job's ranks) and computes the settings once: a step's ``validate``
returns them (``CheckedTraining``) and its ``main`` trains with them.

Torch-free on purpose: step modules import this at top and the launcher imports them to plan (the training loop
imports ``TrainSettings`` from here, never the reverse).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from nemotron.errors import UserError
from nemotron.scale import check_scale
from nemotron.step import StepConfig
from nemotron.training.memory import RECOMPUTE, Layout

if TYPE_CHECKING:
    from nemotron.step import Placement
    from nemotron.training.model import ModelConfig
    from nemotron.training.sizing import TrainingEstimate

# The Config fields that, when None or absent, take the preset's value.
OVERRIDABLE = ("train_iters", "micro_batch_size", "global_batch_size", "lr", "min_lr", "warmup_iters", "save_interval")
ADAM_BETAS = (0.9, 0.95)


@dataclass(frozen=True)
class TrainSettings:
    """What the training loop runs with: a preset, the Config's overrides and the data-parallel size, checked."""

    train_iters: int
    micro_batch_size: int
    global_batch_size: int
    lr: float
    min_lr: float
    warmup_iters: int
    decay_style: str  # megatron's: "cosine", "linear", "WSD", ...
    wsd_decay_iters: int
    weight_decay: float
    grad_clip: float
    adam_betas: tuple[float, float]
    save_interval: int
    log_interval: int
    bf16: bool
    async_save: bool = False  # write intermediate checkpoints in the background (checkpointing.CheckpointWriter)


@dataclass(frozen=True)
class CheckedTraining:
    """What a training step's ``validate`` computed: the settings and layout its ``main`` trains with, and the plan's
    memory and cost estimate (None when the recipe's model table was not given)."""

    settings: TrainSettings  # bf16 off: the process that trains turns it on where it has a GPU
    layout: Layout
    estimate: TrainingEstimate | None = None

    def for_run(self, data_parallel_size: int, bf16: bool) -> TrainSettings:
        """The settings for the process group the run set up, which must be the one they were checked against."""
        if data_parallel_size != self.layout.data_parallel:
            raise RuntimeError(
                f"the run's data-parallel size {data_parallel_size} is not the {self.layout.data_parallel} its "
                "settings were "
                "checked for: the placement (WORLD_SIZE / SLURM_STEP_NUM_TASKS) and the process group disagree"
            )
        return dataclasses.replace(self.settings, bf16=bf16)


@dataclass(frozen=True)
class TrainPreset:
    """One scale's defaults; batch sizes count the stage's samples (sequences, or preference pairs for DPO)."""

    train_iters: int
    micro_batch_size: int
    global_batch_size: int
    lr: float
    min_lr: float | None = None  # None: a tenth of the learning rate in use, so it follows --lr
    warmup_iters: int = 0
    decay_style: str = "cosine"  # megatron's lr_decay_style: "cosine", "linear", "WSD", ...
    save_interval: int | None = None  # None: save only after the last iteration, so it follows --train-iters
    # The model-parallel layout this scale's model needs on its GPUs (the plan's memory estimate checks it fits)
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    recompute: str = "none"  # "full": what a scale's activations need to fit (memory.RECOMPUTE)


@dataclass
class TrainingConfig(StepConfig):
    """The knobs every training step has (a flag left unset takes the ``--scale`` preset's value), after the fields
    every step has; a training step's Config adds its inputs."""

    train_iters: int | None = None
    micro_batch_size: int | None = None
    global_batch_size: int | None = None
    lr: float | None = None
    min_lr: float | None = None
    warmup_iters: int | None = None
    save_interval: int | None = None
    log_interval: int = 10
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    tensor_parallel: int | None = None
    """Tensor-parallel ranks (default: the --scale preset's layout)."""
    pipeline_parallel: int | None = None
    """Pipeline stages (default: the --scale preset's layout)."""
    sequence_parallel: bool | None = None
    """Split the activations outside tensor-parallel regions over the tensor-parallel ranks too (default: on
    whenever tensor_parallel > 1, as Megatron's recipes run)."""
    recompute: Literal["none", "full"] | None = None
    """Recompute each layer's activations in the backward pass instead of keeping them: "full" keeps only each
    layer's input (default: the --scale preset's)."""
    shard_optimizer: bool = True
    """Split AdamW's moments over the data-parallel ranks (ZeRO stage 1; nothing to split on one)."""
    async_save: bool = False
    """Write intermediate checkpoints in the background while training goes on (megatron's asynchronous
    dist_checkpointing save, opt-in as megatron's --async-save): one is published only at a later step, so a rank
    that dies before then loses it; the last one, and one saved on a stop signal, are always complete on exit."""


def training_layout(config: Any, presets: dict[str, TrainPreset]) -> tuple[int, int]:
    """(tensor_parallel, pipeline_parallel): the Config's, else the ``--scale`` preset's."""
    preset = presets[check_scale(config.scale)]
    return _override_or_preset(config, preset, "tensor_parallel"), _override_or_preset(
        config, preset, "pipeline_parallel"
    )


def _memory_trades(config: Any, preset: TrainPreset, tensor_parallel: int) -> dict[str, Any]:
    """The Layout fields that trade compute or communication for memory: the Config's, else the defaults."""
    sequence_parallel = getattr(config, "sequence_parallel", None)
    if sequence_parallel and tensor_parallel == 1:
        raise UserError(
            "--sequence-parallel: splits the sequence over tensor-parallel ranks; needs --tensor-parallel > 1"
        )
    recompute = _override_or_preset(config, preset, "recompute")
    if recompute not in RECOMPUTE:  # the CLI's parser refuses it already; a Config built in Python is checked here
        raise UserError(f"--recompute {recompute}: valid values are {', '.join(RECOMPUTE)}")
    return {
        "sequence_parallel": tensor_parallel > 1 if sequence_parallel is None else sequence_parallel,
        "recompute": recompute,
        "shard_optimizer": getattr(config, "shard_optimizer", True),
    }


def check_training(
    config: Any,
    presets: dict[str, TrainPreset],
    placement: Placement,
    models: dict[str, ModelConfig] | None = None,
    **sizing: Any,
) -> CheckedTraining:
    """Every check of a training step's Config and placement, torch-free, and the settings they choose: the preset of
    ``config.scale`` with the Config's overrides (a flag left unset takes the preset's value), refused where the loop
    or the process group setup would refuse them, with the data-parallel size the placement gives; with the recipe's
    ``models``, also its memory per GPU against the placement's GPUs (``sizing``: ``frozen_copies``,
    ``sequences_per_sample``, ``pipeline_stages`` for a step like DPO), the estimate. ``config`` is a step Config:
    ``scale``, ``weight_decay``, ``grad_clip``, ``log_interval``, and any of ``OVERRIDABLE`` (a step without a field
    always gets the preset's value).

    A training step's ``validate`` calls it first thing in ``main`` (with the ranks torchrun/srun started) and the
    launcher at plan time (with the job's nodes x ranks per node and its GPUs), so a batch that does not divide over
    the ranks, or a model that does not fit, is refused before Slurm allocates a GPU.
    """
    preset = presets[check_scale(config.scale)]
    tensor_parallel, pipeline_parallel = training_layout(config, presets)
    data_parallel_size = check_parallelism(tensor_parallel, pipeline_parallel, placement)
    chosen = choose_settings(config, preset, data_parallel_size)
    settings = TrainSettings(
        **chosen,
        decay_style=preset.decay_style,
        wsd_decay_iters=max(1, chosen["train_iters"] // 5),  # "WSD" decays over the last fifth; unused otherwise
        adam_betas=ADAM_BETAS,
        bf16=False,
    )
    check_settings(settings, data_parallel_size)
    trades = _memory_trades(config, preset, tensor_parallel)
    layout = Layout(tensor_parallel, pipeline_parallel, data_parallel_size, **trades)
    checked = CheckedTraining(settings, layout)
    if models is None:
        return checked
    check_model_split(models[config.scale], tensor_parallel, pipeline_parallel)
    from nemotron.data.pretraining import VOCAB_SIZE_BY_SCALE  # the tokenizer the stage's data curation trains
    from nemotron.training.sizing import size_training

    vocab_size = VOCAB_SIZE_BY_SCALE[config.scale]
    estimate = size_training(models[config.scale], vocab_size, layout, chosen, placement, **sizing)
    return dataclasses.replace(checked, estimate=estimate)


def check_parallelism(tensor_parallel: int, pipeline_parallel: int, placement: Placement) -> int:
    """The data-parallel size (ranks / model-parallel size); refuses sizes megatron's parallel state cannot build."""
    for flag, size in (("--tensor-parallel", tensor_parallel), ("--pipeline-parallel", pipeline_parallel)):
        if size < 1:
            raise UserError(f"{flag} {size}: must be at least 1")
    # No GPU check: megatron's tensor-parallel layers and pipeline schedules run on CPU ranks over gloo
    # (training/cpu_shim.py), the same code path a GPU job runs over NCCL.
    model_parallel = tensor_parallel * pipeline_parallel
    if placement.world_size % model_parallel:
        raise UserError(
            f"--tensor-parallel {tensor_parallel} --pipeline-parallel {pipeline_parallel}: the world size "
            f"{placement.world_size} (nodes x ranks per node) is "
            f"not a multiple of tensor_parallel x pipeline_parallel = {model_parallel}"
        )
    return placement.world_size // model_parallel


def check_model_split(model: ModelConfig, tensor_parallel: int, pipeline_parallel: int = 1) -> None:
    """Refuse a layout that does not split the model into whole pieces: megatron's layers assert it at construction
    (attention heads and KV groups, the FFN over tensor-parallel ranks; the layers over pipeline stages, which it
    splits evenly), and its Mamba-2 mixer (ours too) shards whole heads and B/C groups. Caught at plan time rather
    than after the job got its GPUs."""
    if model.num_layers % pipeline_parallel:
        raise UserError(
            f"--pipeline-parallel {pipeline_parallel}: this model's {model.num_layers} layers do not split evenly over "
            f"{pipeline_parallel} pipeline stages; use a size that divides {model.num_layers}"
        )
    parts = {
        "attention heads": model.num_attention_heads,
        "query groups (KV heads)": model.num_query_groups,
        "FFN width": model.ffn_hidden_size,
    }
    if hasattr(model, "mamba_num_heads"):
        parts |= {"Mamba-2 heads": model.mamba_num_heads, "Mamba-2 B/C groups": model.mamba_num_groups}
    for what, count in parts.items():
        if count % tensor_parallel:
            raise UserError(
                f"--tensor-parallel {tensor_parallel}: this model's {count} {what} do not split over "
                f"{tensor_parallel} tensor-parallel ranks; use a size that divides {count}"
            )


def choose_settings(config: Any, preset: TrainPreset, data_parallel_size: int) -> dict[str, Any]:
    """The TrainSettings values the Config and the preset choose (unchecked), by field name."""
    chosen = {name: _override_or_preset(config, preset, name) for name in OVERRIDABLE}
    global_batch = chosen["global_batch_size"]
    if (
        getattr(config, "micro_batch_size", None) is None
        and global_batch >= 1
        and not global_batch % data_parallel_size
    ):
        # The preset's micro batch is the most one rank takes at once, never more than its share of the global batch:
        # the tiny preset (16 of 16) then runs on a node of 8 GPUs at 2 per rank, the same optimisation step.
        chosen["micro_batch_size"] = min(chosen["micro_batch_size"], global_batch // data_parallel_size)
    if getattr(config, "warmup_iters", None) is None and getattr(config, "train_iters", None) is not None:
        # A run shortened (or lengthened) with --train-iters keeps the preset's share of warmup: 20 of 300 iterations
        # at tiny, so --train-iters 20 warms up for 1 rather than refusing its own preset.
        chosen["warmup_iters"] = preset.warmup_iters * chosen["train_iters"] // max(preset.train_iters, 1)
    if chosen["min_lr"] is None:  # the preset's floor follows the learning rate in use
        chosen["min_lr"] = chosen["lr"] / 10
    if chosen["save_interval"] is None:  # save only after the last iteration
        chosen["save_interval"] = chosen["train_iters"]
    return chosen | {
        "weight_decay": config.weight_decay,
        "grad_clip": config.grad_clip,
        "log_interval": config.log_interval,
        "async_save": getattr(config, "async_save", False),
    }


def _override_or_preset(config: Any, preset: TrainPreset, name: str) -> Any:
    value = getattr(config, name, None)
    return getattr(preset, name) if value is None else value


def check_settings(settings: TrainSettings, data_parallel_size: int) -> None:
    """Refuse settings the loop cannot run, naming the CLI flag and what would be valid (NaN and inf included)."""
    for name in ("train_iters", "micro_batch_size", "global_batch_size", "save_interval", "log_interval"):
        if getattr(settings, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} {getattr(settings, name)}: must be at least 1")
    if settings.global_batch_size % data_parallel_size:
        raise UserError(
            f"--global-batch-size {settings.global_batch_size}: must be a multiple of the data-parallel size "
            f"{data_parallel_size} (ranks / tensor_parallel x pipeline_parallel)"
        )
    per_step = settings.micro_batch_size * data_parallel_size
    if settings.global_batch_size % per_step:
        raise UserError(
            f"--global-batch-size {settings.global_batch_size}: must be a multiple of micro_batch_size x "
            f"data-parallel size = {per_step}"
        )
    if not 0 <= settings.warmup_iters < settings.train_iters:
        raise UserError(f"--warmup-iters {settings.warmup_iters}: must be in [0, train_iters={settings.train_iters})")
    # ``not (x > 0)`` rather than ``x <= 0``: NaN fails every comparison and must not pass as a value
    if not (math.isfinite(settings.lr) and settings.lr > 0):
        raise UserError(f"--lr {settings.lr}: must be a positive, finite learning rate")
    # megatron's scheduler asserts 0 <= min_lr <= lr, after the GPUs are allocated
    if not (math.isfinite(settings.min_lr) and 0 <= settings.min_lr <= settings.lr):
        raise UserError(f"--min-lr {settings.min_lr}: must be in [0, lr={settings.lr}], the floor the lr decays to")
    if not (math.isfinite(settings.weight_decay) and settings.weight_decay >= 0):
        raise UserError(f"--weight-decay {settings.weight_decay}: must be a finite value >= 0")
    if not (math.isfinite(settings.grad_clip) and settings.grad_clip > 0):
        raise UserError(f"--grad-clip {settings.grad_clip}: must be a positive, finite gradient norm")
