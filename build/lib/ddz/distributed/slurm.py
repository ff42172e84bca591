"""`--launcher slurm`: one SLURM job of nodes x tasks-per-node tasks through submitit, each task
one rank of the same ddz command.

Every task turns SLURM's description of itself (submitit's JobEnvironment: global rank, local
rank, number of tasks, node names) into torchrun's environment and runs `python -m ddz ARGS`. The
group meets on the first node (127.0.0.1 when the job has one node, so gloo stays on the loopback
interface) at a port chosen when the job is submitted. The submitting process waits for the job.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ddz.distributed.local import describe_exit, free_port, rank_environment
from ddz.distributed.ranks import RankFailure
from ddz.errors import ConfigError, first_line
from ddz.jobs import ClusterOptions, log_tail, slurm_cpus, slurm_executor


def run_rank_task(argv: list[str], port: int) -> int:
    """The body of one SLURM task: this task's rank of `ddz argv`."""
    import submitit

    job = submitit.JobEnvironment()
    master = "127.0.0.1" if job.num_nodes == 1 else job.hostnames[0]
    threads = slurm_cpus() or 1
    env = rank_environment(dict(os.environ), job.global_rank, job.num_tasks, port, threads, master)
    env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"] = str(job.local_rank), str(job.num_tasks // job.num_nodes)
    done = subprocess.run([sys.executable, "-m", "ddz", *argv], env=env)
    if done.returncode != 0:
        raise RuntimeError(f"rank {job.global_rank} {describe_exit(done.returncode)}")
    return done.returncode


@dataclass(frozen=True)
class SlurmDone:
    job_id: str
    world: int
    log: Path


@dataclass(frozen=True)
class SlurmRanks:
    """One job of `nodes` x `tasks_per_node` ranks (on GPUs: one per GPU)."""

    nodes: int = 1
    tasks_per_node: int = 1
    gpus_per_node: int = 0
    partition: str | None = None
    time_min: int = 240
    mem_gb: float | None = None
    cpus_per_task: int | None = None
    jobs_root: Path = Path("jobs")  # the job's folder (submitit's files, logs) goes under it

    @property
    def world(self) -> int:
        return self.nodes * self.tasks_per_node

    def __post_init__(self) -> None:
        for name in ("nodes", "tasks_per_node", "time_min"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.gpus_per_node < 0:
            raise ConfigError(f"--gpus-per-node must be >= 0, got {self.gpus_per_node}")

    def executor(self, folder: Path) -> Any:
        options = ClusterOptions(self.partition, self.gpus_per_node or None, self.cpus_per_task,
                                 self.time_min, self.mem_gb)
        return slurm_executor(folder / "%j", "ddz-ranks", options, nodes=self.nodes,
                              tasks_per_node=self.tasks_per_node)

    def run(self, argv: list[str] | tuple[str, ...]) -> SlurmDone:
        """Submit the job and wait for it; RankFailure names the first rank that failed."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        folder = self.jobs_root / f"ranks-{stamp}-{os.getpid()}"
        try:
            job = self.executor(folder).submit(run_rank_task, list(argv), free_port())
        except ConfigError:
            raise
        except Exception as error:  # sbatch refusals (bad partition, limits) come in several types
            raise ConfigError(f"sbatch refused the job: {first_line(error)}") from None
        failures = []
        for rank in range(self.world):
            task = job.task(rank)
            try:
                task.result()
            except Exception as error:  # submitit re-raises the task's error, or reports it lost
                failures.append((rank, error, task.paths))
        if failures:
            rank, error, paths = failures[0]
            last = log_tail(paths.stderr, 1) or log_tail(paths.stdout, 1) or "(it printed nothing)"
            raise RankFailure(
                f"slurm job {job.job_id}: rank {rank} of {self.world} failed ({_last_line(error)}); "
                f"its last line: {last}; run the same command again to resume from the last checkpoint"
            )
        return SlurmDone(str(job.job_id), self.world, job.task(0).paths.stdout)


def _last_line(error: BaseException) -> str:
    """submitit's error carries the task's whole traceback; its last line is the reason."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
