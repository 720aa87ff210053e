"""The dense family (Nemotron-4 on megatron's GPTModel): its architecture, learning with the shared loop, a checkpoint
that reloads to the same logits through the inference path, config round trips, and the published parameter counts.

One tiny model is trained in-process on a synthetic stream a small model can learn in a few dozen steps: a fixed
random successor for every token (a permutation), restarted at a random token every ``RUN`` tokens.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from nemotron.errors import UserError
from nemotron.recipes.nemotron4.stage0_pretrain.training import MODELS as NEMOTRON4_PRESETS
from nemotron.training.model import (
    MODEL_PRESETS,
    GPTConfig,
    HybridConfig,
    ModelConfig,
    count_parameters,
)

VOCAB = 256
RUN = 16  # tokens between random restarts: the best possible loss is about ln(VOCAB) / RUN
STEPS = 24
BATCH = 8
LENGTH = 64  # tokens per sample: half the preset's sequence keeps the test quick


def _stream(length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    successor = np.random.default_rng(0).permutation(VOCAB)  # the same rule for the train and held-out streams
    tokens = np.empty(length, dtype=np.int64)
    for i in range(length):
        tokens[i] = rng.integers(VOCAB) if i % RUN == 0 else successor[tokens[i - 1]]
    return tokens


def _batches(tokens: np.ndarray, seq_length: int):
    import torch

    samples = (len(tokens) - 1) // seq_length

    def batch(first: int, size: int) -> dict:
        rows = [(first + i) % samples * seq_length for i in range(size)]
        window = torch.as_tensor(np.stack([tokens[r : r + seq_length + 1] for r in rows]))
        return {
            "tokens": window[:, :-1],
            "labels": window[:, 1:],
            "loss_mask": torch.ones(size, seq_length),
            "position_ids": torch.arange(seq_length).expand(size, seq_length),
        }

    return batch, samples


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny dense preset trained STEPS steps by ``loop.train``: the run, its config, losses before and after."""
    from nemotron.training import loop
    from nemotron.training.run import prepare_model_run

    config = NEMOTRON4_PRESETS["tiny"]
    run = prepare_model_run(config, seed=1234, vocab_size=VOCAB)
    train_batches, _ = _batches(_stream(STEPS * BATCH * LENGTH + 1, seed=1), LENGTH)
    held_out, held_out_samples = _batches(_stream(2 * BATCH * LENGTH + 1, seed=2), LENGTH)
    before = loop.evaluate(run.model, held_out, held_out_samples, BATCH, run.ctx)
    settings = loop.TrainSettings(
        train_iters=STEPS,
        micro_batch_size=BATCH,
        global_batch_size=BATCH,
        lr=3e-3,
        min_lr=3e-4,
        warmup_iters=3,
        decay_style="cosine",
        wsd_decay_iters=1,
        weight_decay=0.1,
        grad_clip=1.0,
        adam_betas=(0.9, 0.95),
        save_interval=STEPS,
        log_interval=5,
        bf16=False,
    )
    output = tmp_path_factory.mktemp("dense")
    state = loop.train(run.model, train_batches, settings, output, run.ctx)
    after = loop.evaluate(run.model, held_out, held_out_samples, BATCH, run.ctx)
    yield SimpleNamespace(run=run, config=config, output=output, state=state, before=before, after=after)
    run.close()


def test_tiny_preset_has_the_nemotron4_architecture(trained):
    import torch
    from megatron.core.activations import squared_relu
    from megatron.core.models.gpt import GPTModel

    model, config = trained.run.model, trained.config
    assert isinstance(model, GPTModel) and trained.run.substitutions == []
    assert len(model.decoder.layers) == config.num_layers == 2
    qkv = model.decoder.layers[0].self_attention.linear_qkv.weight
    heads, groups, head_dim = config.num_attention_heads, config.num_query_groups, config.kv_channels
    assert (heads, groups) == (4, 2) and model.config.num_query_groups == groups
    assert qkv.shape == ((heads + 2 * groups) * head_dim, config.hidden_size)  # GQA: 2 K/V heads for 4 queries
    # no bias anywhere but in the LayerNorms
    with_bias = {name for name, module in model.named_modules() if getattr(module, "bias", None) is not None}
    assert with_bias and all(isinstance(model.get_submodule(name), torch.nn.LayerNorm) for name in with_bias)
    # RoPE on half of each head, no learned position embeddings
    assert model.position_embedding_type == "rope"
    assert model.rotary_pos_emb.inv_freq.numel() == head_dim // 2 // 2
    assert not any("position_embeddings" in name for name in model.state_dict())
    # untied input and output embeddings
    assert model.output_layer.weight.data_ptr() != model.embedding.word_embeddings.weight.data_ptr()
    assert not model.share_embeddings_and_output_weights
    assert model.config.activation_func is squared_relu and not model.config.gated_linear_unit
    assert model.config.hidden_dropout == model.config.attention_dropout == 0.0
    assert sum(p.numel() for p in model.parameters()) == count_parameters(config, trained.run.vocab_size)


def test_tiny_dense_model_learns_with_the_shared_loop(trained):
    assert trained.state.step == STEPS
    assert trained.before > np.log(VOCAB) - 0.5  # starts near chance
    assert trained.after < 0.5 * trained.before, (trained.before, trained.after)
    logged = [json.loads(line) for line in (trained.output / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["loss"] < logged[0]["loss"]


def test_checkpoint_reloads_to_identical_logits_through_inference(trained):
    import torch

    from nemotron.training.artifacts import Checkpoint
    from nemotron.training.inference import load_for_inference
    from nemotron.training.model import causal_mask

    run = trained.run
    checkpoint = Checkpoint(
        path=trained.output,
        num_steps=STEPS,
        training_loss=trained.state.last_loss,
        checkpoint_path=trained.output / "checkpoints" / f"iter_{STEPS:07d}",
        tokens_seen=trained.state.tokens_seen,
        model=run.model_config.as_dict() | {"vocab_size": run.vocab_size},
        world_size=1,
        tokenizer_path=trained.output / "no-tokenizer",
        dataset_path=trained.output / "no-dataset",
    )
    reloaded, forward = load_for_inference(checkpoint, vocab_size=VOCAB)
    assert reloaded is not run.model and type(reloaded).__name__ == "GPTModel"
    tokens = torch.as_tensor(_stream(2 * 128, seed=3).reshape(2, 128))
    run.model.eval()
    with torch.no_grad():
        positions = torch.arange(128).expand(2, 128)
        expected = run.model(tokens, positions, causal_mask(128))[..., :VOCAB].float()
    run.model.train()
    assert torch.equal(forward(tokens), expected)

    # a hybrid run refuses the dense checkpoint as its starting point, in words
    from nemotron.training.run import PreparedRun

    hybrid = PreparedRun(run.ctx, torch.nn.Linear(1, 1), MODEL_PRESETS["tiny"], run.vocab_size, run.layout)
    with pytest.raises(UserError, match="same model family"):
        hybrid.load_weights(checkpoint)


def test_config_round_trips_its_family_and_old_checkpoints_load_as_hybrid():
    for table in (MODEL_PRESETS, NEMOTRON4_PRESETS):
        for config in table.values():
            data = json.loads(json.dumps(config.as_dict()))  # as stored in a Checkpoint's metadata.json
            assert ModelConfig.from_dict(data) == config and data["family"] == config.family
    written_before_families = {k: v for k, v in MODEL_PRESETS["tiny"].as_dict().items() if k != "family"}
    assert ModelConfig.from_dict(written_before_families) == MODEL_PRESETS["tiny"]
    assert isinstance(ModelConfig.from_dict(NEMOTRON4_PRESETS["tiny"].as_dict()), GPTConfig)
    with pytest.raises(UserError, match="'moe' is not one of hybrid, gpt"):
        ModelConfig.from_dict({**NEMOTRON4_PRESETS["tiny"].as_dict(), "family": "moe"})
    with pytest.raises(UserError, match="not a HybridConfig"):
        HybridConfig.from_dict(NEMOTRON4_PRESETS["tiny"].as_dict())


def test_full_presets_have_the_published_parameter_counts():
    full = NEMOTRON4_PRESETS["full"]
    assert (full.num_layers, full.hidden_size, full.num_attention_heads, full.num_query_groups) == (32, 6144, 48, 8)
    assert (full.ffn_hidden_size, full.seq_length, full.init_method_std) == (24576, 4096, 0.0134)
    # Nemotron-4 15B report: 3.2B embedding + 12.5B non-embedding parameters with a 256,000-token vocabulary
    total = count_parameters(full, 256_000)
    embedding = 2 * 256_000 * full.hidden_size
    assert abs(embedding / 3.2e9 - 1) < 0.03 and abs((total - embedding) / 12.5e9 - 1) < 0.01
    # Nemotron-Nano-12B-v2-Base: 12.31B with its 131,072-token vocabulary
    assert abs(count_parameters(MODEL_PRESETS["full"], 131_072) / 12.31e9 - 1) < 0.01
    # every smaller dense scale keeps the shape: FFN 4x hidden, fewer K/V heads than query heads
    for config in NEMOTRON4_PRESETS.values():
        assert config.ffn_hidden_size == 4 * config.hidden_size
        assert config.num_attention_heads % config.num_query_groups == 0
        assert config.num_query_groups < config.num_attention_heads


def test_counted_parameters_match_a_built_hybrid_model(trained):
    from nemotron.training.model import build_model, transformer_config

    config = MODEL_PRESETS["tiny"]
    model = build_model(config, trained.run.vocab_size, transformer_config(config))
    assert sum(p.numel() for p in model.parameters()) == count_parameters(config, trained.run.vocab_size)
