"""Launchers for a zoo grid, one job per (arch, seed): inline (in this process), local (a pool of
worker processes bounded by --jobs) and slurm (through submitit); the last two are ddz.jobs.

Workers never hand results back through return values: each finished job leaves its snapshots and
`done.json` in the store, and a small status JSON in the grid's job folder; the parent reads those.
A failed job is reported with its log tail while the rest of the grid goes on.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from ddz.data.base import ImageDataset
from ddz.errors import ConfigError, first_line
from ddz.io import atomic_write_json
from ddz.jobs import LOG_TAIL_LINES, Backend, ClusterOptions, Ended, LocalWorkers, SlurmJobs, Work, run_pool
from ddz.jobs.slurm import slurm_cpus
from ddz.progress import NullProgress, Progress, Task
from ddz.zoo.runs import RunResult, TrainJob, result_from_done
from ddz.zoo.train import train_run, train_runs

Launcher = Literal["inline", "local", "slurm"]
LAUNCHERS: tuple[str, ...] = get_args(Launcher)


@dataclass
class LaunchConfig:
    """How to run a grid. `launcher=None` picks inline for one job and local for more."""

    launcher: Launcher | None = None
    jobs: int | None = None  # concurrent jobs; local default: GPUs, or 1 on CPU; slurm default: all
    cluster: ClusterOptions = field(default_factory=ClusterOptions)  # what each SLURM job asks for
    # torch CPU threads per job; CPU results are bit-identical only for the same thread count.
    # Default: inline keeps the process's; local splits the cores over --jobs; slurm uses --cpus-per-job.
    threads: int | None = None
    folder: Path | None = None  # default <jobs root>/zoo-<dataset>-<UTC time>-<pid>
    poll_s: float = 0.5
    batch_seeds: int = 1  # seeds of one arch trained together as one batched model (inline)

    def __post_init__(self) -> None:
        if self.batch_seeds < 1:
            raise ConfigError(f"--batch-seeds must be at least 1, got {self.batch_seeds}")
        if self.launcher is not None and self.launcher not in LAUNCHERS:
            raise ConfigError(f"unknown --launcher {self.launcher!r}; valid: {', '.join(LAUNCHERS)}")
        if self.batch_seeds > 1 and self.launcher not in (None, "inline"):
            raise ConfigError(
                f"--batch-seeds {self.batch_seeds} trains seeds together in this process: use "
                f"--launcher inline (or --batch-seeds 1 with --launcher {self.launcher})"
            )
        if self.jobs is not None and self.jobs < 1:
            raise ConfigError(f"--jobs must be at least 1, got {self.jobs}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")

    def launcher_for(self, n_jobs: int) -> Launcher:
        """The launcher asked for, else inline for one job (or batched seeds) and local for more."""
        return self.launcher or ("inline" if n_jobs <= 1 or self.batch_seeds > 1 else "local")

    @property
    def slurm_threads(self) -> int | None:
        """torch threads of a SLURM job: --threads, else its --cpus-per-job."""
        return self.threads or self.cluster.cpus_per_job


@dataclass
class GridSummary:
    launcher: str
    results: list[RunResult]
    seconds: float
    folder: Path | None = None

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.results if r.status == "failed"]

    def to_json(self) -> dict[str, Any]:
        return {
            "launcher": self.launcher,
            "seconds": self.seconds,
            "folder": str(self.folder) if self.folder else None,
            "failed": [f"{r.arch}/seed{r.seed}" for r in self.failed],
            "results": [r.to_json() for r in self.results],
        }


# --- the worker side -----------------------------------------------------------------------------


def run_job_spec(spec: dict[str, Any], status_path: str, threads: int | None = None) -> dict[str, Any]:
    """Run one job in a worker (a local process or a SLURM job) and leave a status JSON."""
    threads = threads or slurm_cpus()
    if threads:
        torch.set_num_threads(threads)
    job = TrainJob.from_json(spec)
    try:
        result = train_run(job)
    except BaseException as error:
        atomic_write_json(
            status_path, {"status": "failed", "error": first_line(error), "type": type(error).__name__}
        )
        raise
    atomic_write_json(status_path, {"status": "ok", "result": result.to_json()})
    return result.to_json()


def job_work(job: TrainJob, folder: Path, threads: int | None) -> Work:
    """A job as ddz.jobs runs it: run_job_spec in a worker, its status in the grid's job folder."""
    status = folder / f"{job.key}.status.json"
    return Work(job.key, run_job_spec, (job.to_json(), str(status), threads), status)


def job_result(job: TrainJob, ended: Ended) -> RunResult:
    """What an ended worker did: the run its done.json records, or a failure with its log tail."""
    status = ended.status or {"status": "failed", "error": ended.reason}
    if status.get("status") == "ok":
        result = result_from_done(job, status["result"]["status"])
        if result is not None:
            return result
        status = {"error": f"the job finished but {job.run_dir / 'done.json'} is missing"}
    return RunResult.failure(job, status.get("error", ended.reason), ended.log_tail())


# --- the parent side -----------------------------------------------------------------------------


class _Watch:
    """Parent-side progress of one running job, read from its checkpoint sidecar."""

    def __init__(self, job: TrainJob, progress: Progress):
        self.job, self.seen = job, 0
        self.task: Task = progress.task(f"{job.arch} seed{job.seed}", job.recipe.epochs)

    def poll(self) -> None:
        try:
            sidecar = json.loads((self.job.run_dir / "checkpoint.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return
        epoch = int(sidecar.get("epoch", 0))
        if epoch > self.seen:
            last = (sidecar.get("history") or [{}])[-1]
            self.task.advance(
                epoch - self.seen,
                epoch=epoch,
                loss=last.get("train_loss", float("nan")),
                acc=last.get("test_acc", last.get("train_acc", float("nan"))),
            )
            self.seen = epoch

    def finish(self, result: RunResult) -> None:
        if result.status != "failed" and self.seen < self.job.recipe.epochs:
            self.task.advance(
                self.job.recipe.epochs - self.seen,
                **({"acc": result.metrics["test_acc"]} if "test_acc" in result.metrics else {}),
            )
        self.task.close()


def default_folder(jobs_root: Path, job: TrainJob) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return jobs_root / f"zoo-{job.slug}-{stamp}-{os.getpid()}"


def run_grid(
    jobs: list[TrainJob],
    config: LaunchConfig | None = None,
    progress: Progress | None = None,
    data: ImageDataset | None = None,
    jobs_root: Path | None = None,
) -> GridSummary:
    """Run every job (skipping finished ones) and return what each did; failures do not stop it.
    Local and SLURM job folders go under `jobs_root` (default: `jobs` beside the zoo folder)."""
    config = config or LaunchConfig()
    progress = progress or NullProgress()
    started = time.perf_counter()
    launcher = config.launcher_for(len(jobs))
    grid = progress.task(f"zoo grid ({launcher})", len(jobs))
    results: dict[str, RunResult] = {}
    pending = []
    for job in jobs:
        done = result_from_done(job, "skipped")
        if done is not None:
            results[job.key] = done
            grid.advance(1)
        else:
            pending.append(job)
    folder = None
    if launcher == "inline":
        ran = _run_inline(pending, config, progress, data)
    elif pending:
        root = jobs_root or Path(pending[0].zoo_root).parent / "jobs"
        folder = Path(config.folder) if config.folder else default_folder(root, pending[0])
        folder.mkdir(parents=True, exist_ok=True)
        ran = _run_elsewhere(pending, launcher, config, folder, progress)
    else:
        ran = iter(())
    for job, result in ran:
        results[job.key] = result
        grid.advance(1)
    grid.close()
    ordered = [results[job.key] for job in jobs]
    return GridSummary(launcher, ordered, time.perf_counter() - started, folder)


def seed_groups(jobs: list[TrainJob], size: int) -> list[list[TrainJob]]:
    """Jobs in groups of at most `size` seeds of one arch, in the order given."""
    by_arch: dict[str, list[TrainJob]] = {}
    for job in jobs:
        by_arch.setdefault(job.arch, []).append(job)
    return [same[i : i + size] for same in by_arch.values() for i in range(0, len(same), size)]


def _run_inline(pending: list[TrainJob], config: LaunchConfig, progress: Progress,
                data: ImageDataset | None) -> Iterator[tuple[TrainJob, RunResult]]:
    """The jobs in this process, `config.batch_seeds` seeds of an arch at a time."""
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        for group in seed_groups(pending, config.batch_seeds):
            yield from zip(group, _run_group(group, progress, data), strict=True)
    finally:
        torch.set_num_threads(threads)


def _run_group(group: list[TrainJob], progress: Progress, data: ImageDataset | None) -> list[RunResult]:
    """One job, or several seeds of one arch trained as one batched model, in this process."""
    label = f"{group[0].arch} seed" + ("s " if len(group) > 1 else "") + ",".join(str(j.seed) for j in group)
    task = progress.task(label, group[0].recipe.epochs)
    try:
        return train_runs(group, task, data)
    except Exception as error:
        tail = "\n".join(traceback.format_exc().rstrip().splitlines()[-LOG_TAIL_LINES:])
        return [RunResult.failure(job, first_line(error), tail) for job in group]
    finally:
        task.close()


def _run_elsewhere(pending: list[TrainJob], launcher: Launcher, config: LaunchConfig, folder: Path,
                   progress: Progress) -> Iterator[tuple[TrainJob, RunResult]]:
    """The jobs in local worker processes or SLURM jobs (ddz.jobs), each watched through its
    checkpoint sidecar while it runs."""
    gpus = torch.cuda.device_count()
    backend: Backend
    if launcher == "local":
        limit = config.jobs or max(1, gpus)
        shared = max(1, torch.get_num_threads() // min(limit, len(pending)))
        threads = config.threads or (None if gpus else shared)
        backend = LocalWorkers(folder, gpus)
    else:
        limit, threads = config.jobs or len(pending), config.slurm_threads
        backend = SlurmJobs(folder, config.cluster, "ddz-zoo")
    by_key = {job.key: job for job in pending}
    watches: dict[str, _Watch] = {}

    def watch(work: Work) -> None:
        watches[work.key] = _Watch(by_key[work.key], progress)

    works = [job_work(job, folder, threads) for job in pending]
    for ended in run_pool(works, backend, limit, config.poll_s, on_start=watch,
                          on_poll=lambda work: watches[work.key].poll()):
        job, seen = by_key[ended.work.key], watches.pop(ended.work.key)
        seen.poll()
        result = job_result(job, ended)
        seen.finish(result)
        yield job, result
