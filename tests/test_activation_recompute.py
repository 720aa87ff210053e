"""Full activation recompute (``training.recompute=full``, ``model.recompute_layers``): for both families' tiny
models, the same gradients as without it, and far fewer bytes kept for the backward pass.

What is kept is counted exactly, not timed or sampled: ``torch.autograd.graph.saved_tensors_hooks`` sees every
tensor autograd saves during the forward pass (a recomputed layer saves its input only; its insides are saved again
during the backward pass, one layer at a time, and released with it).
"""

from __future__ import annotations

import pytest

VOCAB, SEQ, BATCH = 512, 128, 4


def _saved_bytes_and_gradients(family: str, recompute: str):
    import torch

    from nemotron.recipes.nemotron4.stage0_pretrain.training import MODELS
    from nemotron.training.loop import language_model_loss
    from nemotron.training.memory import Layout
    from nemotron.training.model import MODEL_PRESETS
    from nemotron.training.run import prepare_model_run

    config = MODELS["tiny"] if family == "gpt" else MODEL_PRESETS["tiny"]
    run = prepare_model_run(config, seed=7, vocab_size=VOCAB, layout=Layout(recompute=recompute))
    try:
        tokens = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
        batch = {"tokens": tokens, "labels": tokens.roll(-1, 1), "loss_mask": torch.ones(BATCH, SEQ)}
        batch["position_ids"] = torch.arange(SEQ).expand(BATCH, SEQ)
        saved: dict[int, int] = {}  # storage -> bytes: a tensor saved twice (a view, a shared input) counts once

        def pack(tensor):
            storage = tensor.untyped_storage()
            saved[storage.data_ptr()] = storage.nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            total, count = language_model_loss(run.model, batch)
        kept = sum(saved.values())
        (total / count).backward()
        gradients = {name: p.grad.clone() for name, p in run.model.named_parameters()}
        return kept, gradients
    finally:
        run.close()


@pytest.mark.parametrize("family", ["hybrid", "gpt"])
def test_full_recompute_keeps_each_layers_input_only_and_computes_the_same_gradients(family):
    import torch

    kept, gradients = _saved_bytes_and_gradients(family, "none")
    kept_recomputing, gradients_recomputing = _saved_bytes_and_gradients(family, "full")
    print(f"{family}: {kept / 1e6:.1f} MB kept for backward, {kept_recomputing / 1e6:.1f} MB with full recompute")
    # the forward pass runs again in backward on the same inputs, with no dropout: bit-identical gradients
    assert gradients.keys() == gradients_recomputing.keys()
    assert all(torch.equal(gradients[name], gradients_recomputing[name]) for name in gradients)
    # each layer keeps its [s, b, h] input instead of its insides; the logits and loss are kept either way
    assert kept_recomputing < 0.3 * kept
