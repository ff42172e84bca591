"""The cluster options every command that submits SLURM jobs takes, in one vocabulary:

    --partition NAME   --gpus-per-job N   --cpus-per-job N   --time 4:00:00 | 240   --mem 16G

Declare them with the `Partition`, `GpusPerJob`, `CpusPerJob`, `TimeLimit` and `Memory` types
(shown under the "Cluster" panel of --help), and turn the values into the library's typed
record with `cluster_options(...)`:

    def command(..., partition: Partition = None, gpus_per_job: GpusPerJob = None,
                cpus_per_job: CpusPerJob = None, time_limit: TimeLimit = "240", mem: Memory = None):
        cluster = cluster_options(partition, gpus_per_job, cpus_per_job, time_limit, mem)
"""

from __future__ import annotations

import re
from typing import Annotated

import typer

from ddz.errors import ConfigError
from ddz.jobs.slurm import ClusterOptions

PANEL = "Cluster"

Partition = Annotated[
    str | None, typer.Option("--partition", help="SLURM partition.", rich_help_panel=PANEL)
]
GpusPerJob = Annotated[
    int | None, typer.Option("--gpus-per-job", help="SLURM GPUs per job.", rich_help_panel=PANEL)
]
CpusPerJob = Annotated[
    int | None,
    typer.Option("--cpus-per-job", help="SLURM CPUs (= torch threads) per job.", rich_help_panel=PANEL),
]
TimeLimit = Annotated[
    str, typer.Option("--time", help="SLURM time limit per job: minutes or H:MM:SS.", rich_help_panel=PANEL)
]
Memory = Annotated[
    str | None, typer.Option("--mem", help="SLURM memory per job, e.g. 16G or 16000M.", rich_help_panel=PANEL)
]


def parse_time(text: str) -> int:
    """SLURM-style time: MINUTES, H:MM[:SS] or D-H[:MM[:SS]] -> whole minutes (seconds round up)."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if match is None:
        raise ConfigError(f"bad --time {text!r}; use minutes (90), H:MM:SS (4:00:00) or D-HH (1-12)")
    days, first, second, third = match.groups()
    if days is None and second is None:
        return int(first)
    hours, minutes, seconds = int(first), int(second or 0), int(third or 0)
    return max(1, int(days or 0) * 1440 + hours * 60 + minutes + (1 if seconds else 0))


def parse_memory(text: str) -> float:
    """Memory with an optional unit (M, G, T; none means G) -> gigabytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([MGT]?)B?", text.strip(), flags=re.IGNORECASE)
    if match is None:
        raise ConfigError(f"bad --mem {text!r}; use gigabytes (16), or 16G / 16000M")
    value, unit = float(match[1]), match[2].upper()
    return value * {"M": 1 / 1024, "G": 1.0, "T": 1024.0, "": 1.0}[unit]


def cluster_options(partition: str | None = None, gpus_per_job: int | None = None,
                    cpus_per_job: int | None = None, time_limit: str = "240",
                    mem: str | None = None) -> ClusterOptions:
    """The options' texts as the typed record ddz.jobs submits with (one-line ConfigError on bad text)."""
    return ClusterOptions(partition, gpus_per_job, cpus_per_job, parse_time(time_limit),
                          parse_memory(mem) if mem else None)
