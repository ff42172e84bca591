"""What `ddz distill` and `ddz eval` share to run over several ranks: start them (--nproc on this
machine, --launcher slurm as one SLURM job) or, inside a rank (torchrun's environment), join the
process group; and the plain-line progress of the ranks that do not draw bars."""

from __future__ import annotations

import atexit
import os
import sys
from dataclasses import dataclass
from typing import Any

import typer

from ddz.cli.common import format_fields, settings

NPROC_HELP = "Ranks to start on this machine (classes or eval models sharded over them); not under torchrun."
TIMEOUT_HELP = "Seconds a rank waits in a collective before it gives up (a rank died or hangs)."


@dataclass(frozen=True)
class RankOptions:
    nproc: int = 1
    dist_timeout: float = 300.0
    launcher: str = "local"
    nodes: int = 1
    gpus_per_node: int = 0
    partition: str | None = None
    time_min: int = 240
    mem_gb: float | None = None
    cpus_per_task: int | None = None

    def __post_init__(self) -> None:
        from ddz.errors import ConfigError

        if self.nproc < 1:
            raise ConfigError(f"--nproc must be at least 1, got {self.nproc}")
        if self.dist_timeout <= 0:
            raise ConfigError(f"--dist-timeout must be positive, got {self.dist_timeout}")


def _forward(stream: str, line: str) -> None:
    print(line, file=sys.stdout if stream == "stdout" else sys.stderr, flush=True)


# What torchrun (and ddz's own launchers) put in every rank's environment.
RANK_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def in_rank_environment() -> bool:
    """True in a process that torchrun (or a ddz launcher) started as one rank of several."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def join_from_environment(timeout_s: float, device: str) -> Any:
    """Join the group that torchrun's variables describe."""
    from ddz.distributed.local import LOOPBACK
    from ddz.distributed.ranks import join
    from ddz.errors import ConfigError

    missing = [name for name in RANK_ENV if not os.environ.get(name)]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE is set but {', '.join(missing)} is not: start ranks with torchrun or ddz --nproc"
        )
    if os.environ["MASTER_ADDR"] in LOOPBACK:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # gloo would otherwise bind the hostname's address
    return join(
        int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]), timeout_s, device, int(os.environ.get("LOCAL_RANK", "0")),
    )


def start_or_join(options: RankOptions) -> Any:
    """The Ranks this process belongs to, or None when it started the ranks itself and they have
    finished (the command is then done). Exits with status 2 when rank 0 reported bad input."""
    from ddz.distributed.ranks import rank_device

    if in_rank_environment():
        settings.use_threads()  # --threads, else the launcher's OMP_NUM_THREADS
        ranks = join_from_environment(options.dist_timeout, settings.torch_device)
        atexit.register(ranks.close)
        settings.device = rank_device(settings.torch_device, ranks)
        return ranks
    if options.launcher == "slurm":
        from ddz.cli.common import console
        from ddz.distributed.slurm import SlurmRanks

        slurm = SlurmRanks(
            nodes=options.nodes, tasks_per_node=options.gpus_per_node or options.nproc,
            gpus_per_node=options.gpus_per_node, partition=options.partition, time_min=options.time_min,
            mem_gb=options.mem_gb, cpus_per_task=options.cpus_per_task, jobs_root=settings.zoo().paths.jobs,
        )
        done = slurm.run(settings.argv)
        console.print(f"slurm job {done.job_id}: {done.world} ranks finished; rank 0's log: {done.log}",
                      markup=False, highlight=False, soft_wrap=True)
        return None
    if options.launcher != "local":
        from ddz.errors import ConfigError, unknown_name

        raise ConfigError(unknown_name("launcher", options.launcher, ("local", "slurm")))
    if options.nproc == 1:
        from ddz.distributed.ranks import SINGLE

        settings.use_threads()
        return SINGLE
    from ddz.distributed.local import LocalRanks

    status = LocalRanks(options.nproc, settings.threads).run(settings.argv, _forward)
    if status:
        raise typer.Exit(status)
    return None


class _LineTask:
    def __init__(self, rank: int, description: str, total: int | None):
        self.rank, self.description, self.total, self.done = rank, description, total, 0
        self.every = max(1, (total or 0) // 10)

    def advance(self, steps: int = 1, **fields: Any) -> None:
        self.done += steps
        if self.done % self.every == 0:
            shown = format_fields(fields)
            print(f"rank {self.rank}: {self.description} {self.done}/{self.total} {shown}".rstrip(),
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class LineProgress:
    """Progress of a rank other than 0: about ten plain lines per task on stderr (what the
    launcher quotes as the rank's last line if it dies)."""

    def __init__(self, rank: int):
        self.rank = rank

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def task(self, description: str, total: int | None) -> _LineTask:
        return _LineTask(self.rank, description, total)
