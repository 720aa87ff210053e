"""The Slurm executor's profile tables: ``[slurm]`` (its ``[slurm.pyxis]``) and ``[ssh]`` (remote submission)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from nemotron.launcher.options import AllocationDefaults, StrictModel

SIGNAL_RE = re.compile(r"^(B:)?[A-Z0-9]+(@\d+)?$")


class PyxisOptions(StrictModel):
    mount_home: bool = False  # --no-container-mount-home unless true
    workdir: str | None = None  # --container-workdir (default: the code directory in the image)
    extra_args: list[str] = Field(default_factory=list)


class SlurmOptions(AllocationDefaults):
    account: str | None = None
    exclusive: bool = False
    qos: str | None = None
    reservation: str | None = None
    constraint: str | None = None
    sbatch_args: list[str] = Field(default_factory=list)
    srun_args: list[str] = Field(default_factory=list)
    container_runtime: Literal["pyxis", "none", "docker"] = "none"
    pyxis: PyxisOptions = Field(default_factory=PyxisOptions)
    signal: str | None = "USR1@120"  # sent before the time limit; training checkpoints and exits 75

    @field_validator("signal")
    @classmethod
    def _signal_format(cls, value: str | None) -> str | None:
        if value is not None and not SIGNAL_RE.match(value):
            raise ValueError(f"signal {value!r} is not a Slurm --signal value like USR1@120 or B:USR1@120")
        return value


class SSHOptions(StrictModel):
    """Remote submission: ship the code to ``remote_dir`` on ``host`` and run sbatch there."""

    host: str
    user: str | None = None
    port: int = 22
    key: str | None = None  # path of the private key (the key itself never goes in a profile)
    remote_dir: str = "~/.cache/nemotron/code"
    options: list[str] = Field(default_factory=list)  # extra `ssh -o` options, e.g. "UserKnownHostsFile=..."


PROFILE_TABLES = {"slurm": (SlurmOptions, Field(default_factory=SlurmOptions)), "ssh": (SSHOptions | None, None)}
