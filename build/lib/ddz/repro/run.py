"""`ddz repro run`: train the zoo a spec needs (finished seeds are skipped), run every cell of its
grid through a launcher (finished cells are skipped, started ones resume), write the report."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ddz.data import load_dataset
from ddz.progress import NullProgress, Progress
from ddz.repro.cell import CELL_FILE, CellContext, CellOutcome
from ddz.repro.grid import Cell, expand
from ddz.repro.launch import run_cells
from ddz.repro.plots import write_plot
from ddz.repro.report import GridReport
from ddz.repro.spec import Spec
from ddz.repro.zoo_use import need_recipe
from ddz.zoo.api import Zoo
from ddz.zoo.launch import GridSummary, LaunchConfig


def default_folder(spec: str, scale: str) -> Path:
    return Path("runs") / "repro" / f"{spec}-{scale}"


@dataclass
class SpecRun:
    report: GridReport
    zoo: list[GridSummary]
    seconds: float

    @property
    def failed(self) -> list[CellOutcome]:
        return [o for o in self.report.outcomes if o.status == "failed"]


def check_data(cells: list[Cell], data_root: str) -> None:
    """Every data set the grid needs can be read (else the loader's one line: which files, where)."""
    for name, resolution in dict.fromkeys((c.dataset, c.resolution) for c in cells):
        load_dataset(name, data_root, "cpu", resolution)


def train_zoo(spec: Spec, scale: str, zoo: Zoo, context: CellContext, config: LaunchConfig,
              progress: Progress) -> list[GridSummary]:
    """The scale's zoo through the facade: plan (checked before anything runs), then train;
    finished seeds are skipped. Each entry trains by its recipe (`ptm`, or `mtt-expert` for MTT's
    trajectories), with the entry's epochs, snapshots, net options and ZCA."""
    summaries = []
    for need in spec.scale(scale).zoo:
        data = load_dataset(need.dataset, context.data_root, "cpu")
        planned = zoo.plan(need.dataset, list(need.archs), need.seed_list, need_recipe(need), data,
                           context.data_root, context.device)
        summaries.append(zoo.train([job for job, _ in planned], config, progress, data))
    return summaries


def run_spec(spec: Spec, scale: str, folder: Path, zoo: Zoo, context: CellContext,
             config: LaunchConfig | None = None, progress: Progress | None = None) -> SpecRun:
    progress = progress or NullProgress()
    config = config or LaunchConfig(launcher="inline")
    started = time.perf_counter()
    cells = expand(spec, scale)
    check_data(cells, context.data_root)
    summaries = train_zoo(spec, scale, zoo, context, config, progress)
    outcomes = run_cells(cells, folder, context, config, progress)
    report = write_report(spec, scale, folder, cells, outcomes)
    return SpecRun(report, summaries, time.perf_counter() - started)


def read_outcomes(cells: list[Cell], folder: Path) -> list[CellOutcome]:
    """What the cells' folders hold now (a cell never run has no outcome)."""
    outcomes = []
    for cell in cells:
        try:
            outcomes.append(CellOutcome.from_json(json.loads((folder / cell.key / CELL_FILE).read_text())))
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            continue
    return outcomes


def write_report(spec: Spec, scale: str, folder: Path, cells: list[Cell] | None = None,
                 outcomes: list[CellOutcome] | None = None) -> GridReport:
    """report.md, report.json and, for a figure, its PNG, from the outcomes given or on disk."""
    cells = cells if cells is not None else expand(spec, scale)
    outcomes = outcomes if outcomes is not None else read_outcomes(cells, folder)
    report = GridReport(spec, scale, cells, outcomes, folder)
    if spec.plot is not None:
        name = f"{spec.name}.png"
        write_plot(spec, report.cell_objects(), folder / name, spec.scale(scale).eval_archs[0])
        report.plot = name
    report.write()
    return report
