"""One model builder for every scale and two families: megatron-core's hybrid Mamba-Transformer (``MambaModel``,
Nemotron-H) and a dense Transformer (``GPTModel``, Nemotron-4). A config's ``family`` picks the builder, and a
checkpoint's ``model`` dict carries it, so evaluation, inference, SFT and DPO rebuild either kind unchanged.

Hybrid, ``MODEL_PRESETS["full"]``: Nemotron-Nano-12B-v2-Base as published: 62 layers in the pattern below (28 Mamba-2
``M``, 28 FFN ``-``, 6 attention ``*``), hidden 5120, FFN 20480, GQA 40 query / 8 KV heads, squared-ReLU, RMSNorm,
no position embeddings, no bias, no dropout, sequence 8192. Smaller scales keep the same shape of layer stack.

Dense, the nemotron4 recipe's ``MODELS["full"]``: Nemotron-4 15B (arXiv 2402.16819, section 2 and Table 1): 32
layers, hidden 6144, 48 query / 8 KV heads (GQA), sequence 4096, RoPE, squared-ReLU, no bias, no dropout, untied
input/output embeddings; 3.2B embedding + 12.5B non-embedding parameters (256k vocabulary). What the report leaves
out comes from NeMo's ``Nemotron4Config15B``: LayerNorm, RoPE on half of each head, FFN 24576 (which gives the
12.5B), init std 0.0134. NeMo stores LayerNorm weights "zero-centred" (gamma - 1): the same function, and the same
training here since norms get no weight decay, so plain LayerNorm is used (the one megatron's CPU modules offer).

Mamba-2 layers run megatron's ``MambaMixer`` (Transformer Engine spec) where CUDA and the ``mamba_ssm`` /
``causal_conv1d`` kernels are installed, and ``nemotron.training.mamba.MambaMixer`` (the same layer in plain PyTorch)
everywhere else, so every machine trains the pattern as written. Both stacks fuse each layer's input norm into its
first linear under Transformer Engine's names, so their parameter names and shapes are the same and a checkpoint
moves between a laptop and a GPU node.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from nemotron.errors import UserError

NANO2_12B_PATTERN = "M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M-"


class ModelConfig:
    """What every family's config offers: ``family``, ``num_layers``, ``hidden_size``, ``seq_length``, ``as_dict()``,
    and ``ModelConfig.from_dict`` (the inverse, returning the family's class)."""

    family: ClassVar[str]

    def as_dict(self) -> dict[str, Any]:
        return {"family": self.family, **dataclasses.asdict(self), "num_layers": self.num_layers}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        family = data.get("family", "hybrid")  # checkpoints written before the dense family carry no family
        if family not in FAMILIES:
            raise UserError(f"model family {family!r} is not one of {', '.join(FAMILIES)}")
        target = FAMILIES[family]
        if not issubclass(target, cls):
            raise UserError(f"model config of family {family!r} is not a {cls.__name__}")
        return target(**{f.name: data[f.name] for f in dataclasses.fields(target)})


@dataclass(frozen=True)
class HybridConfig(ModelConfig):
    """The hybrid architecture; the layer count is the length of ``hybrid_override_pattern`` (M mamba, * attention,
    - FFN)."""

    family: ClassVar[str] = "hybrid"
    hybrid_override_pattern: str
    hidden_size: int
    ffn_hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    kv_channels: int
    seq_length: int
    mamba_num_heads: int
    mamba_head_dim: int
    mamba_state_dim: int
    mamba_num_groups: int
    init_method_std: float = 0.02

    @property
    def num_layers(self) -> int:
        return len(self.hybrid_override_pattern)


@dataclass(frozen=True)
class GPTConfig(ModelConfig):
    """The dense architecture: ``num_layers`` identical layers of attention + FFN (megatron's ``GPTModel``)."""

    family: ClassVar[str] = "gpt"
    num_layers: int
    hidden_size: int
    ffn_hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    kv_channels: int
    seq_length: int
    init_method_std: float = 0.02
    rotary_percent: float = 0.5


FAMILIES: dict[str, type[ModelConfig]] = {"hybrid": HybridConfig, "gpt": GPTConfig}

MODEL_PRESETS: dict[str, ModelConfig] = {
    # Trains on 2 CPU cores in about a minute; big enough to learn the embedded corpus's facts.
    # Two B/C groups (as many as its KV heads), so it splits over 2 tensor-parallel ranks like the full model.
    "tiny": HybridConfig("M-*-", 128, 512, 4, 2, 32, 128, 4, 32, 16, 2),
    "small": HybridConfig("M-M-M*-M-M-M*-", 1024, 4096, 16, 4, 64, 2048, 32, 64, 64, 4),
    # Nemotron-H-4B's stack.
    "medium": HybridConfig(
        "M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-", 3072, 12288, 32, 8, 128, 4096, 112, 64, 128, 8
    ),
    "full": HybridConfig(NANO2_12B_PATTERN, 5120, 20480, 40, 8, 128, 8192, 128, 80, 128, 8, init_method_std=0.0099),
}


def count_parameters(config: ModelConfig, vocab_size: int) -> int:
    """Parameters ``build_model`` gives ``config`` (one model-parallel rank of one), computed without building it:
    untied embedding and output layer, no linear biases, RMSNorm (hybrid: weight) or LayerNorm (dense: weight + bias).
    """
    return sum(layer_parameters(config)) + norm_parameters(config) + 2 * vocab_size * config.hidden_size


def layer_kinds(config: ModelConfig) -> list[str]:
    """What each layer of the stack holds, in order: ``M`` Mamba-2, ``*`` attention, ``-`` FFN; a dense layer is
    attention then FFN (``*-``)."""
    if isinstance(config, GPTConfig):
        return ["*-"] * config.num_layers
    return list(config.hybrid_override_pattern)


def layer_parameters(config: ModelConfig) -> list[int]:
    """Parameters of each layer of the stack, in order, its norms included (one model-parallel rank of one)."""
    h = config.hidden_size
    norm = norm_parameters(config)
    sizes = {
        "*": norm + h * config.kv_channels * (2 * config.num_attention_heads + 2 * config.num_query_groups),
        "-": norm + 2 * h * config.ffn_hidden_size,
    }
    if isinstance(config, HybridConfig):
        inner = config.mamba_num_heads * config.mamba_head_dim
        conv = inner + 2 * config.mamba_num_groups * config.mamba_state_dim  # channels of x, B, C
        heads = config.mamba_num_heads
        sizes["M"] = norm + h * (inner + conv + heads) + conv * 5 + 3 * heads + inner + inner * h
    return [sum(sizes[part] for part in kind) for kind in layer_kinds(config)]


def norm_parameters(config: ModelConfig) -> int:
    """One norm's parameters: RMSNorm's weight (hybrid) or LayerNorm's weight and bias (dense)."""
    return 2 * config.hidden_size if isinstance(config, GPTConfig) else config.hidden_size


def mamba_kernels_available() -> bool:
    """CUDA plus the mamba_ssm and causal_conv1d kernels: megatron's own Mamba-2 mixer can run."""
    return _cuda_with("mamba_ssm", "causal_conv1d")


def transformer_engine_available() -> bool:
    """Transformer Engine layers need CUDA (the package cannot even be installed on a CPU machine)."""
    return _cuda_with("transformer_engine")


def _cuda_with(*packages: str) -> bool:
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        return False
    return all(importlib.util.find_spec(name) is not None for name in packages)


def transformer_config(
    config: ModelConfig,
    *,
    tensor_parallel: int = 1,
    pipeline_parallel: int = 1,
    sequence_parallel: bool = False,
    fp8: bool = False,
):
    """megatron's TransformerConfig for ``config``: the Nemotron-H/-4 choices, and no fused kernels off the GPU.

    Parameters stay fp32 (the optimizer's master weights); bf16 comes from autocast in the loop. ``fp8`` ("hybrid"
    E4M3/E5M2 as in the Nemotron-H recipe) takes effect only in Transformer Engine layers. ``sequence_parallel``:
    norms and residual adds run on each tensor-parallel rank's share of the sequence (Korthikanti et al. 2022).
    """
    import torch
    from megatron.core.activations import squared_relu
    from megatron.core.transformer import TransformerConfig

    on_gpu = torch.cuda.is_available()
    return TransformerConfig(
        num_layers=config.num_layers,
        hidden_size=config.hidden_size,
        ffn_hidden_size=config.ffn_hidden_size,
        num_attention_heads=config.num_attention_heads,
        num_query_groups=config.num_query_groups,
        kv_channels=config.kv_channels,
        init_method_std=config.init_method_std,
        activation_func=squared_relu,
        gated_linear_unit=False,
        add_bias_linear=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        attention_softmax_in_fp32=True,
        tensor_model_parallel_size=tensor_parallel,
        pipeline_model_parallel_size=pipeline_parallel,
        sequence_parallel=sequence_parallel,
        params_dtype=torch.float32,
        # what pipeline stages send each other: the fp32 residual stream (autocast leaves the residual adds in fp32)
        pipeline_dtype=torch.float32,
        fp8="hybrid" if fp8 else None,
        use_cpu_initialization=not on_gpu,
        gradient_accumulation_fusion=False,
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        apply_rope_fusion=False,
        persist_layer_norm=False,
        **_family_fields(config),
    )


def _family_fields(config: ModelConfig) -> dict[str, Any]:
    """The TransformerConfig fields in which the families differ."""
    if isinstance(config, GPTConfig):
        return {"normalization": "LayerNorm"}
    return {
        "normalization": "RMSNorm",
        "mamba_num_heads": config.mamba_num_heads,
        "mamba_head_dim": config.mamba_head_dim,
        "mamba_state_dim": config.mamba_state_dim,
        "mamba_num_groups": config.mamba_num_groups,
    }


def _local_stack_spec(normalization: str = "RMSNorm"):
    """The published ``mamba_stack_spec`` built from megatron's own (non Transformer Engine) modules and our
    plain-PyTorch Mamba-2 mixer, so it builds on any machine. Like the published spec, each layer's norm lives in
    its first linear (``NormColumnParallelLinear``, named as TE names it): the two give the same parameter names."""
    from megatron.core.fusions.fused_bias_dropout import get_bias_dropout_add
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.ssm.mamba_block import MambaStack, MambaStackSubmodules
    from megatron.core.ssm.mamba_layer import MambaLayer, MambaLayerSubmodules
    from megatron.core.ssm.mamba_mixer import MambaMixerSubmodules
    from megatron.core.ssm.mlp_layer import MLPLayer
    from megatron.core.tensor_parallel import RowParallelLinear
    from megatron.core.transformer.spec_utils import ModuleSpec
    from megatron.core.transformer.transformer_layer import TransformerLayer

    from nemotron.training.mamba import MambaMixer, NormColumnParallelLinear

    attention_layer, mlp_layer = _fused_norm_layer_specs(get_gpt_layer_local_spec(normalization=normalization))
    mixer = ModuleSpec(
        module=MambaMixer,
        submodules=MambaMixerSubmodules(in_proj=NormColumnParallelLinear, out_proj=RowParallelLinear),
    )
    return ModuleSpec(
        module=MambaStack,
        submodules=MambaStackSubmodules(
            mamba_layer=ModuleSpec(
                module=MambaLayer,
                submodules=MambaLayerSubmodules(mixer=mixer, mamba_bda=get_bias_dropout_add),
            ),
            attention_layer=ModuleSpec(module=TransformerLayer, submodules=attention_layer),
            mlp_layer=ModuleSpec(module=MLPLayer, submodules=mlp_layer),
        ),
    )


def _fused_norm_layer_specs(local_layer_spec):
    """(attention-only, MLP-only) ``TransformerLayerSubmodules`` of megatron's local layer spec, with the input
    norms fused into ``linear_qkv`` and ``linear_fc1`` as Transformer Engine's spec has them, and attention's core
    through a fused kernel as TE's is (``attention.FusedDotProductAttention``)."""
    from megatron.core.transformer.transformer_layer import TransformerLayerSubmodules

    from nemotron.training.attention import FusedDotProductAttention
    from nemotron.training.mamba import NormColumnParallelLinear

    full = local_layer_spec.submodules
    fused = {"linear_qkv": NormColumnParallelLinear, "core_attention": FusedDotProductAttention}
    attention = dataclasses.replace(
        full.self_attention, submodules=dataclasses.replace(full.self_attention.submodules, **fused)
    )
    mlp = dataclasses.replace(
        full.mlp, submodules=dataclasses.replace(full.mlp.submodules, linear_fc1=NormColumnParallelLinear)
    )
    return (
        TransformerLayerSubmodules(self_attention=attention, self_attn_bda=full.self_attn_bda),
        TransformerLayerSubmodules(mlp=mlp, mlp_bda=full.mlp_bda),
    )


def _stack_spec(config: HybridConfig):
    """The published spec (Transformer Engine layers, megatron's kernel-backed mixer) where its kernels exist; the
    same stack from plain-PyTorch modules otherwise (see ``_local_stack_spec``)."""
    if mamba_kernels_available() and transformer_engine_available():
        from megatron.core.models.mamba.mamba_layer_specs import mamba_stack_spec

        return mamba_stack_spec
    return _local_stack_spec()


def _gpt_block_spec(tconfig):
    """Transformer Engine's layer spec (the published one) where it imports; otherwise the same layers from
    megatron's local modules, norms fused into ``linear_qkv`` / ``linear_fc1`` under TE's names (so checkpoints move
    between the two, as the hybrid's do), and a final norm that runs under sequence parallelism (``TorchNorm``)."""
    from megatron.core.models.gpt import gpt_layer_specs
    from megatron.core.transformer.spec_utils import ModuleSpec
    from megatron.core.transformer.transformer_block import TransformerBlockSubmodules, get_num_layers_to_build
    from megatron.core.transformer.transformer_layer import TransformerLayer, TransformerLayerSubmodules

    from nemotron.training.mamba import TorchNorm

    if transformer_engine_available():
        return gpt_layer_specs.get_gpt_layer_with_transformer_engine_spec()
    attention, mlp = _fused_norm_layer_specs(gpt_layer_specs.get_gpt_layer_local_spec(normalization="LayerNorm"))
    layer = TransformerLayerSubmodules(
        self_attention=attention.self_attention, self_attn_bda=attention.self_attn_bda, mlp=mlp.mlp, mlp_bda=mlp.mlp_bda
    )
    layers = [ModuleSpec(module=TransformerLayer, submodules=layer)] * get_num_layers_to_build(tconfig)  # this stage's
    return TransformerBlockSubmodules(layer_specs=layers, layer_norm=TorchNorm)


def build_model(config: ModelConfig, vocab_size: int, tconfig) -> Any:
    """This machine's megatron model for ``config``, untied output layer: a ``GPTModel`` with RoPE (dense) or a
    ``MambaModel`` without position embeddings (hybrid). Both take ``(tokens, position_ids, attention_mask)``.

    Under pipeline parallelism it is this rank's stage: its share of the layers (megatron splits the stack evenly,
    the hybrid pattern included), the embedding on the first stage, the final norm and output layer on the last."""
    from megatron.core import parallel_state

    stage = {
        "pre_process": parallel_state.is_pipeline_first_stage(),
        "post_process": parallel_state.is_pipeline_last_stage(),
    }
    if isinstance(config, GPTConfig):
        from megatron.core.models.gpt import GPTModel

        return GPTModel(
            config=tconfig,
            transformer_layer_spec=_gpt_block_spec(tconfig),
            vocab_size=vocab_size,
            max_sequence_length=config.seq_length,
            position_embedding_type="rope",  # positions 0..T-1 of the input, whatever position_ids say
            rotary_percent=config.rotary_percent,
            share_embeddings_and_output_weights=False,
            **stage,
        )
    from megatron.core.models.mamba import MambaModel

    return MambaModel(
        config=tconfig,
        mamba_stack_spec=_stack_spec(config),
        vocab_size=vocab_size,
        max_sequence_length=config.seq_length,
        hybrid_override_pattern=config.hybrid_override_pattern,
        position_embedding_type="none",
        share_embeddings_and_output_weights=False,
        **stage,
    )


def recompute_layers(model) -> None:
    """Full activation recompute, one layer at a time: each layer of the stack keeps only its input for the backward
    pass and runs its forward again there (megatron's ``recompute_granularity="full"``, ``"uniform"`` method, one
    layer per group). Why not megatron's own: its ``MambaStack`` has no recompute, and its ``TransformerBlock``'s
    checkpoint saves and restores CUDA RNG states; one mechanism (``torch.utils.checkpoint``, non-reentrant) serves
    both families on CPU and GPU. No RNG state is stashed: these models have no dropout, so the forward run again
    computes exactly what it computed the first time."""
    import functools

    from torch.utils.checkpoint import checkpoint

    for layer in model.decoder.layers:
        # an instance attribute: nn.Module.__call__ finds it, while parameter names (state dicts) stay the same
        layer.forward = functools.partial(checkpoint, layer.forward, use_reentrant=False, preserve_rng_state=False)


def padded_vocab_size(vocab_size: int, tensor_parallel: int = 1, multiple: int = 128) -> int:
    """Vocab rounded up so the output layer splits evenly across tensor-parallel ranks (as megatron-LM does)."""
    step = multiple * tensor_parallel
    return -(-vocab_size // step) * step


def causal_mask(seq_length: int, device: Any = "cpu") -> Any:
    """megatron's attention mask (True = hidden) for causal attention, shaped [1, 1, S, S].

    Passed explicitly because megatron's fallback (``get_default_causal_mask``) allocates it on "cuda" by name.
    """
    import torch

    return torch.triu(torch.ones(seq_length, seq_length, dtype=torch.bool, device=device), diagonal=1)[None, None]
