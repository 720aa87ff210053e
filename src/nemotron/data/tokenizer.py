"""Byte-level BPE tokenizers (HF ``tokenizers``): trained on the train split, or loaded from a ``tokenizer.json``.

Byte-level means every string is encodable (no unknown token) and words carry their leading space (``" Paris"``),
which is what loglikelihood scoring of ``" " + choice`` after a query relies on.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from nemotron.errors import UserError

EOD_TOKEN = "<|endoftext|>"


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE on ``texts`` (streamed); ``<|endoftext|>`` is id 0. Vocab may end below ``vocab_size``
    when the corpus has fewer distinct merges to make."""
    if vocab_size < 257:
        raise UserError(f"vocab_size {vocab_size} is too small: a byte-level BPE needs at least 257 (256 bytes + EOD)")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def load_tokenizer(path: Path) -> Tokenizer:
    """A ``tokenizer.json`` that must define ``<|endoftext|>``; bad paths and files are a one-line ``UserError``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"tokenizer {str(path)!r} does not exist: give a tokenizer.json file (HF tokenizers format)")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on malformed files
        raise UserError(f"tokenizer {str(path)!r} is not a valid tokenizer.json ({str(exc).splitlines()[0]})") from None
    if tokenizer.token_to_id(EOD_TOKEN) is None:
        raise UserError(f"tokenizer {str(path)!r} has no {EOD_TOKEN} token: add it as a special token")
    return tokenizer


def eod_id(tokenizer: Tokenizer) -> int:
    return tokenizer.token_to_id(EOD_TOKEN)
