"""Scales: every recipe runs the same code at 1/10/30/100 % of its full-size data and compute."""

from __future__ import annotations

from typing import Literal

from nemotron.errors import UserError

Scale = Literal["tiny", "small", "medium", "full"]
SCALES: dict[str, float] = {"tiny": 0.01, "small": 0.10, "medium": 0.30, "full": 1.0}


class ScaleError(UserError, ValueError):
    pass


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ScaleError(f"unknown scale {scale!r}: valid scales are {', '.join(SCALES)}")
    return scale


def apply_scale(n: int, scale: str) -> int:
    """``n`` scaled down to ``scale`` (tiny 1 %, small 10 %, medium 30 %, full 100 %); never 0 when n >= 1."""
    fraction = SCALES[check_scale(scale)]
    if n < 0:
        raise ScaleError(f"cannot scale a negative count ({n})")
    if n == 0:
        return 0
    return max(1, round(n * fraction))
