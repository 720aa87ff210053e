"""What every profile table is built from: strict, frozen models, and the allocation defaults a scheduler applies.

Executors own their options (``executors/*_options.py``) and build them from these; ``profiles`` assembles the
``Profile`` model from the tables the registered executors declare, so it names no executor itself.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

TIME_RE = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")


def check_time(value: str | None) -> str | None:
    if value is not None and not TIME_RE.match(value):
        raise ValueError(f"time {value!r} is not a Slurm time (D-HH:MM:SS, HH:MM:SS or MM)")
    return value


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AllocationDefaults(StrictModel):
    """What a scheduler that allocates nodes and GPUs gives a step when the profile's ``[steps...]`` tables do not
    say (``resources.scheduled_resources``): the cluster's node shape, a default time limit, partitions by class."""

    partitions: dict[str, str] = Field(default_factory=dict)  # resource class (cpu|gpu) -> partition
    nodes: int | None = Field(default=None, ge=1)
    gpus_per_node: int | None = Field(default=None, ge=0)
    cpus_per_task: int | None = Field(default=None, ge=1)
    mem: str | None = None  # e.g. "0" (all), "64G"
    time: str | None = None  # D-HH:MM:SS / HH:MM:SS / MM

    @field_validator("partitions")
    @classmethod
    def _known_classes(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key not in ("cpu", "gpu"):
                raise ValueError(f"partitions key {key!r} is not a resource class: use cpu or gpu")
        return value

    @field_validator("time")
    @classmethod
    def _time_format(cls, value: str | None) -> str | None:
        return check_time(value)
