"""Per-scale training presets: a stage declares a table, ``resolve_settings`` turns it plus the CLI into TrainSettings.

Every training step has the same knobs (``--train-iters``, ``--micro-batch-size``, ``--global-batch-size``, ``--lr``,
``--min-lr``, ``--warmup-iters``, ``--save-interval``); a flag left unset (``None``) takes the value of the ``--scale``
preset. What differs per stage is data — its ``PRESETS`` table — so the rules (what an override replaces, what
follows from what, which values are refused) live here once.

Light on purpose: step modules import this at top, so torch (via ``nemotron.training.loop``) is imported only inside
``resolve_settings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from nemotron.errors import UserError
from nemotron.scale import check_scale

if TYPE_CHECKING:
    from nemotron.training.loop import TrainSettings

# The Config fields that, when None or absent, take the preset's value.
OVERRIDABLE = ("train_iters", "micro_batch_size", "global_batch_size", "lr", "min_lr", "warmup_iters", "save_interval")
ADAM_BETAS = (0.9, 0.95)


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


def resolve_settings(
    config: Any, presets: dict[str, TrainPreset], data_parallel_size: int, bf16: bool
) -> TrainSettings:
    """TrainSettings from ``presets[config.scale]`` and the Config's overrides; bad values raise UserError.

    ``config`` is a step Config: ``scale``, ``weight_decay``, ``grad_clip``, ``log_interval``, and any of
    ``OVERRIDABLE`` (a step without a field, e.g. no ``--min-lr``, always gets the preset's value).
    """
    from nemotron.training.loop import TrainSettings

    preset = presets[check_scale(config.scale)]
    chosen = {name: _override_or_preset(config, preset, name) for name in OVERRIDABLE}
    settings = TrainSettings(
        train_iters=chosen["train_iters"],
        micro_batch_size=chosen["micro_batch_size"],
        global_batch_size=chosen["global_batch_size"],
        lr=chosen["lr"],
        min_lr=chosen["lr"] / 10 if chosen["min_lr"] is None else chosen["min_lr"],
        warmup_iters=chosen["warmup_iters"],
        decay_style=preset.decay_style,
        wsd_decay_iters=max(1, chosen["train_iters"] // 5),  # "WSD" decays over the last fifth; unused otherwise
        weight_decay=config.weight_decay,
        grad_clip=config.grad_clip,
        adam_betas=ADAM_BETAS,
        save_interval=chosen["train_iters"] if chosen["save_interval"] is None else chosen["save_interval"],
        log_interval=config.log_interval,
        bf16=bf16,
    )
    check_settings(settings, data_parallel_size)
    return settings


def check_overrides(config: Any, presets: dict[str, TrainPreset]) -> None:
    """The checks of ``resolve_settings`` that need no process group (as if one data-parallel rank), torch-free.

    Called from a training Config's ``__post_init__``: the launcher builds every step's Config when it plans, so a bad
    ``training.warmup_iters`` is refused before anything is submitted, and a stage module refuses it before its
    data_curation runs. The data-parallel divisibility is checked again by ``resolve_settings`` once it is known.
    """
    preset = presets[check_scale(config.scale)]
    chosen = {name: _override_or_preset(config, preset, name) for name in OVERRIDABLE}
    if chosen["save_interval"] is None:
        chosen["save_interval"] = chosen["train_iters"]
    check_settings(SimpleNamespace(**chosen, log_interval=config.log_interval), data_parallel_size=1)


def _override_or_preset(config: Any, preset: TrainPreset, name: str) -> Any:
    value = getattr(config, name, None)
    return getattr(preset, name) if value is None else value


def check_settings(settings: TrainSettings | SimpleNamespace, data_parallel_size: int) -> None:
    """Refuse settings the loop cannot run, naming the CLI flag and what would be valid."""
    for name in ("train_iters", "micro_batch_size", "global_batch_size", "save_interval", "log_interval"):
        if getattr(settings, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} {getattr(settings, name)}: must be at least 1")
    per_step = settings.micro_batch_size * data_parallel_size
    if settings.global_batch_size % per_step:
        raise UserError(
            f"--global-batch-size {settings.global_batch_size}: must be a multiple of micro_batch_size x "
            f"data-parallel size = {per_step}"
        )
    if not 0 <= settings.warmup_iters < settings.train_iters:
        raise UserError(f"--warmup-iters {settings.warmup_iters}: must be in [0, train_iters={settings.train_iters})")
