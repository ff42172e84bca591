"""Launchers for a zoo grid, one job per (arch, seed): inline (in this process), local (a pool of
worker processes bounded by --jobs) and slurm (through submitit).

Workers never hand results back through return values: each finished job leaves its snapshots and
`done.json` in the store, and a small status JSON in the grid's job folder; the parent reads those.
A failed job is reported with its log tail while the rest of the grid goes on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import torch

from ddz.data.base import ImageDataset
from ddz.errors import ConfigError, DDZError, first_line
from ddz.io import atomic_write_json
from ddz.progress import NullProgress, Progress, Task
from ddz.zoo.train import RunResult, TrainJob, result_from_done, train_run, train_runs

Launcher = Literal["inline", "local", "slurm"]
LAUNCHERS: tuple[str, ...] = get_args(Launcher)
LOG_TAIL_LINES = 15


@dataclass
class LaunchConfig:
    """How to run a grid. `launcher=None` picks inline for one job and local for more."""

    launcher: Launcher | None = None
    jobs: int | None = None  # concurrent jobs; local default: GPUs, or 1 on CPU; slurm default: all
    partition: str | None = None
    gpus_per_job: int | None = None
    cpus_per_job: int | None = None
    time_min: int = 240
    mem_gb: float | None = None
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
        if self.time_min < 1:
            raise ConfigError(f"--time must be at least 1 minute, got {self.time_min}")

    def launcher_for(self, n_jobs: int) -> Launcher:
        """The launcher asked for, else inline for one job (or batched seeds) and local for more."""
        return self.launcher or ("inline" if n_jobs <= 1 or self.batch_seeds > 1 else "local")


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


def log_tail(path: Path | None, lines: int = LOG_TAIL_LINES) -> str | None:
    if path is None or not path.exists():
        return None
    text = path.read_text(errors="replace").rstrip().splitlines()
    return "\n".join(text[-lines:]) or None


# --- the worker side -----------------------------------------------------------------------------


def run_job_spec(spec: dict[str, Any], status_path: str, threads: int | None = None) -> dict[str, Any]:
    """Run one job in a worker (a local subprocess or a SLURM job) and leave a status JSON."""
    threads = threads or int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0) or None
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


def worker_main(argv: list[str]) -> int:
    """`python -m ddz.zoo.launch SPEC.json`: the local pool's worker process."""
    spec = json.loads(Path(argv[0]).read_text())
    try:
        run_job_spec(spec["job"], spec["status"], spec.get("threads"))
    except DDZError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


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


@dataclass
class Handle:
    """One started job, as its backend tracks it."""

    status: Path  # the status JSON the worker leaves when it ends
    log: Path | None = None
    process: subprocess.Popen | None = None  # local workers
    slurm_job: Any = None  # a submitit Job
    error: str | None = None  # why the job could not be started
    missing_since: float | None = None  # when a SLURM job left the queue without a status


class Backend(Protocol):
    """Starts jobs elsewhere (worker processes, SLURM) and reports how they ended."""

    def start(self, job: TrainJob, slot: int) -> Handle: ...
    def finished(self, handle: Handle) -> bool: ...
    def outcome(self, job: TrainJob, handle: Handle) -> RunResult: ...
    def cancel(self, handle: Handle) -> None: ...


class _LocalBackend:
    def __init__(self, folder: Path, threads: int | None, gpus: int):
        self.folder, self.threads, self.gpus = folder, threads, gpus

    def start(self, job: TrainJob, slot: int) -> Handle:
        spec_path = self.folder / f"{job.key}.json"
        status = self.folder / f"{job.key}.status.json"
        log = self.folder / f"{job.key}.log"
        status.unlink(missing_ok=True)
        atomic_write_json(spec_path, {"job": job.to_json(), "status": str(status), "threads": self.threads})
        env = dict(os.environ)
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(slot % self.gpus)
        with open(log, "wb") as handle:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ddz.zoo.launch", str(spec_path)],
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        return Handle(status, log, process=proc)

    def finished(self, handle: Handle) -> bool:
        return handle.process.poll() is not None

    def outcome(self, job: TrainJob, handle: Handle) -> RunResult:
        why = f"worker exited with status {handle.process.returncode}"
        return _outcome(job, handle.status, handle.log, why)

    def cancel(self, handle: Handle) -> None:
        stop_process(handle.process)


def stop_process(proc: subprocess.Popen, grace_s: float = 10) -> None:
    """Terminate `proc`, and kill it if it has not exited after `grace_s` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace_s)


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


class _SlurmBackend:
    def __init__(self, folder: Path, config: LaunchConfig):
        submitit = slurm_submitit()
        self.folder, self.threads = folder, config.threads or config.cpus_per_job
        self.executor = submitit.AutoExecutor(folder=folder / "slurm" / "%j", cluster="slurm")
        # Jobs need this interpreter's environment (DDZ_HOME, the venv), whatever the site default.
        params: dict[str, Any] = {
            "name": "ddz-zoo",
            "timeout_min": config.time_min,
            "slurm_additional_parameters": {"export": "ALL"},
        }
        if config.partition:
            params["slurm_partition"] = config.partition
        if config.gpus_per_job is not None:
            params["gpus_per_node"] = config.gpus_per_job
        if config.cpus_per_job is not None:
            params["cpus_per_task"] = config.cpus_per_job
        if config.mem_gb is not None:
            params["mem_gb"] = config.mem_gb
        self.executor.update_parameters(**params)
        self.queue_checked = 0.0
        self.queued: set[str] = set()

    def start(self, job: TrainJob, slot: int) -> Handle:
        status = self.folder / f"{job.key}.status.json"
        status.unlink(missing_ok=True)
        try:
            submitted = self.executor.submit(run_job_spec, job.to_json(), str(status), self.threads)
        except Exception as error:  # sbatch refusals (bad partition, limits) come in several types
            return Handle(status, error=f"sbatch refused the job: {first_line(error)}")
        self.queued.add(str(submitted.job_id))
        return Handle(status, slurm_job=submitted)

    def _refresh_queue(self) -> None:
        if time.monotonic() - self.queue_checked < 3.0:
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
        if handle.slurm_job is None or handle.status.exists():
            return True
        self._refresh_queue()
        if str(handle.slurm_job.job_id) in self.queued:
            handle.missing_since = None
            return False
        # Gone from the queue without a status file: killed, timed out or never started. Give a
        # status file still on its way through a shared file system a few seconds.
        if handle.missing_since is None:
            handle.missing_since = time.monotonic()
        return time.monotonic() - handle.missing_since > 8.0

    def outcome(self, job: TrainJob, handle: Handle) -> RunResult:
        if handle.slurm_job is None:
            return RunResult.failure(job, handle.error or "not started")
        paths = handle.slurm_job.paths
        log = paths.stderr if paths.stderr.exists() and paths.stderr.stat().st_size else paths.stdout
        return _outcome(
            job,
            handle.status,
            log,
            f"slurm job {handle.slurm_job.job_id} ended without a result "
            "(killed, timed out or failed to start)",
        )

    def cancel(self, handle: Handle) -> None:
        if handle.slurm_job is not None and not handle.status.exists():
            handle.slurm_job.cancel(check=False)


def _outcome(job: TrainJob, status_path: Path, log: Path | None, fallback: str) -> RunResult:
    try:
        status = json.loads(status_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        status = {"status": "failed", "error": fallback}
    if status["status"] == "ok":
        result = result_from_done(job, status["result"]["status"])
        if result is not None:
            return result
        status = {"error": f"the job finished but {job.run_dir / 'done.json'} is missing"}
    return RunResult.failure(job, status.get("error", fallback), log_tail(log))


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
        threads = torch.get_num_threads()
        if config.threads:
            torch.set_num_threads(config.threads)
        try:
            for group in seed_groups(pending, config.batch_seeds):
                for job, result in zip(group, _run_inline(group, progress, data), strict=True):
                    results[job.key] = result
                    grid.advance(1)
        finally:
            torch.set_num_threads(threads)
    elif pending:
        root = jobs_root or Path(pending[0].zoo_root).parent / "jobs"
        folder = Path(config.folder) if config.folder else default_folder(root, pending[0])
        folder.mkdir(parents=True, exist_ok=True)
        gpus = torch.cuda.device_count()
        if launcher == "local":
            limit = config.jobs or max(1, gpus)
            threads = config.threads or (
                None if gpus else max(1, torch.get_num_threads() // min(limit, len(pending)))
            )
            backend: Backend = _LocalBackend(folder, threads, gpus)
        else:
            limit = config.jobs or len(pending)
            backend = _SlurmBackend(folder, config)
        for job, result in _pool(pending, backend, limit, progress, grid, config.poll_s):
            results[job.key] = result
    grid.close()
    ordered = [results[job.key] for job in jobs]
    return GridSummary(launcher, ordered, time.perf_counter() - started, folder)


def seed_groups(jobs: list[TrainJob], size: int) -> list[list[TrainJob]]:
    """Jobs in groups of at most `size` seeds of one arch, in the order given."""
    by_arch: dict[str, list[TrainJob]] = {}
    for job in jobs:
        by_arch.setdefault(job.arch, []).append(job)
    return [same[i : i + size] for same in by_arch.values() for i in range(0, len(same), size)]


def _run_inline(group: list[TrainJob], progress: Progress, data: ImageDataset | None) -> list[RunResult]:
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


def _pool(pending: list[TrainJob], backend: Backend, limit: int, progress: Progress, grid: Task,
          poll_s: float):
    """Keep at most `limit` jobs running; yield (job, result) as each one ends."""
    queue = list(pending)
    running: dict[int, tuple[TrainJob, Handle, _Watch]] = {}
    try:
        while queue or running:
            while queue and len(running) < limit:
                slot = next(s for s in range(limit) if s not in running)
                job = queue.pop(0)
                running[slot] = (job, backend.start(job, slot), _Watch(job, progress))
            time.sleep(poll_s)
            for slot, (job, handle, watch) in list(running.items()):
                watch.poll()
                if backend.finished(handle):
                    watch.poll()
                    result = backend.outcome(job, handle)
                    watch.finish(result)
                    grid.advance(1)
                    del running[slot]
                    yield job, result
    finally:
        for _, handle, _ in running.values():
            backend.cancel(handle)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
