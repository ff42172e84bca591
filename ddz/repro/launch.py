"""Running a grid's cells: inline (this process), local (worker processes, --jobs N) or slurm (one
submitit job per cell), with the zoo's launcher configuration and backends (ddz.zoo.launch).

Workers hand nothing back through return values: each cell leaves its cell.json in its folder
(ddz.repro.cell), which the parent reads; a worker that dies without one is a failed cell with
its log tail. A failed cell does not stop the grid.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ddz.data.base import ImageDataset
from ddz.errors import DDZError, first_line
from ddz.io import atomic_write_json
from ddz.progress import NullProgress, Progress, Task
from ddz.repro.cell import CELL_FILE, CellContext, CellOutcome, cell_data, run_cell, saved_outcome
from ddz.repro.grid import Cell
from ddz.zoo.launch import Handle, LaunchConfig, _LocalBackend, _SlurmBackend, log_tail


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


def run_job(spec: dict[str, Any], threads: int | None = None) -> str:
    """Run one cell in a worker (a local process or a SLURM job); the outcome goes to its cell.json."""
    if threads:
        torch.set_num_threads(threads)
    job = CellJob.from_json(spec)
    return run_cell(job.cell, job.folder, job.context).status


def worker_main(argv: list[str]) -> int:
    """`python -m ddz.repro.launch JOB.json`: the local pool's worker process."""
    spec = json.loads(Path(argv[0]).read_text())
    try:
        run_job(spec["job"], spec.get("threads"))
    except DDZError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _worker_outcome(job: CellJob, handle: Handle, why: str) -> CellOutcome:
    """What a finished worker left: its cell.json, or a failure with its log tail."""
    try:
        return CellOutcome.from_json(json.loads((job.folder / CELL_FILE).read_text()))
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return CellOutcome(job.key, "failed", error=why, log_tail=log_tail(handle.log))


class _LocalCells(_LocalBackend):
    """The zoo's local worker pool, its workers running cells."""

    def start(self, job: CellJob, slot: int) -> Handle:  # type: ignore[override]
        spec_path = self.folder / f"{job.key}.json"
        atomic_write_json(spec_path, {"job": job.to_json(), "threads": self.threads})
        log = self.folder / f"{job.key}.log"
        with open(log, "wb") as output:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ddz.repro.launch", str(spec_path)],
                stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        return Handle(job.folder / CELL_FILE, log, process=proc)

    def outcome(self, job: CellJob, handle: Handle) -> CellOutcome:  # type: ignore[override]
        return _worker_outcome(job, handle, f"worker exited with status {handle.process.returncode}")


class _SlurmCells(_SlurmBackend):
    """The zoo's SLURM backend (submitit, queue polling, cancel), one job per cell."""

    def __init__(self, folder: Path, config: LaunchConfig):
        super().__init__(folder, config)
        self.executor.update_parameters(name="ddz-repro")

    def start(self, job: CellJob, slot: int) -> Handle:  # type: ignore[override]
        status = job.folder / CELL_FILE
        try:
            submitted = self.executor.submit(run_job, job.to_json(), self.threads)
        except Exception as error:  # noqa: BLE001 - sbatch refusals come in several types
            return Handle(status, error=f"sbatch refused the job: {first_line(error)}")
        self.queued.add(str(submitted.job_id))
        return Handle(status, slurm_job=submitted)

    def outcome(self, job: CellJob, handle: Handle) -> CellOutcome:  # type: ignore[override]
        if handle.slurm_job is None:
            return CellOutcome(job.key, "failed", error=handle.error or "not started")
        paths = handle.slurm_job.paths
        handle.log = paths.stderr if paths.stderr.exists() and paths.stderr.stat().st_size else paths.stdout
        why = (f"slurm job {handle.slurm_job.job_id} ended without a result "
               "(killed, timed out or failed to start)")
        return _worker_outcome(job, handle, why)


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
        folder = root / "jobs"
        folder.mkdir(parents=True, exist_ok=True)
        if launcher == "local":
            limit = config.jobs or 1
            threads = config.threads or max(1, torch.get_num_threads() // min(limit, len(pending)))
            backend: _LocalCells | _SlurmCells = _LocalCells(folder, threads, 0)
        else:
            limit = config.jobs or len(pending)
            backend = _SlurmCells(folder, config)
        for job, outcome in _pool(pending, backend, limit, counts, config.poll_s):
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


def _pool(jobs: list[CellJob], backend: _LocalCells | _SlurmCells, limit: int, counts: CellCounts,
          poll_s: float) -> Iterator[tuple[CellJob, CellOutcome]]:
    """At most `limit` cells running at once; (job, outcome) as each ends."""
    waiting = list(jobs)
    running: dict[int, tuple[CellJob, Handle]] = {}
    try:
        while waiting or running:
            while waiting and len(running) < limit:
                slot = min(set(range(limit)) - set(running))
                job = waiting.pop(0)
                (job.folder / CELL_FILE).unlink(missing_ok=True)  # a failed attempt's; done ones were skipped
                job.folder.mkdir(parents=True, exist_ok=True)
                running[slot] = (job, backend.start(job, slot))
                counts.started()
            time.sleep(poll_s)
            for slot, (job, handle) in list(running.items()):
                if backend.finished(handle):
                    outcome = backend.outcome(job, handle)
                    del running[slot]
                    counts.ended(outcome)
                    yield job, outcome
    finally:
        for _, handle in running.values():
            backend.cancel(handle)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
