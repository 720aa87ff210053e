"""The Docker executor's profile table, ``[docker]`` (it also reads ``[local]``: it runs the local executor's way)."""

from __future__ import annotations

from pydantic import Field

from nemotron.launcher.options import StrictModel


class DockerOptions(StrictModel):
    gpus: str | None = None  # "all", "2", "device=0,1"; None for CPU-only
    shm_size: str | None = "8g"
    ipc: str | None = "host"
    ulimits: dict[str, str] = Field(default_factory=lambda: {"memlock": "-1", "stack": "67108864"})
    extra_args: list[str] = Field(default_factory=list)


PROFILE_TABLES = {"docker": (DockerOptions, Field(default_factory=DockerOptions))}
