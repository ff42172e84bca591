"""Running a grid's cells: inline (this process), local (worker processes, --jobs N) or slurm (one
submitit job per cell): the zoo's launcher configuration (ddz.zoo.launch) over ddz.jobs.

Workers hand nothing back through return values: each cell leaves its cell.json in its folder
(ddz.repro.cell) and a copy in this launch's job folder, which the parent reads; a worker that
dies without one is a failed cell with its log tail. A failed cell does not stop the grid.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ddz.data.base import ImageDataset
from ddz.errors import DDZError
from ddz.io import atomic_write_json
from ddz.jobs import Backend, Ended, LocalWorkers, SlurmJobs, Work, run_pool
from ddz.progress import NullProgress, Progress, Task
from ddz.repro.cell import CellContext, CellOutcome, cell_data, run_cell, saved_outcome
from ddz.repro.grid import Cell
from ddz.zoo.launch import LaunchConfig


@dataclass(frozen=True)
class CellJob:
    """A cell, its folder and its context: what a worker process or SLURM job is given."""

    cell: Cell
    folder: Path
    context: CellContext

    @property
    def key(self) -> str:
        return self.cell.key

    def to_json(self) -> dict[str, Any]:
        return {"cell": self.cell.to_json(), "folder": str(self.folder), "context": self.context.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellJob:
        return cls(Cell.from_json(data["cell"]), Path(data["folder"]), CellContext.from_json(data["context"]))


def run_job(spec: dict[str, Any], threads: int | None = None, status: str | None = None) -> str:
    """Run one cell in a worker (a local process or a SLURM job); the outcome goes to its cell.json
    and, for the launcher that started it, to `status`."""
    if threads:
        torch.set_num_threads(threads)
    job = CellJob.from_json(spec)
    outcome = run_cell(job.cell, job.folder, job.context)
    if status is not None:
        atomic_write_json(status, outcome.to_json())
    return outcome.status


def cell_work(job: CellJob, threads: int | None, folder: Path) -> Work:
    """A cell as ddz.jobs runs it: run_job in a worker. The status it leaves is this launch's own
    (in `folder`), not the cell's cell.json, which another run of the grid may be writing."""
    status = folder / f"{job.key}.status.json"
    return Work(job.key, run_job, (job.to_json(), threads, str(status)), status)


def cell_outcome(job: CellJob, ended: Ended) -> CellOutcome:
    """What a finished worker left: its cell.json, or a failure with its log tail."""
    if ended.status is not None:
        try:
            return CellOutcome.from_json(ended.status)
        except KeyError:
            pass
    return CellOutcome(job.key, "failed", error=ended.reason, log_tail=ended.log_tail())


class CellCounts:
    """The grid's progress bar: cells finished, with done/running/failed counts beside it."""

    def __init__(self, progress: Progress, total: int, label: str):
        self.task: Task = progress.task(label, total)
        self.done = self.running = self.failed = 0

    def started(self) -> None:
        self.running += 1
        self.task.advance(0, done=self.done, running=self.running, failed=self.failed)

    def ended(self, outcome: CellOutcome, was_running: bool = True) -> None:
        self.running -= int(was_running)
        if outcome.status == "failed":
            self.failed += 1
        else:
            self.done += 1
        self.task.advance(1, done=self.done, running=self.running, failed=self.failed)


def run_cells(cells: list[Cell], root: Path, context: CellContext, config: LaunchConfig | None = None,
              progress: Progress | None = None) -> list[CellOutcome]:
    """Every cell's outcome, in order: finished cells are skipped, the rest run through the
    launcher; a failure does not stop the others."""
    config = config or LaunchConfig(launcher="inline")
    progress = progress or NullProgress()
    launcher = config.launcher or "inline"
    counts = CellCounts(progress, len(cells), f"cells ({launcher})")
    outcomes: dict[str, CellOutcome] = {}
    pending = []
    for cell in cells:
        saved = saved_outcome(root / cell.key, cell, context)
        if saved is not None:
            saved.status = "skipped"
            outcomes[cell.key] = saved
            counts.ended(saved, was_running=False)
        else:
            pending.append(CellJob(cell, root / cell.key, context))
    if launcher == "inline":
        for job, outcome in _inline(pending, progress, counts):
            outcomes[job.key] = outcome
    elif pending:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        folder = root / "jobs" / f"cells-{stamp}-{os.getpid()}"  # this launch's (see cell_work)
        for job, outcome in _elsewhere(pending, launcher, config, folder, counts):
            outcomes[job.key] = outcome
    counts.task.close()
    return [outcomes[cell.key] for cell in cells]


def _inline(jobs: list[CellJob], progress: Progress,
            counts: CellCounts) -> Iterator[tuple[CellJob, CellOutcome]]:
    """Cells one after another in this process, each data set loaded once."""
    loaded: dict[tuple[str, int | None], ImageDataset] = {}
    for job in jobs:
        counts.started()
        cell = job.cell
        data = loaded.get((cell.dataset, cell.resolution))
        if data is None:
            try:
                data = loaded.setdefault((cell.dataset, cell.resolution), cell_data(cell, job.context))
            except DDZError:
                data = None  # run_cell loads it again and records the error as the cell's
        outcome = run_cell(cell, job.folder, job.context, progress, data)
        counts.ended(outcome)
        yield job, outcome


def _elsewhere(jobs: list[CellJob], launcher: str, config: LaunchConfig, folder: Path,
               counts: CellCounts) -> Iterator[tuple[CellJob, CellOutcome]]:
    """Cells in local worker processes or SLURM jobs (ddz.jobs), at most --jobs at once."""
    folder.mkdir(parents=True, exist_ok=True)
    backend: Backend
    if launcher == "local":
        limit = config.jobs or 1
        threads = config.threads or max(1, torch.get_num_threads() // min(limit, len(jobs)))
        backend = LocalWorkers(folder)
    else:
        limit, threads = config.jobs or len(jobs), config.slurm_threads
        backend = SlurmJobs(folder, config.cluster, "ddz-repro")
    by_key = {job.key: job for job in jobs}
    works = [cell_work(job, threads, folder) for job in jobs]
    for ended in run_pool(works, backend, limit, config.poll_s, on_start=lambda work: counts.started()):
        job = by_key[ended.work.key]
        outcome = cell_outcome(job, ended)
        counts.ended(outcome)
        yield job, outcome
