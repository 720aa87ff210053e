"""Checks shared by every evaluation step's validate (light: no torch, no lm_eval; run at plan time and at start)."""

from __future__ import annotations

from nemotron.errors import UserError


def check_sizes(limit: int | None, batch_size: int, max_new_tokens: int = 1) -> None:
    """Refuse a non-positive ``--limit``/``--batch-size``/``--max-new-tokens``, naming the flag.

    An evaluation step's ``validate`` calls this: the launcher runs it when it plans, so a bad ``evaluation.limit``
    is refused before training is submitted rather than after it ran.
    """
    if limit is not None and limit < 1:
        raise UserError(f"--limit {limit}: must be a positive number of items (or unset for all)")
    for flag, value in (("--batch-size", batch_size), ("--max-new-tokens", max_new_tokens)):
        if value < 1:
            raise UserError(f"{flag} {value}: must be at least 1")
