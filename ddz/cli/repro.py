"""`ddz repro ...`: the paper's tables and figures as specs: list them, run one (zoo, then every
cell), report ddz beside the paper."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ddz.cli.cluster import CpusPerJob, GpusPerJob, Memory, Partition, TimeLimit, cluster_options
from ddz.cli.common import RichProgress, console, out, settings
from ddz.cli.main import app
from ddz.errors import ConfigError, DDZError

repro_app = typer.Typer(
    name="repro",
    help="The paper's experiments as one command: list the specs, run one, report paper vs ddz.",
    no_args_is_help=True,
)
app.add_typer(repro_app, name="repro")

SPEC_HELP = "A shipped spec (ddz repro list) or a .yaml file."
SCALE_HELP = "paper (the paper's data sets and settings) | smoke (the same grid on digits, minutes on a CPU)"


class _HidingTask:
    def __init__(self, rich: RichProgress, description: str, total: int | None):
        self.inner = rich.task(description, total)

    def advance(self, steps: int = 1, **fields: Any) -> None:
        self.inner.advance(steps, **fields)

    def close(self) -> None:
        self.inner.progress.update(self.inner.task_id, visible=False)


class _GridProgress:
    """Rich bars where a finished distillation or evaluation bar goes away, so that the view shows
    the grid's cells (done/running/failed) and what runs now."""

    def __init__(self, rich: RichProgress):
        self.rich = rich

    def task(self, description: str, total: int | None):
        if description.startswith("cells"):
            return self.rich.task(description, total)
        return _HidingTask(self.rich, description, total)


def _check_scale(scale: str) -> None:
    from ddz.repro.spec import SCALES

    if scale not in SCALES:
        raise ConfigError(f"unknown --scale {scale!r}; valid: {', '.join(SCALES)}")


@repro_app.command("list")
def list_command() -> None:
    """The shipped specs: what each reproduces and how many cells it runs."""
    from ddz.repro.grid import expand
    from ddz.repro.spec_file import load_spec, shipped_specs

    table = Table(title="ddz repro specs")
    for column in ("spec", "what", "cells", "runs per cell (paper)", "paper numbers"):
        table.add_column(column)
    for name, path in shipped_specs().items():
        spec = load_spec(path)
        table.add_row(name, spec.title, str(len(expand(spec, "paper"))), str(spec.scale("paper").runs),
                      str(len(spec.paper)))
    out.print(table)


@repro_app.command("run")
def run_command(
    spec_name: str = typer.Argument(..., metavar="SPEC", help=SPEC_HELP),
    scale: str = typer.Option("paper", "--scale", help=SCALE_HELP),
    out_dir: Path | None = typer.Option(None, "--out", help="Grid folder (default runs/repro/SPEC-SCALE)."),
    launcher: str = typer.Option("inline", "--launcher", help="inline | local | slurm (one job per cell)."),
    jobs: int | None = typer.Option(None, "--jobs", help="Concurrent cells (local default 1; slurm: all)."),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads per worker."),
    partition: Partition = None, gpus_per_job: GpusPerJob = None, cpus_per_job: CpusPerJob = None,
    time_limit: TimeLimit = "240", mem: Memory = None,
) -> None:
    """Train the zoo the spec needs, run every cell (finished ones are skipped), write the report."""
    from ddz.repro.cell import CellContext
    from ddz.repro.run import default_folder, run_spec
    from ddz.repro.spec_file import find_spec
    from ddz.zoo.api import Zoo
    from ddz.zoo.launch import LaunchConfig
    from ddz.zoo.paths import ZooPaths

    _check_scale(scale)
    spec = find_spec(spec_name)
    spec.scale(scale)
    config = LaunchConfig(launcher=launcher, jobs=jobs, threads=threads,
                          cluster=cluster_options(partition, gpus_per_job, cpus_per_job, time_limit, mem))
    settings.use_threads()  # this process's; --threads after `run` is each worker's
    folder = (out_dir or default_folder(spec.name, scale)).absolute()
    # The smoke grid trains its small digits zoo inside its folder, so that it never clashes with
    # (or adds to) the user's zoo; the paper grid uses the zoo the environment names.
    zoo = Zoo(ZooPaths.under(folder / "zoo-home")) if scale == "smoke" else settings.zoo()
    device = "auto" if settings.device == "auto" else settings.torch_device
    context = CellContext(zoo.paths, str(Path(settings.data_root).absolute()), device, settings.seed,
                          zoo.offline)
    started = time.perf_counter()
    with RichProgress() as rich:
        result = run_spec(spec, scale, folder, zoo, context, config, _GridProgress(rich))
    wall = time.perf_counter() - started
    for summary in result.zoo:
        for failed in summary.failed:
            console.print(f"[bold red]zoo job failed[/bold red] {failed.name}: {failed.error}",
                          highlight=False, soft_wrap=True)
    counts = {s: sum(o.status == s for o in result.report.outcomes) for s in ("done", "skipped", "failed")}
    console.print(
        f"{spec.name} at scale {scale}: grid in {folder}, zoo in {zoo.paths.zoo}\n"
        f"{len(result.report.cells)} cells: {counts['done']} run, {counts['skipped']} finished before, "
        f"{counts['failed']} failed; wall time {wall:.1f}s\nreport: {folder / 'report.md'}",
        highlight=False, soft_wrap=True,
    )
    if result.failed:
        for outcome in result.failed:
            console.print(f"[bold red]failed[/bold red] {outcome.key}: {outcome.error}", highlight=False,
                          soft_wrap=True)
            if outcome.log_tail:
                console.print(outcome.log_tail, highlight=False, markup=False, soft_wrap=True)
        raise DDZError(
            f"{len(result.failed)} cell(s) failed (see above and report.md); fix the cause and run the same "
            "command again: finished cells are skipped"
        )


@repro_app.command("report")
def report_command(
    spec_name: str = typer.Argument(..., metavar="SPEC", help=SPEC_HELP),
    scale: str = typer.Option("paper", "--scale", help=SCALE_HELP),
    out_dir: Path | None = typer.Option(None, "--out", help="Grid folder (default runs/repro/SPEC-SCALE)."),
) -> None:
    """Write DIR/report.md and DIR/report.json (and a figure's PNG) from the cells run so far."""
    from ddz.repro.grid import expand
    from ddz.repro.run import default_folder, read_outcomes, write_report
    from ddz.repro.spec_file import find_spec

    _check_scale(scale)
    spec = find_spec(spec_name)
    folder = (out_dir or default_folder(spec.name, scale)).absolute()
    run_first = f"run `ddz repro run {spec_name} --scale {scale}" + (f" --out {folder}`" if out_dir else "`")
    if not folder.is_dir():
        raise ConfigError(f"{folder} does not exist; {run_first} first")
    cells = expand(spec, scale)
    outcomes = read_outcomes(cells, folder)
    if not outcomes:
        raise ConfigError(
            f"no cell of {spec.name} at scale {scale} has run in {folder} (none of its {len(cells)} cell "
            f"folders holds a cell.json); {run_first} first, or give --out the grid folder it wrote"
        )
    report = write_report(spec, scale, folder, cells, outcomes)
    console.print(f"{len(report.outcomes)} of {len(report.cells)} cells have results; report: "
                  f"{folder / 'report.md'}", highlight=False, soft_wrap=True)
