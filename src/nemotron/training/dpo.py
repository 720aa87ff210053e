"""Direct Preference Optimisation (Rafailov et al., 2023) on tokenized preference pairs, for ``loop.train``.

A batch stacks the chosen sequences of its pairs, then their rejected ones: ``tokens``/``labels``/``loss_mask``/
``position_ids`` are ``[2B, T]`` (right-padded with EOD; ``loss_mask`` is 1 on response tokens only) and
``reference_logps`` is ``[2B]``, the frozen reference model's summed response log-probabilities, computed once before
training (the reference never changes, so resuming recomputes exactly the same values).

loss = -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), averaged over pairs (optionally plus the chosen
reply's per-token NLL, see ``dpo_loss_fn``).
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from nemotron.training.loop import Objective
from nemotron.training.model import causal_mask

Batch = dict[str, torch.Tensor]


def collate_pairs(pairs: list[dict], pad_id: int) -> Batch:
    """Chosen then rejected sequences of ``pairs`` as one right-padded batch (see module doc)."""
    sequences = [(p["prompt_ids"], p["chosen_ids"]) for p in pairs] + [
        (p["prompt_ids"], p["rejected_ids"]) for p in pairs
    ]
    width = max(len(prompt) + len(response) for prompt, response in sequences) - 1
    tokens = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    labels = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    loss_mask = torch.zeros((len(sequences), width), dtype=torch.float32)
    for row, (prompt, response) in enumerate(sequences):
        full = prompt + response
        tokens[row, : len(full) - 1] = torch.tensor(full[:-1])
        labels[row, : len(full) - 1] = torch.tensor(full[1:])
        # label position j predicts token j+1: response tokens are predicted from len(prompt)-1 on
        loss_mask[row, len(prompt) - 1 : len(full) - 1] = 1.0
    positions = torch.arange(width).expand(len(sequences), width).contiguous()
    return {"tokens": tokens, "labels": labels, "loss_mask": loss_mask, "position_ids": positions}


def sequence_logps(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Summed log-probabilities of each row's masked (response) labels, ``[rows]``."""
    return _logps_of_labels(_logits(model, batch), batch)


def _logits(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    tokens = batch["tokens"]
    return model(tokens, batch["position_ids"], causal_mask(tokens.shape[1], tokens.device))


def _logps_of_labels(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    # megatron pads the vocabulary; padded ids are never labels, so log_softmax over all logits is the model's own
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    picked = log_probs.gather(-1, batch["labels"].unsqueeze(-1)).squeeze(-1)
    return (picked * batch["loss_mask"]).sum(dim=-1)


def dpo_loss_fn(beta: float, sft_weight: float = 0.0) -> Objective:
    """The DPO ``loop.Objective``: the policy's logits, then (sum of per-pair losses, number of pairs). ``sft_weight``
    > 0 adds the chosen reply's mean per-token negative log-likelihood to each pair's loss (as in RPO): DPO alone can
    lower the chosen reply's likelihood along with the rejected one's and so hurt greedy generation."""

    def loss_fn(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        policy = _logps_of_labels(logits, batch)
        margins = implicit_reward_margins(policy, batch["reference_logps"], beta)
        losses = -F.logsigmoid(margins)
        if sft_weight > 0:
            half = margins.numel()
            chosen_tokens = batch["loss_mask"][:half].sum(dim=-1).clamp(min=1)
            losses = losses - sft_weight * policy[:half] / chosen_tokens
        return losses.sum(), torch.tensor(float(margins.numel()), device=losses.device)

    return Objective(_logits, loss_fn)


def implicit_reward_margins(policy_logps: torch.Tensor, reference_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """beta * ((pi_c - ref_c) - (pi_r - ref_r)) per pair, from stacked chosen-then-rejected log-probs."""
    half = policy_logps.shape[0] // 2
    rewards = beta * (policy_logps - reference_logps)
    return rewards[:half] - rewards[half:]


@torch.no_grad()
def pair_logps(model: torch.nn.Module, pairs: list[dict], pad_id: int, batch_size: int, device) -> torch.Tensor:
    """``[N, 2]``: summed response log-probs (chosen, rejected) of every pair under ``model`` (eval mode)."""
    was_training = model.training
    model.eval()
    out = []
    for first in range(0, len(pairs), batch_size):
        chunk = pairs[first : first + batch_size]
        batch = {k: v.to(device) for k, v in collate_pairs(chunk, pad_id).items()}
        logps = sequence_logps(model, batch).double().cpu()
        out.append(torch.stack([logps[: len(chunk)], logps[len(chunk) :]], dim=1))
    model.train(was_training)
    return torch.cat(out)


def pair_batches(pairs: list[dict], reference: torch.Tensor, pad_id: int, seed: int):
    """A ``loop.BatchSource``: sample ``i`` is pair ``order[i % N]``, each epoch a fresh seeded shuffle — a pure
    function of (pairs, seed, i), so a resumed run continues with exactly the batches it would have seen."""
    orders: dict[int, list[int]] = {}

    def order(epoch: int) -> list[int]:
        if epoch not in orders:
            indices = list(range(len(pairs)))
            random.Random(f"nemotron-dpo-{seed}-{epoch}").shuffle(indices)
            orders[epoch] = indices
        return orders[epoch]

    def batches(first: int, count: int) -> Batch:
        chosen = [order(i // len(pairs))[i % len(pairs)] for i in range(first, first + count)]
        batch = collate_pairs([pairs[i] for i in chosen], pad_id)
        batch["reference_logps"] = torch.cat([reference[chosen, 0], reference[chosen, 1]]).float()
        return batch

    return batches


def preference_metrics(logps: torch.Tensor, reference: torch.Tensor | None, beta: float) -> dict[str, float]:
    """Preference accuracy (logp(chosen) > logp(rejected)), mean log-prob margin and, against a reference, the mean
    implicit reward margin and reward accuracy."""
    margin = logps[:, 0] - logps[:, 1]
    metrics = {"accuracy": float((margin > 0).double().mean()), "logp_margin": float(margin.mean())}
    if reference is not None:
        reward_margin = beta * (margin - (reference[:, 0] - reference[:, 1]))
        metrics["reward_margin"] = float(reward_margin.mean())
        metrics["reward_accuracy"] = float((reward_margin > 0).double().mean())
    return metrics
