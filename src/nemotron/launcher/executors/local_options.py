"""The local executor's profile table, ``[local]``."""

from __future__ import annotations

from pydantic import Field

from nemotron.launcher.options import StrictModel


class LocalOptions(StrictModel):
    nproc_per_node: int = Field(default=1, ge=1)  # processes of a distributed step (torchrun when > 1)


PROFILE_TABLES = {"local": (LocalOptions, Field(default_factory=LocalOptions))}
