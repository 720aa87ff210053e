"""The plain-PyTorch Mamba-2 mixer against its definition, and against megatron-core's MambaMixer.

Oracle: the Mamba-2 recurrence written token by token from the paper's definition (Dao & Gu 2024, eq. for the
selective SSM with scalar-times-identity A), in float64. The chunked scan (state space duality) runs in float32, the
precision the mixer computes its scan in whatever the model's dtype.

Tolerance. fp32 rounds each operation with relative error u = 2**-24. The chunked scan forms each output as a sum of
at most ``chunk + chunks + n`` products (the tokens of its chunk, the chunk boundaries before it, the state
contraction), each product a few roundings deep, and its decays as exp of cumulative sums of up to ``chunk`` log
decays, whose rounding is u times their magnitude. A first-order bound (Higham, "Accuracy and Stability of
Numerical Algorithms", 3.1) on one output is therefore ``(terms + max |log decay sum| + depth) * u * sum |products|``;
``sum |products|`` is the oracle run on |x|, |B|, |C| (decays and step sizes are positive). Forward values are
checked against that bound element by element. Gradients are sums of the same kind over at most twice as many terms
(forward and backward), so they get twice the bound's term count, relative to the gradient's largest magnitude.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

U = 2.0**-24  # fp32 unit roundoff


def recurrence(x, dt, A, B, C, initial_state=None):
    """The definition, one token at a time: state_t = exp(dt_t A) state_{t-1} + dt_t x_t B_t^T, y_t = state_t C_t."""
    batch, length, heads, head_dim = x.shape
    groups, n = B.shape[2:]
    per_group = heads // groups
    state = x.new_zeros(batch, heads, head_dim, n) if initial_state is None else initial_state
    ys = []
    for t in range(length):
        B_t = B[:, t].repeat_interleave(per_group, dim=1)  # head h reads group h // (heads / groups)
        C_t = C[:, t].repeat_interleave(per_group, dim=1)
        decay = torch.exp(dt[:, t] * A)[..., None, None]
        state = decay * state + (dt[:, t, :, None] * x[:, t])[..., None] * B_t[:, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", state, C_t))
    return torch.stack(ys, dim=1), state


def random_inputs(length, heads, groups, seed, batch=2, head_dim=8, n=6, initial=False):
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    x = randn(batch, length, heads, head_dim)
    dt = F.softplus(randn(batch, length, heads) - 2.0)  # the mixer's softplus(dt + dt_bias), around 0.1
    A = -torch.empty(heads, dtype=torch.float64).uniform_(1, 16, generator=generator)  # megatron's init range
    B, C = randn(batch, length, groups, n), randn(batch, length, groups, n)
    state = randn(batch, heads, head_dim, n) if initial else None
    return x, dt, A, B, C, state


def forward_bound(x, dt, A, B, C, state, chunk):
    """Element-wise error bound of the fp32 chunked scan (module doc)."""
    length = x.shape[1]
    magnitude, _ = recurrence(x.abs(), dt, A, B.abs(), C.abs(), None if state is None else state.abs())
    terms = chunk + math.ceil(length / chunk) + B.shape[-1]
    log_decay = (dt * A).abs().sum(dim=1).max().item()
    return (terms + log_decay + 10) * U * magnitude


CASES = [  # chunk size, sequence length (several not a multiple of the chunk), heads, groups
    (1, 5, 2, 1),
    (4, 13, 4, 2),
    (8, 8, 3, 3),
    (8, 37, 4, 1),
    (16, 50, 6, 2),
    (64, 37, 4, 4),
    (128, 128, 4, 1),
]


@pytest.mark.parametrize(("chunk", "length", "heads", "groups"), CASES)
@pytest.mark.parametrize("initial", [False, True], ids=["zero-state", "initial-state"])
def test_chunked_scan_matches_the_token_by_token_recurrence(chunk, length, heads, groups, initial):
    from nemotron.training.mamba import ssd_scan

    inputs = random_inputs(length, heads, groups, seed=chunk * 1000 + length, initial=initial)
    ref_leaves = [t.clone().requires_grad_() if t is not None else None for t in inputs]
    fp32_leaves = [t.float().requires_grad_() if t is not None else None for t in inputs]
    y_ref, state_ref = recurrence(*ref_leaves)
    y, state = ssd_scan(*fp32_leaves[:5], chunk_size=chunk, initial_state=fp32_leaves[5])
    assert y.dtype == torch.float32 and y.shape == y_ref.shape and state.shape == state_ref.shape

    bound = forward_bound(*inputs, chunk)
    assert ((y.double() - y_ref).abs() <= bound).all(), (y.double() - y_ref).abs().max()
    final_bound = (chunk + length + 10) * U * recurrence(*(t.abs() if t is not None else t for t in inputs))[1]
    assert ((state.double() - state_ref).abs() <= final_bound + 1e-30).all()

    # Backward: the same upstream gradient through both, w.r.t. every input (x, dt, A, B, C, initial state).
    generator = torch.Generator().manual_seed(7)
    dy = torch.randn(y_ref.shape, generator=generator, dtype=torch.float64)
    dstate = torch.randn(state_ref.shape, generator=generator, dtype=torch.float64)
    ((y_ref * dy).sum() + (state_ref * dstate).sum()).backward()
    ((y * dy.float()).sum() + (state * dstate.float()).sum()).backward()
    terms = 2 * (chunk + math.ceil(length / chunk) + inputs[3].shape[-1] + length)
    for name, ref, ours in zip(("x", "dt", "A", "B", "C", "state"), ref_leaves, fp32_leaves, strict=True):
        if ref is None:
            continue
        scale = ref.grad.abs().max().item()
        error = (ours.grad.double() - ref.grad).abs().max().item()
        assert error <= terms * U * scale * 10, (name, error, scale)


def test_padding_never_reaches_earlier_tokens():
    """A sequence cut at any length gives the prefix of the whole sequence's output (causality through padding)."""
    from nemotron.training.mamba import ssd_scan

    x, dt, A, B, C, _ = (t.float() if t is not None else None for t in random_inputs(40, 4, 2, seed=3))
    whole, _ = ssd_scan(x, dt, A, B, C, chunk_size=16)
    for cut in (1, 15, 16, 17, 33):
        part, _ = ssd_scan(x[:, :cut], dt[:, :cut], A, B[:, :cut], C[:, :cut], chunk_size=16)
        torch.testing.assert_close(part, whole[:, :cut], rtol=1e-5, atol=1e-5)


# --- the whole mixer -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def megatron_world():
    """A one-rank world with megatron's parallel state (the mixer's linears need it)."""
    from nemotron.training.cpu_shim import apply_cpu_shim
    from nemotron.training.distributed import init_distributed

    init_distributed(1, 1)
    apply_cpu_shim()
    yield


def tconfig(heads, groups, head_dim=8, state=6, hidden=24):
    from nemotron.training.model import HybridConfig, transformer_config

    config = HybridConfig("M", hidden, 4 * hidden, 2, 1, 8, 64, heads, head_dim, state, groups)
    return transformer_config(config)


def build_ours(config, seed=0):
    from megatron.core.ssm.mamba_mixer import MambaMixerSubmodules
    from megatron.core.tensor_parallel import RowParallelLinear
    from megatron.core.transformer.spec_utils import ModuleSpec, build_module

    from nemotron.training.cpu_shim import reset_rng_tracker
    from nemotron.training.mamba import MambaMixer, NormColumnParallelLinear

    reset_rng_tracker(seed)
    spec = ModuleSpec(
        module=MambaMixer,
        submodules=MambaMixerSubmodules(in_proj=NormColumnParallelLinear, out_proj=RowParallelLinear),
    )
    return build_module(spec, config, d_model=config.hidden_size, layer_number=1, pg_collection=_pg_collection())


def _pg_collection():
    from megatron.core.process_groups_config import ProcessGroupCollection

    return ProcessGroupCollection.use_mpu_process_groups(required_pgs=["tp", "cp"])


def mixer_by_definition(mixer, hidden):
    """The whole layer from its definition in float64, one token at a time: fused RMSNorm + in_proj, causal depthwise
    conv as explicit taps over the last d_conv inputs, SiLU, softplus step, the recurrence, D skip, SiLU gate,
    RMSNorm per group, out_proj. ``hidden`` [L, B, d_model]."""
    p = {name: t.double() for name, t in mixer.named_parameters()}
    eps = mixer.config.layernorm_epsilon
    heads, head_dim, groups, n = mixer.nheads, mixer.headdim, mixer.ngroups, mixer.d_state
    inner, width = mixer.d_inner, mixer.d_conv
    h = hidden.double().transpose(0, 1)  # [B, L, d]
    normed = h / torch.sqrt(h.square().mean(-1, keepdim=True) + eps) * p["in_proj.layer_norm_weight"]
    zxBCdt = normed @ p["in_proj.weight"].T
    z, xBC, dt_raw = zxBCdt.split([inner, inner + 2 * groups * n, heads], dim=-1)
    weight, bias = p["conv1d.weight"][:, 0, :], p["conv1d.bias"]  # [channels, width]: tap k sees t - (width-1-k)
    conv = torch.stack(
        [
            sum(weight[:, k] * xBC[:, t - (width - 1 - k)] for k in range(width) if t - (width - 1 - k) >= 0) + bias
            for t in range(xBC.shape[1])
        ],
        dim=1,
    )
    x, B, C = F.silu(conv).split([inner, groups * n, groups * n], dim=-1)
    x = x.unflatten(-1, (heads, head_dim))
    dt = F.softplus(dt_raw + p["dt_bias"])
    A = -torch.exp(p["A_log"])
    y, _ = recurrence(x, dt, A, B.unflatten(-1, (groups, n)), C.unflatten(-1, (groups, n)))
    y = (y + p["D"][:, None] * x).flatten(-2)
    gated = (y * F.silu(z)).unflatten(-1, (groups, inner // groups))
    normed = (gated / torch.sqrt(gated.square().mean(-1, keepdim=True) + 1e-5)).flatten(-2) * p["norm.weight"]
    return (normed @ p["out_proj.weight"].T).transpose(0, 1)


@pytest.mark.parametrize(("heads", "groups", "chunk", "length"), [(4, 1, 128, 37), (4, 2, 8, 37), (6, 3, 16, 16)])
def test_mixer_matches_its_definition_forward_and_backward(megatron_world, heads, groups, chunk, length):
    config = tconfig(heads, groups)
    mixer = build_ours(config)
    mixer.chunk_size = chunk
    with torch.no_grad():  # away from init (D = 1, norm weight = 1) so every parameter's role shows
        for parameter in mixer.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    hidden = torch.randn(length, 2, config.hidden_size, dtype=torch.float32, requires_grad=True)
    hidden64 = hidden.detach().double().requires_grad_()
    out, bias = mixer(hidden)
    assert bias is None and out.shape == hidden.shape
    # The oracle reads the same parameters in float64: its graph reaches them through .double().
    reference = mixer_by_definition(mixer, hidden64)
    torch.testing.assert_close(out.double(), reference, rtol=1e-4, atol=1e-5 * reference.abs().max().item())

    upstream = torch.randn_like(reference)
    grads = torch.autograd.grad((reference * upstream).sum(), [hidden64, *mixer.parameters()])
    ours = torch.autograd.grad((out * upstream.float()).sum(), [hidden, *mixer.parameters()])
    names = ["input", *(name for name, _ in mixer.named_parameters())]
    for name, ref, got in zip(names, grads, ours, strict=True):
        scale = ref.abs().max().item()
        assert (got.double() - ref).abs().max().item() <= 1e-4 * scale + 1e-12, name


def test_tensor_parallel_shards_are_the_whole_layer(megatron_world):
    """At TP=2 megatron gives each rank half the heads and groups: rank r's in_proj rows are its z, x, B, C, dt, its
    conv channels its x, B, C, and out_proj's column halves sum. The sum over ranks of what each rank's mixer
    computes is the TP=1 layer's output."""
    heads, groups, tp = 4, 2, 2
    whole = build_ours(tconfig(heads, groups))
    hidden = torch.randn(19, 2, whole.d_model)
    expected, _ = whole(hidden)

    inner, n, head_dim = whole.d_inner, whole.d_state, whole.headdim
    sections = {"z": inner, "x": inner, "B": groups * n, "C": groups * n, "dt": heads}
    blocks = dict(zip(sections, whole.in_proj.weight.split(list(sections.values())), strict=True))
    conv_w = dict(zip("xBC", whole.conv1d.weight.split([inner, groups * n, groups * n]), strict=True))
    conv_b = dict(zip("xBC", whole.conv1d.bias.split([inner, groups * n, groups * n]), strict=True))
    total = torch.zeros_like(expected)
    for rank in range(tp):

        def part(tensor, rank=rank):
            return tensor.chunk(tp, dim=0)[rank]

        shard = build_ours(tconfig(heads, groups))
        shard.nheads_local_tp, shard.ngroups_local_tp, shard.d_inner_local_tp = heads // tp, groups // tp, inner // tp
        local_conv = torch.cat([part(conv_w[k]) for k in "xBC"])
        shard.conv1d = torch.nn.Conv1d(
            local_conv.shape[0], local_conv.shape[0], 4, groups=local_conv.shape[0], padding=3
        )
        with torch.no_grad():
            shard.conv1d.weight.copy_(local_conv)
            shard.conv1d.bias.copy_(torch.cat([part(conv_b[k]) for k in "xBC"]))
        shard.dt_bias, shard.A_log, shard.D = (
            torch.nn.Parameter(part(t)) for t in (whole.dt_bias, whole.A_log, whole.D)
        )
        shard.norm.weight = torch.nn.Parameter(part(whole.norm.weight))
        shard.norm.group_size = whole.norm.group_size  # d_inner / ngroups on every rank: groups never straddle ranks
        local_in = torch.cat([part(blocks[k]) for k in sections])
        normed = F.rms_norm(hidden, (whole.d_model,), whole.in_proj.layer_norm_weight, 1e-5)
        y = shard.mix((normed @ local_in.T).transpose(0, 1)).transpose(0, 1)
        total += y @ whole.out_proj.weight.chunk(tp, dim=1)[rank].T  # row-parallel: the all-reduce is this sum
        assert y.shape[-1] == shard.nheads_local_tp * head_dim
    torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-5)


# --- a drop-in for megatron's MambaMixer -------------------------------------------------------------------------


class _RMSNormGatedShape(torch.nn.Module):
    """Stand-in for mamba_ssm's ``RMSNormGated`` (not importable without CUDA) with its parameters as its source
    defines them (mamba_ssm/ops/triton/layernorm_gated.py): ``weight`` [hidden_size] initialised to ones, ``bias``
    registered as None. Only its parameters matter here: megatron's constructor is what is under test."""

    def __init__(self, hidden_size, eps=1e-5, group_size=None, norm_before_gate=True, device=None, dtype=None):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.register_parameter("bias", None)


@pytest.fixture
def megatron_mixer_class(monkeypatch, megatron_world):
    """megatron-core's own ``MambaMixer`` class, constructible on CPU: its module refuses to build without
    mamba_ssm/einops (flags set at import), which its constructor never calls; only the gated norm class, which
    comes from mamba_ssm, is the stand-in above."""
    from megatron.core.ssm import mamba_context_parallel, mamba_mixer

    monkeypatch.setattr(mamba_mixer, "HAVE_MAMBA_SSM", True)
    monkeypatch.setattr(mamba_mixer, "HAVE_EINOPS", True)
    monkeypatch.setattr(mamba_context_parallel, "HAVE_EINOPS", True)
    monkeypatch.setattr(mamba_mixer, "ExtendedRMSNorm", _RMSNormGatedShape)
    return mamba_mixer.MambaMixer


@pytest.mark.parametrize(("heads", "groups", "d_has_hdim"), [(4, 1, False), (6, 2, False), (4, 2, True)])
def test_parameters_are_megatrons_names_shapes_and_initial_values(megatron_mixer_class, heads, groups, d_has_hdim):
    """Built from the same seed, megatron's MambaMixer (with megatron's local column/row-parallel linears) and ours
    have the same parameters, in the same order, with the same shapes and the same initial values; ours adds only
    the layer norm that the published spec fuses into ``in_proj`` (see the next test)."""
    from megatron.core.ssm.mamba_mixer import MambaMixerSubmodules
    from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear

    from nemotron.training.cpu_shim import reset_rng_tracker
    from nemotron.training.mamba import MambaMixer, NormColumnParallelLinear

    config = tconfig(heads, groups)
    reset_rng_tracker(0)
    theirs = megatron_mixer_class(
        config,
        MambaMixerSubmodules(in_proj=ColumnParallelLinear, out_proj=RowParallelLinear),
        d_model=config.hidden_size,
        D_has_hdim=d_has_hdim,
        layer_number=1,
        pg_collection=_pg_collection(),
    )
    reset_rng_tracker(0)
    ours = MambaMixer(
        config,
        MambaMixerSubmodules(in_proj=NormColumnParallelLinear, out_proj=RowParallelLinear),
        d_model=config.hidden_size,
        D_has_hdim=d_has_hdim,
        layer_number=1,
        pg_collection=_pg_collection(),
    )
    their_params = {name: p for name, p in theirs.named_parameters()}
    our_params = {name: p for name, p in ours.named_parameters() if name != "in_proj.layer_norm_weight"}
    assert list(our_params) == list(their_params)
    for name, parameter in their_params.items():
        assert our_params[name].shape == parameter.shape, name
        assert our_params[name].dtype == parameter.dtype, name
        assert torch.equal(our_params[name], parameter), name  # same init, same RNG order
        assert getattr(our_params[name], "tensor_model_parallel", False) == getattr(
            parameter, "tensor_model_parallel", False
        ), name
    assert ours.mamba_state_shapes_per_request() == theirs.mamba_state_shapes_per_request()
    # Distributed checkpoints: the same sharded keys (in_proj split into z, x, B, C, dt; conv1d into x, B, C).
    metadata = {"dp_cp_group": None}
    keys = {k for k in ours.sharded_state_dict("m.", metadata=metadata) if "layer_norm" not in k}
    assert keys == set(theirs.sharded_state_dict("m.", metadata=metadata))


def test_the_stack_has_the_published_specs_structure_and_names(megatron_world):
    """The published spec (Transformer Engine) fuses each layer's norm into its first linear: Mamba ``in_proj``,
    attention ``linear_qkv``, MLP ``linear_fc1`` are ``TELayerNormColumnParallelLinear`` and the layers' own norms
    are IdentityOp. Megatron's local GPT spec documents the TE names of those norms in its checkpoint key map
    (``input_layernorm.`` -> ``self_attention.linear_qkv.layer_norm_`` ...). Our CPU stack has that structure, so
    its parameter names are the TE model's."""
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.models.mamba.mamba_layer_specs import mamba_stack_spec
    from megatron.core.transformer.identity_op import IdentityOp

    from nemotron.training.mamba import MambaMixer
    from nemotron.training.model import MODEL_PRESETS, _local_stack_spec, build_model, transformer_config

    published, local = mamba_stack_spec.submodules, _local_stack_spec().submodules
    assert published.mamba_layer.submodules.norm is IdentityOp and local.mamba_layer.submodules.norm is IdentityOp
    assert local.mamba_layer.submodules.mixer.module is MambaMixer
    assert local.attention_layer.submodules.input_layernorm is IdentityOp
    assert local.mlp_layer.submodules.pre_mlp_layernorm is IdentityOp
    te_names = get_gpt_layer_local_spec(normalization="RMSNorm").submodules.sharded_state_dict_keys_map
    assert set(te_names.values()) == {"self_attention.linear_qkv.layer_norm_", "mlp.linear_fc1.layer_norm_"}

    config = MODEL_PRESETS["tiny"]
    model = build_model(config, 256, transformer_config(config))
    names = {name for name, _ in model.named_parameters()}
    assert "decoder.layers.0.mixer.in_proj.layer_norm_weight" in names  # TE's in_proj carries the Mamba layer's norm
    for prefix in ("decoder.layers.1.mlp.linear_fc1.", "decoder.layers.2.self_attention.linear_qkv."):
        assert f"{prefix}layer_norm_weight" in names
    assert not any("input_layernorm" in name or "pre_mlp_layernorm" in name for name in names)
    assert not any(name.startswith("decoder.layers.0.norm") for name in names)

    # The dense family (nemotron4) likewise: TE's LayerNorm-fused linears carry weight and bias.
    from nemotron.recipes.nemotron4.stage0_pretrain.training import MODELS

    dense = MODELS["tiny"]
    names = {name for name, _ in build_model(dense, 256, transformer_config(dense)).named_parameters()}
    for prefix in ("decoder.layers.0.self_attention.linear_qkv.", "decoder.layers.0.mlp.linear_fc1."):
        assert {f"{prefix}layer_norm_weight", f"{prefix}layer_norm_bias"} <= names
    assert not any("input_layernorm" in name or "pre_mlp_layernorm" in name for name in names)


TP2_SCRIPT = """
import json, os, torch
from nemotron.training.loop import language_model_loss
from nemotron.training.model import HybridConfig
from nemotron.training.memory import Layout
from nemotron.training.run import prepare_model_run

if __name__ == "__main__":
    # 4 Mamba heads in 2 B/C groups: each of the 2 TP ranks holds 2 heads and 1 group, as megatron shards them.
    config = HybridConfig("M-*-", 64, 256, 4, 2, 16, 32, 4, 16, 8, 2)
    run = prepare_model_run(config, seed=0, vocab_size=128, layout=Layout(tensor_parallel=2))
    mixer = run.model.decoder.layers[0].mixer
    shapes = {name: list(p.shape) for name, p in mixer.named_parameters()}
    generator = torch.Generator().manual_seed(0)
    text = torch.randint(0, 16, (4, 33), generator=generator)  # 16 distinct tokens: learnable quickly
    batch = {"tokens": text[:, :-1], "labels": text[:, 1:], "loss_mask": torch.ones(4, 32),
             "position_ids": torch.arange(32).expand(4, 32)}
    optimizer = torch.optim.AdamW(run.model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        total, count = language_model_loss(run.model, batch)
        (total / count).backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append((total / count).item())
    # One file per rank: two ranks printing to one pipe can interleave their lines.
    rank = int(os.environ["RANK"])
    with open(os.path.join(os.environ["RESULTS_DIR"], f"rank{rank}.json"), "w") as out:
        json.dump({"rank": rank, "losses": losses, "shapes": shapes}, out)
    run.close()
"""


@pytest.mark.slow
def test_tensor_parallel_2_trains_on_two_gloo_ranks(tmp_path):
    """The mixer inside the real model at TP=2 (torchrun, 2 CPU ranks over gloo): each rank holds half the heads,
    groups, conv channels and projections, both ranks see the same loss (out_proj's all-reduce), and it falls."""
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "tp2.py"
    script.write_text(TP2_SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)]
    env = {**os.environ, "RESULTS_DIR": str(tmp_path)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("rank*.json"))]
    assert sorted(r["rank"] for r in ranks) == [0, 1]
    assert ranks[0]["losses"] == pytest.approx(ranks[1]["losses"], rel=1e-6)
    assert ranks[0]["losses"][-1] < ranks[0]["losses"][0] - 0.5
    shapes = ranks[0]["shapes"]  # d_inner 64 -> 32 per rank; in_proj rows (2*64 + 2*2*8 + 4) / 2 = 82
    assert shapes["in_proj.weight"] == [82, 64] and shapes["conv1d.weight"] == [32 + 2 * 8, 1, 4]
    assert shapes["A_log"] == shapes["dt_bias"] == shapes["D"] == [2] and shapes["norm.weight"] == [32]
    assert shapes["out_proj.weight"] == [64, 32]


def test_a_layout_that_splits_a_group_is_one_line(megatron_world):
    """tiny's single B/C group cannot be split over 2 ranks (nor can megatron's mixer split it): a user error."""
    from types import SimpleNamespace

    from megatron.core.ssm.mamba_mixer import MambaMixerSubmodules

    from nemotron.errors import UserError
    from nemotron.training.mamba import MambaMixer

    two_ranks = SimpleNamespace(tp=SimpleNamespace(size=lambda: 2), cp=SimpleNamespace(size=lambda: 1))
    with pytest.raises(UserError, match=r"--tensor-parallel 2: .* 4 heads in 1 B/C groups"):
        MambaMixer(tconfig(4, 1), MambaMixerSubmodules(), d_model=24, pg_collection=two_ranks)
