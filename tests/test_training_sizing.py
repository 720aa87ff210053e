"""The plan-time sizing of training jobs (``training.memory``, ``training.cost``, ``training.sizing``): how the
estimates move with the layout, the refusal of a layout that does not fit, and Slurm time limits in seconds.
The estimate against measured peaks is ``bench/bench_memory.py``'s (figures, not asserts)."""

from __future__ import annotations

import math

import pytest

from nemotron.errors import UserError
from nemotron.launcher.resources import time_seconds
from nemotron.recipes.nano2.stage0_pretrain import training as nano2
from nemotron.recipes.nemotron4.stage0_pretrain import training as nemotron4
from nemotron.step import GPUSpec, Placement
from nemotron.training.cost import estimate_cost, flops_per_token
from nemotron.training.memory import Layout, estimate_memory
from nemotron.training.model import MODEL_PRESETS, count_parameters, layer_kinds
from nemotron.training.presets import check_training

H100 = GPUSpec(memory_gb=80, peak_tflops=989, mfu=0.4)
VOCAB = 32768


def _memory(model, tp=1, pp=1, sequences=1, on_gpu=True, frozen_copies=0, **layout):
    shape = {"sequences": sequences, "on_gpu": on_gpu, "frozen_copies": frozen_copies}
    return estimate_memory(model, VOCAB, Layout(tp, pp, **layout), **shape)


@pytest.mark.parametrize("model", [MODEL_PRESETS["full"], nemotron4.MODELS["full"]], ids=["hybrid", "dense"])
def test_tensor_parallel_shards_the_model_state_and_part_of_the_activations(model):
    one, eight = _memory(model), _memory(model, tp=8)
    assert eight.model_state == pytest.approx(one.model_state / 8)  # every weight is split over the ranks
    # norm inputs and each block's input stay whole on every rank (no sequence parallelism): less than 8x smaller
    assert one.activations / 8 < eight.activations < one.activations


def test_activations_grow_with_the_micro_batch_and_full_recompute_keeps_less():
    model = MODEL_PRESETS["full"]
    one, two = _memory(model, tp=8), _memory(model, tp=8, sequences=2)
    assert two.activations == pytest.approx(2 * one.activations)
    assert two.model_state == one.model_state
    recomputed = _memory(model, tp=8, recompute="full")
    assert recomputed.activations < one.activations / 2  # each layer's input, not its insides
    assert recomputed.model_state == one.model_state


@pytest.mark.parametrize("model", [MODEL_PRESETS["full"], nemotron4.MODELS["full"]], ids=["hybrid", "dense"])
def test_sequence_parallel_splits_the_rest_of_the_activations_over_the_tensor_parallel_ranks(model):
    one, eight = _memory(model, on_gpu=True), _memory(model, tp=8, sequence_parallel=True)
    without = _memory(model, tp=8)
    assert eight.model_state == without.model_state  # activations only
    # every kept activation is split now (Korthikanti: sbh(34 + 5as/h) / t); the backward pass's working set too
    assert eight.activations == pytest.approx(one.activations / 8, rel=1e-9)
    assert eight.activations < 0.8 * without.activations


def test_a_sharded_optimizer_splits_the_adam_moments_over_the_data_parallel_ranks():
    model = MODEL_PRESETS["full"]
    whole, sharded = _memory(model, tp=8, data_parallel=8), _memory(model, tp=8, data_parallel=8, shard_optimizer=True)
    per_parameter = whole.model_state / 18  # fp32 weight, gradient, two moments (16) + the bf16 copy (2)
    assert sharded.model_state == pytest.approx(whole.model_state - per_parameter * 8 * (1 - 1 / 8))
    assert _memory(model, tp=8, shard_optimizer=True).model_state == whole.model_state  # one data-parallel rank


def test_pipeline_stages_split_the_layers_and_keep_micro_batches_in_flight():
    model = nemotron4.MODELS["full"]
    one, four = _memory(model), _memory(model, pp=4)
    assert four.model_state < one.model_state / 3  # a quarter of the layers, plus one of the two embeddings
    assert four.activations > one.activations / 4  # the first stage holds 4 micro-batches of its 8 layers


def test_on_cpu_activations_are_fp32_and_attention_keeps_no_scores():
    model = nemotron4.MODELS["full"]  # 48 heads x 4096^2 scores a layer, were they kept
    cpu, gpu = _memory(model, on_gpu=False), _memory(model, on_gpu=True)
    assert cpu.runtime == 0 and gpu.runtime > 0
    # fused attention on both (TE on GPUs, torch's SDPA on CPU): fp32 (twice bf16), and no s^2 softmax output;
    # the logits' fp32 copy is the same 4 bytes on both, so a little less than twice
    assert 1.7 * gpu.activations < cpu.activations < 2 * gpu.activations


def test_a_frozen_copy_adds_its_weights_only():
    model = MODEL_PRESETS["medium"]
    policy, with_reference = _memory(model, tp=2), _memory(model, tp=2, frozen_copies=1)
    parameters_per_gpu = count_parameters(model, VOCAB) / 2
    assert with_reference.model_state - policy.model_state == pytest.approx(4 * parameters_per_gpu, rel=1e-6)


def test_flops_follow_the_parameters_and_the_attention_layers():
    hybrid, dense = MODEL_PRESETS["full"], nemotron4.MODELS["full"]
    for model in (hybrid, dense):
        per_token = flops_per_token(model, VOCAB)
        six_n = 6 * (count_parameters(model, VOCAB) - VOCAB * model.hidden_size)  # the input lookup is no matmul
        assert six_n < per_token < 1.5 * six_n
    attention_layers = sum(kind.count("*") for kind in layer_kinds(hybrid))
    assert attention_layers == 6  # Nemotron-Nano-12B-v2: 6 attention layers among 62
    cost = estimate_cost(hybrid, VOCAB, tokens=1e12, gpus=64, peak_tflops=989, mfu=0.4, time_limit_s=4 * 3600)
    assert cost.gpu_hours == pytest.approx(cost.flops / (989e12 * 0.4) / 3600)
    assert cost.segments == math.ceil(cost.wall_hours / 4)


def test_a_layout_that_does_not_fit_is_refused_naming_one_that_does():
    eos_full = Placement(world_size=64, gpus_per_node=8, gpu=H100, time_limit_s=4 * 3600)
    estimate = check_training(nano2.Config(scale="full"), nano2.PRESETS, eos_full, MODEL_PRESETS).estimate
    # the preset's tensor parallel 8 runs sequence parallel and shards AdamW over the 8 data-parallel ranks by default
    assert estimate.layout == Layout(8, 1, 8, sequence_parallel=True, shard_optimizer=True)
    assert estimate.memory.total <= 80e9
    assert estimate.segments == estimate.cost.segments > 1000  # a 20T-token run on 64 GPUs: years of 4 h segments
    with pytest.raises(UserError) as refused:
        check_training(nano2.Config(scale="full", tensor_parallel=1), nano2.PRESETS, eos_full, MODEL_PRESETS)
    message = str(refused.value)
    assert message.startswith("--tensor-parallel 1, --pipeline-parallel 1: about ") and "80 GB" in message
    suggested = int(message.split("a layout that fits: --tensor-parallel ")[1].split()[0])
    fits = check_training(nano2.Config(scale="full", tensor_parallel=suggested), nano2.PRESETS, eos_full, MODEL_PRESETS)
    fits = fits.estimate
    assert fits.memory.total <= 80e9  # what it suggests does fit
    # no GPU memory stated (a CPU run, a profile without [gpu] memory_gb): estimated, never refused
    cpu = check_training(nano2.Config(scale="full", tensor_parallel=1), nano2.PRESETS, Placement(64, 8), MODEL_PRESETS)
    cpu = cpu.estimate
    assert cpu.cost is None and cpu.memory.total > 80e9


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 1800), ("30:15", 1815), ("04:00:00", 14400), ("1-12", 129600), ("1-12:30", 131400), ("2-0:0:1", 172801)],
)
def test_slurm_time_limits_in_seconds(text, seconds):
    assert time_seconds(text) == seconds
