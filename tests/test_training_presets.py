"""Per-scale training presets (nemotron.training.presets) as the three nano2 training steps use them: fast, no model."""

from __future__ import annotations

import importlib
import math
import subprocess
import sys

import pytest

from nemotron.errors import UserError
from nemotron.scale import SCALES
from nemotron.step import Placement
from nemotron.training.presets import TrainPreset, check_training, training_layout

STAGES = ("stage0_pretrain", "stage1_instruction_tuning", "stage2_alignment")


def _step(stage: str):
    return importlib.import_module(f"nemotron.recipes.nano2.{stage}.training")


def _settings(stage: str, data_parallel_size: int = 1, **overrides):
    step = _step(stage)
    config = step.Config(**overrides)
    tensor_parallel, pipeline_parallel = training_layout(config, step.PRESETS)  # the scale's own model-parallel layout
    ranks = Placement(world_size=data_parallel_size * tensor_parallel * pipeline_parallel)
    return check_training(config, step.PRESETS, ranks).settings


@pytest.mark.parametrize("stage", STAGES)
def test_every_scale_has_a_preset_the_loop_accepts(stage):
    assert set(_step(stage).PRESETS) == set(SCALES)
    for scale in SCALES:
        settings = _settings(stage, scale=scale)  # raises UserError if a table entry breaks a rule
        assert settings.min_lr < settings.lr and settings.save_interval <= settings.train_iters


def test_stage_tables_resolve_to_their_recorded_tiny_settings():
    """The tiny figures in the nano2 README come from these; a changed table entry must be a deliberate edit here."""
    pick = ("train_iters", "micro_batch_size", "global_batch_size", "lr", "min_lr", "warmup_iters", "save_interval")
    got = {stage: tuple(getattr(_settings(stage), name) for name in pick) for stage in STAGES}
    assert got == {
        "stage0_pretrain": (300, 16, 16, 3e-3, 3e-4, 20, 100),
        "stage1_instruction_tuning": (80, 16, 16, 1e-3, 1e-4, 5, 40),
        "stage2_alignment": (60, 16, 16, 3e-4, 3e-4 / 10, 5, 60),
    }
    assert _settings("stage0_pretrain", scale="full").decay_style == "WSD"
    assert _settings("stage0_pretrain", scale="full").wsd_decay_iters == 3_180_000 // 5


def test_flags_override_the_preset_and_unset_flags_keep_it():
    settings = _settings("stage0_pretrain", scale="small", train_iters=50, lr=1e-2, warmup_iters=0, log_interval=3)
    assert (settings.train_iters, settings.lr, settings.warmup_iters, settings.log_interval) == (50, 1e-2, 0, 3)
    assert (settings.micro_batch_size, settings.global_batch_size, settings.min_lr) == (4, 256, 1e-5)  # small preset
    assert (settings.weight_decay, settings.grad_clip, settings.adam_betas) == (0.1, 1.0, (0.9, 0.95))
    assert settings.wsd_decay_iters == 10  # a fifth of the train_iters in use


def test_a_preset_without_min_lr_or_save_interval_follows_lr_and_train_iters():
    # stage2 has no --min-lr flag: its floor is a tenth of whichever --lr is in use; it saves after the last step.
    settings = _settings("stage2_alignment", lr=2e-3, train_iters=30)
    assert (settings.lr, settings.min_lr, settings.save_interval) == (2e-3, 2e-3 / 10, 30)
    assert _settings("stage2_alignment", train_iters=30, save_interval=7).save_interval == 7
    # An explicit preset min_lr does not move with --lr.
    assert _settings("stage0_pretrain", lr=1e-2).min_lr == 3e-4


def test_a_table_of_its_own_resolves_without_a_step():
    class Flags:  # any object with the step Config's names will do
        scale, weight_decay, grad_clip, log_interval, lr = "medium", 0.0, 0.5, 1, None

    presets = {scale: TrainPreset(10, 2, 8, 1e-3, warmup_iters=1, decay_style="linear") for scale in SCALES}
    settings = check_training(Flags(), presets, Placement(world_size=2)).for_run(data_parallel_size=2, bf16=True)
    assert (settings.train_iters, settings.min_lr, settings.save_interval, settings.bf16) == (10, 1e-4, 10, True)
    assert (settings.decay_style, settings.grad_clip) == ("linear", 0.5)


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train_iters": 0}, "--train-iters 0: must be at least 1"),
        ({"micro_batch_size": 0}, "--micro-batch-size 0: must be at least 1"),
        ({"global_batch_size": 0}, "--global-batch-size 0: must be at least 1"),
        ({"save_interval": 0}, "--save-interval 0: must be at least 1"),
        ({"log_interval": 0}, "--log-interval 0: must be at least 1"),
        ({"global_batch_size": 20}, "--global-batch-size 20: must be a multiple of micro_batch_size x"),
        ({"train_iters": 10, "warmup_iters": 10}, "--warmup-iters 10: must be in [0, train_iters=10)"),
        ({"warmup_iters": -1}, "--warmup-iters -1: must be in [0, train_iters="),
    ],
)
def test_bad_values_name_the_flag_and_what_is_valid(stage, overrides, message):
    with pytest.raises(UserError) as err:
        _settings(stage, **overrides)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_global_batch_must_divide_over_data_parallel_ranks():
    assert _settings("stage1_instruction_tuning", 2, micro_batch_size=8).global_batch_size == 16
    with pytest.raises(UserError, match="data-parallel size = 32"):
        _settings("stage1_instruction_tuning", 2, micro_batch_size=16)  # 16 is not a multiple of 16 x 2
    with pytest.raises(UserError, match="--global-batch-size 16: must be a multiple of the data-parallel size 3"):
        _settings("stage1_instruction_tuning", 3)


def test_the_preset_micro_batch_shrinks_to_a_ranks_share_of_the_global_batch():
    """Tiny's 16 of 16 on a node of 8 GPUs: 2 per rank, the same optimisation step; an explicit one is kept."""
    for stage in STAGES:
        assert (_settings(stage, 8).micro_batch_size, _settings(stage, 8).global_batch_size) == (2, 16)
        assert _settings(stage, 1).micro_batch_size == 16
    assert _settings("stage0_pretrain", 64, scale="full").micro_batch_size == 1  # 768 over 64 ranks: the preset's 1


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lr": math.nan}, "--lr nan: must be a positive, finite learning rate"),
        ({"lr": math.inf}, "--lr inf: must be a positive, finite learning rate"),
        ({"lr": 0.0}, "--lr 0.0: must be a positive"),
        ({"weight_decay": math.nan}, "--weight-decay nan: must be a finite value >= 0"),
        ({"grad_clip": -math.inf}, "--grad-clip -inf: must be a positive, finite gradient norm"),
    ],
)
def test_non_finite_and_out_of_range_floats_are_refused(stage, overrides, message):
    with pytest.raises(UserError) as err:
        _settings(stage, **overrides)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_an_lr_below_the_presets_floor_is_refused_before_megatron_asserts_on_it():
    with pytest.raises(UserError, match=r"--min-lr 0.0003: must be in \[0, lr=1e-05\]"):
        _settings("stage0_pretrain", lr=1e-5)
    assert _settings("stage2_alignment", lr=1e-6).min_lr == 1e-7  # no preset floor: it follows --lr


def test_check_training_applies_the_same_rules_with_the_ranks_of_a_placement():
    step = _step("stage0_pretrain")
    check_training(step.Config(), step.PRESETS, Placement(world_size=8, gpus_per_node=8))  # 2 per rank
    with pytest.raises(UserError, match="--global-batch-size 16: must be a multiple of the data-parallel size 3"):
        check_training(step.Config(), step.PRESETS, Placement(world_size=3))
    with pytest.raises(UserError, match="world size 8 .* not a multiple of tensor_parallel x pipeline_parallel = 3"):
        check_training(step.Config(tensor_parallel=3), step.PRESETS, Placement(world_size=8, gpus_per_node=8))
    # pipeline stages too (megatron's schedules over gloo): TP=2 x PP=2 over 8 ranks leaves 2 data-parallel ranks
    layout = step.Config(tensor_parallel=2, pipeline_parallel=2)
    assert check_training(layout, step.PRESETS, Placement(world_size=8, gpus_per_node=8)).layout.data_parallel == 2
    with pytest.raises(UserError, match="--recompute selective: valid values are none, full"):
        check_training(step.Config(recompute="selective"), step.PRESETS, Placement(world_size=1))
    # CPU ranks run tensor parallel too (over gloo): 2 ranks at TP=2 leave 1 data-parallel rank
    check_training(step.Config(tensor_parallel=2), step.PRESETS, Placement(world_size=2, gpus_per_node=0))
    # tensor parallel 2 over 8 ranks leaves 4 data-parallel ranks: 16 = 4 per rank x 4
    check_training(step.Config(tensor_parallel=2), step.PRESETS, Placement(world_size=8, gpus_per_node=8))


def test_a_tensor_parallel_size_that_does_not_split_the_model_is_refused_at_plan_time():
    from nemotron.training.model import MODEL_PRESETS

    step = _step("stage0_pretrain")
    placement = Placement(world_size=4, gpus_per_node=0)
    check_training(step.Config(tensor_parallel=2), step.PRESETS, placement, MODEL_PRESETS)  # 2 groups, 2 KV heads
    with pytest.raises(UserError, match="--tensor-parallel 4: this model's 2 query groups .* do not split over 4"):
        check_training(step.Config(tensor_parallel=4), step.PRESETS, placement, MODEL_PRESETS)
    # megatron splits the layers evenly over pipeline stages: tiny's 4 layers over 2 or 4, not 3
    check_training(step.Config(pipeline_parallel=4), step.PRESETS, placement, MODEL_PRESETS)
    with pytest.raises(UserError, match="--pipeline-parallel 3: this model's 4 layers do not split evenly over 3"):
        check_training(step.Config(pipeline_parallel=3), step.PRESETS, Placement(world_size=3), MODEL_PRESETS)


def test_dpo_refuses_pipeline_stages_with_the_layout_that_would_run():
    step = _step("stage2_alignment")
    placement, carried = Placement(world_size=2, gpus_per_node=0), frozenset()
    with pytest.raises(UserError, match="--pipeline-parallel 2: DPO trains one pipeline stage; valid value is 1"):
        step.validate(step.Config(pipeline_parallel=2), placement, carried)
    assert step.validate(step.Config(tensor_parallel=2), placement, carried).layout.tensor_parallel == 2


def test_bad_scale_from_python_is_a_user_error():
    with pytest.raises(UserError, match="unknown scale 'huge': valid scales are tiny, small, medium, full"):
        _settings("stage0_pretrain", scale="huge")


def test_step_modules_and_presets_import_without_torch():
    modules = ["nemotron.training.presets"] + [f"nemotron.recipes.nano2.{stage}.training" for stage in STAGES]
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\nprint('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
