"""Before the first sbatch of a run: ask the cluster whether every job of it can start.

Two checks, both answered by the cluster, so a refusal costs nothing queued and names Slurm's own reason:
- ``sbatch --test-only`` with each job's real script (its upstream dependencies left out: those jobs do not exist
  yet). It refuses an unknown partition or account, more nodes than the partition has, and, where the cluster sets
  ``EnforcePartLimits``, a time or node count above the partition's limits.
- The partition table (one ``scontrol show partition --oneliner``): a cluster that does not enforce partition limits
  at submit accepts a job over ``MaxTime``/``MaxNodes`` and leaves it pending forever (``PartitionTimeLimit``);
  that is refused here too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nemotron.launcher.executors.base import ExecutorError

UNLIMITED = ("UNLIMITED", "INFINITE", "NONE", "")


@dataclass(frozen=True)
class Partition:
    name: str
    max_minutes: float | None  # None: no limit
    max_nodes: int | None
    default: bool


def slurm_minutes(text: str) -> float | None:
    """A Slurm time (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``) in minutes."""
    text = text.strip()
    if text.upper() in UNLIMITED:
        return None
    days, _, clock = text.rpartition("-")
    parts = [float(p) for p in clock.split(":")]
    if days:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = (parts + [0.0, 0.0])[:3]
        return float(days) * 1440 + hours * 60 + minutes + seconds / 60
    if len(parts) == 3:
        return parts[0] * 60 + parts[1] + parts[2] / 60
    if len(parts) == 2:
        return parts[0] + parts[1] / 60
    return parts[0]


def parse_partitions(text: str) -> dict[str, Partition]:
    """``scontrol show partition --oneliner`` output, by partition name."""
    found = {}
    for line in text.splitlines():
        fields = dict(word.split("=", 1) for word in line.split() if "=" in word)
        if "PartitionName" not in fields:
            continue
        nodes = fields.get("MaxNodes", "UNLIMITED")
        found[fields["PartitionName"]] = Partition(
            name=fields["PartitionName"],
            max_minutes=slurm_minutes(fields.get("MaxTime", "UNLIMITED")),
            max_nodes=None if nodes.upper() in UNLIMITED else int(nodes),
            default=fields.get("Default") == "YES",
        )
    return found


def check_partition_limits(job: str, params: Mapping, partitions: Mapping[str, Partition]) -> None:
    """A job over its partition's MaxTime/MaxNodes is refused here, whether or not the cluster would refuse it."""
    name = params.get("partition") or next((p.name for p in partitions.values() if p.default), None)
    partition = partitions.get(name or "")
    if partition is None:
        return  # unknown or no default partition: sbatch --test-only names that problem in Slurm's words
    minutes = slurm_minutes(params["time"]) if params.get("time") else None
    if partition.max_minutes is not None and minutes is not None and minutes > partition.max_minutes:
        raise ExecutorError(
            f"job {job} asks for --time={params['time']}, over partition {partition.name}'s MaxTime "
            f"({_clock(partition.max_minutes)}): set a shorter time in the profile's [steps] table; nothing submitted"
        )
    if partition.max_nodes is not None and params["nodes"] > partition.max_nodes:
        raise ExecutorError(
            f"job {job} asks for {params['nodes']} nodes, over partition {partition.name}'s MaxNodes "
            f"({partition.max_nodes}); nothing submitted"
        )


def preflight(run_command: Callable, scripts: Mapping[str, tuple[dict, str]]) -> None:
    """Check every job (name -> (sbatch parameters, script without dependencies)); raise on the first refusal."""
    listed = run_command(["scontrol", "show", "partition", "--oneliner"])
    partitions = parse_partitions(listed.stdout) if listed.returncode == 0 else {}
    for job, (params, script) in scripts.items():
        check_partition_limits(job, params, partitions)
        done = run_command(["sbatch", "--test-only"], input=script)
        if done.returncode != 0:
            # sbatch says it twice ("invalid partition specified: x", then "allocation failure: ..."): the first
            reason = sbatch_message(done.stderr or done.stdout).split("; ")[0].removeprefix("allocation failure: ")
            raise ExecutorError(f"Slurm refuses job {job}: {reason}; nothing submitted")


def sbatch_message(text: str) -> str:
    """Slurm's error output as one line."""
    lines = [line.removeprefix("sbatch: error: ").strip() for line in text.strip().splitlines() if line.strip()]
    return "; ".join(dict.fromkeys(lines)) or "no output"


def _clock(minutes: float) -> str:
    days, rest = divmod(int(minutes), 1440)
    return (f"{days}-" if days else "") + f"{rest // 60:02d}:{rest % 60:02d}:00"
