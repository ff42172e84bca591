"""SLURM through submitit: what a job asks for (`ClusterOptions`), the executor every ddz
submission uses, and the backend that runs one SLURM job per `Work` and watches the queue."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddz.errors import ConfigError, first_line
from ddz.jobs.work import LOG_TAIL_LINES, Ended, Handle, Work, log_tail, prepare_status, read_status

QUEUE_CHECK_S = 3.0  # how often squeue is asked
MISSING_GRACE_S = 8.0  # how long a status file may take to appear after its job left the queue


@dataclass(frozen=True)
class ClusterOptions:
    """What each SLURM job asks for: the CLI's --partition, --gpus-per-job, --cpus-per-job,
    --time and --mem (None: the site's default)."""

    partition: str | None = None
    gpus_per_job: int | None = None
    cpus_per_job: int | None = None
    time_min: int = 240
    mem_gb: float | None = None

    def __post_init__(self) -> None:
        if self.time_min < 1:
            raise ConfigError(f"--time must be at least 1 minute, got {self.time_min}")
        if self.gpus_per_job is not None and self.gpus_per_job < 0:
            raise ConfigError(f"--gpus-per-job must be at least 0, got {self.gpus_per_job}")
        if self.cpus_per_job is not None and self.cpus_per_job < 1:
            raise ConfigError(f"--cpus-per-job must be at least 1, got {self.cpus_per_job}")
        if self.mem_gb is not None and not self.mem_gb > 0:
            raise ConfigError(f"--mem must be more than 0, got {self.mem_gb} GB")

    def executor_parameters(self) -> dict[str, Any]:
        """submitit's names for these options (those left at None are not sent)."""
        optional = {"slurm_partition": self.partition, "gpus_per_node": self.gpus_per_job,
                    "cpus_per_task": self.cpus_per_job, "mem_gb": self.mem_gb}
        return {"timeout_min": self.time_min, **{k: v for k, v in optional.items() if v is not None}}


def slurm_submitit() -> Any:
    """The submitit module, once it and sbatch are known to be there (else one-line ConfigError)."""
    try:
        import submitit
    except ImportError:
        raise ConfigError(
            "--launcher slurm needs submitit; install it with pip install 'ddz[slurm]'"
        ) from None
    if shutil.which("sbatch") is None:
        raise ConfigError("--launcher slurm needs sbatch on PATH; run from a SLURM login node")
    return submitit


def slurm_executor(folder: Path, name: str, options: ClusterOptions, **parameters: Any) -> Any:
    """A submitit executor writing under `folder` (may hold %j); jobs get this interpreter's
    environment (DDZ_HOME, the venv) whatever the site's default. `parameters`: more of
    submitit's, e.g. nodes and tasks_per_node."""
    executor = slurm_submitit().AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(
        name=name, slurm_additional_parameters={"export": "ALL"}, **options.executor_parameters(),
        **parameters,
    )
    return executor


def slurm_cpus() -> int | None:
    """The CPUs SLURM gave this task (None outside SLURM)."""
    return int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0) or None


# What slurmstepd writes into a job's log when it kills the job, and what that means for the user.
_KILLS = (
    (("Exceeded job memory limit", "exceeded memory limit", "oom_kill event", "OOM Killed"),
     "was killed for using more memory than --mem allows; run again with a larger --mem"),
    (("DUE TO TIME LIMIT",), "was killed at its time limit; run again with a longer --time"),
)


def gone_reason(job_id: str, tail: str | None) -> str:
    """Why a SLURM job left the queue without a result, as far as its log tells."""
    for marks, said in _KILLS:
        if tail and any(mark in tail for mark in marks):
            return f"slurm job {job_id} {said}"
    return f"slurm job {job_id} ended without a result (killed, timed out or failed to start)"


class SlurmJobs:
    """One SLURM job per work, named `name`; submitit's files go under FOLDER/slurm/<job id>."""

    def __init__(self, folder: Path, options: ClusterOptions, name: str):
        self.executor = slurm_executor(Path(folder) / "slurm" / "%j", name, options)
        self.queue_checked = 0.0
        self.queued: set[str] = set()

    def start(self, work: Work, slot: int) -> Handle:
        prepare_status(work)
        try:
            submitted = self.executor.submit(work.function, *work.args)
        except Exception as error:  # noqa: BLE001 - sbatch refusals (bad partition, limits) come in several types
            return Handle(work, error=f"sbatch refused the job: {first_line(error)}")
        self.queued.add(str(submitted.job_id))
        return Handle(work, slurm_job=submitted)

    def _refresh_queue(self) -> None:
        if time.monotonic() - self.queue_checked < QUEUE_CHECK_S:
            return
        self.queue_checked = time.monotonic()
        try:
            listed = subprocess.run(
                ["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.split()
        except (subprocess.SubprocessError, OSError):
            return  # the controller is busy or unreachable: ask again later
        self.queued = set(listed)

    def finished(self, handle: Handle) -> bool:
        if handle.slurm_job is None or handle.work.status.exists():
            return True
        self._refresh_queue()
        if str(handle.slurm_job.job_id) in self.queued:
            handle.missing_since = None
            return False
        # Gone from the queue without a status file: killed, timed out or never started. Give a
        # status file still on its way through a shared file system a few seconds.
        if handle.missing_since is None:
            handle.missing_since = time.monotonic()
        return time.monotonic() - handle.missing_since > MISSING_GRACE_S

    def ended(self, handle: Handle) -> Ended:
        if handle.slurm_job is None:
            return Ended(handle.work, None, handle.error or "not started")
        paths = handle.slurm_job.paths
        handle.log = paths.stderr if paths.stderr.exists() and paths.stderr.stat().st_size else paths.stdout
        reason = gone_reason(str(handle.slurm_job.job_id), log_tail(handle.log, LOG_TAIL_LINES))
        return Ended(handle.work, read_status(handle.work.status), reason, handle.log)

    def cancel(self, handle: Handle) -> None:
        if handle.slurm_job is not None and not handle.work.status.exists():
            handle.slurm_job.cancel(check=False)
