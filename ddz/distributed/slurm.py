"""`--launcher slurm`: one SLURM job of nodes x tasks-per-node tasks through submitit, each task
one rank of the same ddz command.

Every task turns SLURM's description of itself (submitit's JobEnvironment: global rank, local
rank, number of tasks, node names) into torchrun's environment and runs `python -m ddz ARGS`. The
group meets on the first node (127.0.0.1 when the job has one node, so gloo stays on the loopback
interface) at a port chosen when the job is submitted. The submitting process waits for the job.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ddz.distributed.local import describe_exit, free_port, rank_environment
from ddz.distributed.ranks import TIMED_OUT, RankFailure
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
    rank = subprocess.Popen([sys.executable, "-m", "ddz", *argv], env=env, stderr=subprocess.PIPE, text=True,
                            errors="replace")
    last = ""
    for line in rank.stderr:  # into the task's log as it comes; the last line says why it ended
        sys.stderr.write(line)
        sys.stderr.flush()
        last = line.strip() or last
    status = rank.wait()
    if status != 0:
        said = last or "(nothing)"
        raise RuntimeError(f"rank {job.global_rank} {describe_exit(status)}; its last line: {said}")
    return status


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
        # A rank that fails (one whose collective timed out, say) ends the job's other tasks too:
        # a rank that hangs would otherwise hold the job until --time.
        return slurm_executor(folder / "%j", "ddz-ranks", options, nodes=self.nodes,
                              tasks_per_node=self.tasks_per_node, slurm_srun_args=["--kill-on-bad-exit=1"])

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
            raise RankFailure(_blame(str(job.job_id), self.world, failures))
        return SlurmDone(str(job.job_id), self.world, job.task(0).paths.stdout)


OWN_ERROR = "RuntimeError: rank "  # how run_rank_task's error reads in submitit's traceback


def _blame(job_id: str, world: int, failures: list[tuple[int, BaseException, Any]]) -> str:
    """One line for a failed job. When every rank that ended by itself timed out in a collective,
    a rank that SLURM had to end (srun --kill-on-bad-exit) is the one that never answered."""
    said = {rank: _last_line(error) for rank, error, _ in failures}
    paths = {rank: task_paths for rank, _, task_paths in failures}
    own = {r for r, line in said.items() if line.startswith(OWN_ERROR)}  # run_rank_task's own line
    # Ended from outside: no result of its own, or its process killed (srun's SIGTERM, then SIGKILL).
    ended = [r for r in said if r not in own or "was killed by" in said[r]]
    waited = [r for r in said if r not in ended]
    again = "run the same command again to resume from the last checkpoint"
    if waited and ended and all(TIMED_OUT in said[r] for r in waited):
        return (f"slurm job {job_id}: rank {ended[0]} of {world} hung: it did not answer the other ranks "
                f"within --dist-timeout, and SLURM ended it when they gave up; its last line: "
                f"{_rank_line(paths[ended[0]])}; {again}")
    # The cause first: a rank that failed by itself for another reason than waiting, then one that
    # SLURM ended (memory, time), then one that only timed out waiting.
    rank = min(said, key=lambda r: (1 if r in ended else 2 if TIMED_OUT in said[r] else 0, r))
    if rank in own:
        return f"slurm job {job_id}: {said[rank].removeprefix('RuntimeError: ')}; {again}"
    return (f"slurm job {job_id}: rank {rank} of {world} failed ({said[rank]}); its last line: "
            f"{_rank_line(paths[rank])}; {again}")


def _rank_line(paths: Any) -> str:
    """The last progress or error line the rank wrote into its task's log (ranks other than 0
    report progress as `rank N: ...` lines; srun's, slurmstepd's and submitit's lines are not
    the rank's)."""
    for path in (paths.stderr, paths.stdout):
        for line in reversed((log_tail(path, 200) or "").splitlines()):
            if line.startswith(("rank ", "error: ")):
                return line.strip()
    return "(it printed nothing)"


def _last_line(error: BaseException) -> str:
    """The reason in submitit's error, which wraps the task's traceback (and ends with the paths of
    its logs): the traceback's last `SomeError: ...` line, else the error's first line."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"[\w.]*(Error|Exception|Interrupt)\b", line)]
    if raised:
        return raised[-1]
    return lines[0] if lines else type(error).__name__
