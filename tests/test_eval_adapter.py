"""The lm-eval adapter against one-sequence-at-a-time computations with a real (tiny, trained) causal LM."""

from __future__ import annotations

import math

import pytest
from eval_toy import EOD

torch = pytest.importorskip("torch")
from lm_eval.api.instance import Instance  # noqa: E402

from nemotron.evaluation.adapter import CausalLMAdapter  # noqa: E402


def _requests(kind: str, args_list: list[tuple]) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=args, idx=i) for i, args in enumerate(args_list)]


@pytest.fixture(scope="module")
def adapter(toy_world):
    _, tokenizer, model, max_length = toy_world
    return CausalLMAdapter(model, tokenizer, max_length=max_length, batch_size=3)


def _reference_logprob(model, tokens: list[int], n_targets: int) -> tuple[float, bool]:
    """log P of the last ``n_targets`` tokens given the rest, computed on this one sequence alone."""
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([tokens[:-1]])), dim=-1)[0]
    targets = torch.tensor(tokens[-n_targets:])
    picked = logprobs[len(tokens) - 1 - n_targets :]
    return picked.gather(1, targets[:, None]).sum().item(), bool((picked.argmax(-1) == targets).all())


def test_loglikelihood_matches_unbatched_reference(adapter, toy_world):
    _, tokenizer, model, _ = toy_world
    pairs = [("Alice lives in", " Paris"), ("Bob lives in", " Oslo"), ("The home of Carol", " is Oslo."), ("", "Hi")]
    pairs += [("Dan lives in ", "Lima")]  # trailing space in the context moves to the continuation
    got = adapter.loglikelihood(_requests("loglikelihood", pairs))
    eod = tokenizer.token_to_id(EOD)
    for (context, continuation), (logprob, greedy) in zip(pairs, got, strict=True):
        context, continuation = context.rstrip(" "), continuation if not context.endswith(" ") else " " + continuation
        n_context = len(tokenizer.encode(context).ids)
        whole = [eod, *tokenizer.encode(context + continuation).ids]
        want_logprob, want_greedy = _reference_logprob(model, whole, len(whole) - 1 - n_context)
        assert logprob == pytest.approx(want_logprob, abs=1e-4)
        assert greedy == want_greedy
    # The trained model knows the toy world: the true city is both likelier and the greedy continuation.
    assert got[0][1] and got[0][0] > got[1][0]


def test_batching_does_not_change_scores(toy_world):
    _, tokenizer, model, max_length = toy_world
    pairs = [(f"{name} lives in", f" {city}") for name in ("Alice", "Heidi", "Frank") for city in ("Paris", "Lima")]
    one = CausalLMAdapter(model, tokenizer, max_length, batch_size=1).loglikelihood(_requests("loglikelihood", pairs))
    many = CausalLMAdapter(model, tokenizer, max_length, batch_size=8).loglikelihood(_requests("loglikelihood", pairs))
    for (a, ga), (b, gb) in zip(one, many, strict=True):
        assert a == pytest.approx(b, abs=1e-4) and ga == gb


def test_rolling_scores_every_token_once_even_past_the_context_length(adapter, toy_world):
    _, tokenizer, model, max_length = toy_world
    short = "Alice lives in Paris."
    long = " ".join(["Bob lives in Rome."] * 12)  # longer than max_length tokens: several windows
    assert len(tokenizer.encode(long).ids) > 2 * max_length
    got_short, got_long = adapter.loglikelihood_rolling(_requests("loglikelihood_rolling", [(short,), (long,)]))
    tokens = [tokenizer.token_to_id(EOD), *tokenizer.encode(short).ids]
    assert got_short == pytest.approx(_reference_logprob(model, tokens, len(tokens) - 1)[0], abs=1e-4)
    # Every token is predicted once, from at most max_length tokens before it (the last window keeps a full context).
    full = [tokenizer.token_to_id(EOD), *tokenizer.encode(long).ids]
    manual = 0.0
    for start in range(0, len(full) - 1, max_length):
        end = min(start + max_length, len(full) - 1)
        manual += _reference_logprob(model, full[max(0, end - max_length) : end + 1], end - start)[0]
    assert got_long == pytest.approx(manual, abs=1e-3)
    assert math.isfinite(got_long) and got_long < 0


def test_greedy_generation_matches_a_manual_argmax_loop_and_stops(adapter, toy_world):
    _, tokenizer, model, _ = toy_world
    eod = tokenizer.token_to_id(EOD)
    prompts = ["The home of Alice is", "The home of Grace is", "Bob"]
    requests = _requests("generate_until", [(p, {"until": ["."], "max_gen_toks": 6}) for p in prompts])
    got = adapter.generate_until(requests)
    for prompt, text in zip(prompts, got, strict=True):
        tokens = [eod, *tokenizer.encode(prompt).ids]
        generated: list[int] = []
        for _ in range(6):
            with torch.no_grad():
                token = int(model(torch.tensor([tokens + generated]))[0, -1].argmax())
            if token == eod:
                break
            generated.append(token)
            if "." in tokenizer.decode(generated):
                break
        assert text == tokenizer.decode(generated).split(".")[0]
        assert "." not in text
    assert got[:2] == [" Paris", " Oslo"]


def test_sampling_is_refused(adapter):
    with pytest.raises(ValueError, match="greedy"):
        adapter.generate_until(_requests("generate_until", [("Bob", {"until": ["."], "do_sample": True})]))
