"""Our language models seen through lm-eval's eyes: a ``forward(tokens) -> logits`` function plus a tokenizer.

``CausalLMAdapter`` implements the three request types of ``lm_eval.api.model.LM``:

- ``loglikelihood``: log P(continuation | context), and whether greedy decoding would produce the continuation;
- ``loglikelihood_rolling``: the log-likelihood of a whole document, in windows of the model's context length;
- ``generate_until``: greedy decoding until a stop string, the end-of-document token or ``max_gen_toks``.

Requests are batched: sorted by length (so a batch pads little), right-padded with the EOD token (a causal model's
logits at position t never see positions > t, so padding on the right changes nothing that is read), scored in one
forward pass per batch, and returned in the order lm-eval asked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from lm_eval.api.model import LM
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tokenizers import Tokenizer

from nemotron.log import get_logger, progress

Forward = Callable[[torch.Tensor], torch.Tensor]  # LongTensor[B, T] -> FloatTensor[B, T, V]
TokenPair = tuple[list[int], list[int]]  # (context ids, continuation ids)

log = get_logger(__name__)

EOD_TOKEN = "<|endoftext|>"
DEFAULT_MAX_GEN_TOKS = 32


class CausalLMAdapter(LM):
    """lm-eval model over any causal LM given as ``forward`` (no KV cache: evaluation models here are small)."""

    def __init__(
        self,
        forward: Forward,
        tokenizer: Tokenizer,
        max_length: int,
        batch_size: int = 32,
        eod_token: str = EOD_TOKEN,
    ) -> None:
        super().__init__()
        eod_id = tokenizer.token_to_id(eod_token)
        if eod_id is None:
            raise ValueError(f"tokenizer has no end-of-document token {eod_token!r}")
        if max_length < 2 or batch_size < 1:
            raise ValueError(f"need max_length >= 2 and batch_size >= 1, got {max_length} and {batch_size}")
        self._forward = forward
        self.tokenizer = tokenizer
        self.eod_id = eod_id
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.max_length = max_length
        self.batch_size = batch_size

    # ------------------------------------------------------------------------------------------- tokens
    def tok_encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def tok_decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def _encode_pair(self, context: str, continuation: str) -> TokenPair:
        """Tokenize context+continuation together (BPE merges across the boundary as in training), then split."""
        # A trailing space belongs to the continuation: byte-level BPE glues spaces to the following word.
        stripped = len(context) - len(context.rstrip(" "))
        if stripped:
            context, continuation = context[:-stripped], context[-stripped:] + continuation
        whole = self.tok_encode(context + continuation)
        context_ids = self.tok_encode(context)
        # Documents start after an EOD token in training (they are packed EOD-separated), so requests do too.
        return [self.eod_id, *whole[: len(context_ids)]], whole[len(context_ids) :]

    # ------------------------------------------------------------------------------------------- scoring
    @torch.no_grad()
    def _logprobs(self, sequences: list[list[int]]) -> torch.Tensor:
        """log-softmax over the vocabulary for a right-padded batch: FloatTensor[B, T, V]."""
        width = max(len(s) for s in sequences)
        batch = torch.full((len(sequences), width), self.eod_id, dtype=torch.long)
        for row, seq in enumerate(sequences):
            batch[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        logits = self._forward(batch).float()
        # Megatron pads the output layer's vocabulary (to a multiple of 128): ids past the tokenizer's are never text.
        return torch.log_softmax(logits[..., : self.vocab_size], dim=-1)

    def score_tokens(self, pairs: Sequence[TokenPair], description: str = "scoring") -> list[tuple[float, bool]]:
        """(sum log P(continuation | context), continuation is the greedy one) for each token pair, batched."""
        inputs = []
        for context, continuation in pairs:
            if not continuation or not context:
                raise ValueError("scoring needs at least one context token and one continuation token")
            # Keep the continuation and as much context as fits; the last token is only ever a target.
            tokens = (context + continuation)[-(self.max_length + 1) :]
            n_targets = min(len(continuation), len(tokens) - 1)
            inputs.append((tokens[:-1], tokens[-n_targets:]))
        order = sorted(range(len(inputs)), key=lambda i: -len(inputs[i][0]))
        results: list[tuple[float, bool]] = [(0.0, False)] * len(inputs)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in progress(batches, description):
            logprobs = self._logprobs([inputs[i][0] for i in batch])
            for row, i in enumerate(batch):
                tokens, targets = inputs[i]
                picked = logprobs[row, len(tokens) - len(targets) : len(tokens)]  # [n_targets, V]
                target_ids = torch.tensor(targets, dtype=torch.long)
                logprob = picked.gather(1, target_ids[:, None]).sum().item()
                greedy = bool((picked.argmax(dim=-1) == target_ids).all())
                results[i] = (logprob, greedy)
        return results

    # ------------------------------------------------------------------------------------------- lm-eval API
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [self._encode_pair(*request.args) for request in requests]
        return self.score_tokens(pairs, "loglikelihood")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Each document scored token by token, every token predicted once, conditioned on the EOD prefix."""
        windows: list[TokenPair] = []
        owner: list[int] = []
        for index, request in enumerate(requests):
            (text,) = request.args
            for window in get_rolling_token_windows(
                token_list=self.tok_encode(text),
                prefix_token=self.eod_id,
                max_seq_len=self.max_length,
                context_len=1,
            ):
                windows.append(make_disjoint_window(window))
                owner.append(index)
        totals = [0.0] * len(requests)
        for index, (logprob, _) in zip(owner, self.score_tokens(windows, "loglikelihood_rolling"), strict=True):
            totals[index] += logprob
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        outputs: list[str] = [""] * len(requests)
        groups: dict[tuple[tuple[str, ...], int], list[int]] = {}
        for index, request in enumerate(requests):
            _, gen_kwargs = request.args
            groups.setdefault(_stopping_rule(gen_kwargs), []).append(index)
        for (until, max_gen_toks), indices in groups.items():
            indices.sort(key=lambda i: -len(requests[i].args[0]))
            batches = [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
            for batch in progress(batches, "generate_until"):
                contexts = [requests[i].args[0] for i in batch]
                for i, text in zip(batch, self.greedy_generate(contexts, until, max_gen_toks), strict=True):
                    outputs[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return outputs

    @torch.no_grad()
    def greedy_generate(self, contexts: Sequence[str], until: Sequence[str], max_gen_toks: int) -> list[str]:
        """Greedy continuations of a batch of prompts, cut at the first stop string (which is not included)."""
        keep = max(1, self.max_length - max_gen_toks)
        sequences = [[self.eod_id, *self.tok_encode(c)][-keep:] for c in contexts]
        generated: list[list[int]] = [[] for _ in contexts]
        done = [False] * len(contexts)
        for _ in range(max_gen_toks):
            windows = [(seq + gen)[-self.max_length :] for seq, gen in zip(sequences, generated, strict=True)]
            logprobs = self._logprobs(windows)
            for row, window in enumerate(windows):
                if done[row]:
                    continue
                token = int(logprobs[row, len(window) - 1].argmax())
                if token == self.eod_id:
                    done[row] = True
                    continue
                generated[row].append(token)
                done[row] = any(stop in self.tok_decode(generated[row]) for stop in until)
            if all(done):
                break
        return [_cut_at_stop(self.tok_decode(gen), until) for gen in generated]


def _stopping_rule(gen_kwargs: dict) -> tuple[tuple[str, ...], int]:
    """(stop strings, max new tokens) from lm-eval's generation kwargs; only greedy decoding is offered."""
    if gen_kwargs.get("do_sample"):
        raise ValueError("only greedy generation is supported (do_sample: false)")
    until = gen_kwargs.get("until") or []
    until = [until] if isinstance(until, str) else list(until)
    return tuple(until), int(gen_kwargs.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS))


def _cut_at_stop(text: str, until: Sequence[str]) -> str:
    cut = min((text.find(stop) for stop in until if stop and stop in text), default=len(text))
    return text[:cut]
