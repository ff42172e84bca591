"""`ddz zoo ...`: train a grid of PTM snapshots, list and show the local zoo.

`zoo_app` is the sub-app; other modules (e.g. ddz.cli.zoo_hub) add commands to it."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from ddz.cli.cluster import CpusPerJob, GpusPerJob, Memory, Partition, TimeLimit, cluster_options
from ddz.cli.common import RichProgress, console, out, print_json, settings, write_json
from ddz.cli.main import app
from ddz.errors import DDZError, IntegrityError, QueryError

if TYPE_CHECKING:
    from ddz.data.base import ImageDataset
    from ddz.zoo.api import Zoo
    from ddz.zoo.launch import GridSummary
    from ddz.zoo.recipes import TrainRecipe
    from ddz.zoo.records import RunState
    from ddz.zoo.runs import TrainJob

zoo_app = typer.Typer(
    name="zoo",
    help="The PTM zoo: train seeds x archs x epoch snapshots; list, show, push, pull, lock.",
    no_args_is_help=True,
)
app.add_typer(zoo_app, name="zoo")


RECIPE_HELP = ("ptm (the paper's PTMs, 150 epochs) | mtt-expert (MTT's expert trajectories) | "
               "mtt-expert-zca (the same on ZCA-whitened data).")
NET_OPTION_HELP = "KEY=VALUE passed to the net factory, e.g. width=16 (repeatable)."
LAUNCHER_HELP = "inline | local | slurm (default: inline for one job, else local)."
JOBS_HELP = "Concurrent jobs (local default: GPUs, or 1 on CPU; slurm: all)."
THREADS_HELP = "torch CPU threads per job (CPU runs are bit-identical for the same count)."
BATCH_SEEDS_HELP = "Train K seeds of an arch together as one batched model (inline launcher)."
SNAPSHOTS_HELP = ("Epochs to keep, e.g. 1,4,6,10 or 'every' (0 = the initial weights; default: the recipe's "
                  "that are <= --epochs, and the last).")


@zoo_app.command("train")
def train_command(
    dataset: str = typer.Option(..., "--dataset", help="A data set name, npz:FILE or folder:DIR."),
    arch: list[str] = typer.Option(..., "--arch", help="Architectures (repeatable)."),
    seeds: int = typer.Option(1, "--seeds", help="How many seeds per arch."),
    seed_start: int = typer.Option(0, "--seed-start", help="First seed number."),
    recipe_name: str = typer.Option("ptm", "--recipe", help=RECIPE_HELP),
    epochs: int | None = typer.Option(None, "--epochs", help="Training epochs (default: the recipe's)."),
    snapshots: str | None = typer.Option(None, "--snapshots", help=SNAPSHOTS_HELP),
    batch_size: int | None = typer.Option(None, "--batch-size"),
    lr: float | None = typer.Option(None, "--lr"),
    momentum: float | None = typer.Option(None, "--momentum"),
    weight_decay: float | None = typer.Option(None, "--weight-decay"),
    milestones: str | None = typer.Option(None, "--milestones", help="Epochs after which lr x0.1."),
    zca: bool | None = typer.Option(
        None, "--zca/--no-zca", help="ZCA-whiten the data first, as MTT's --zca (default: the recipe's)."
    ),
    net_option: list[str] = typer.Option([], "--net-option", help=NET_OPTION_HELP),
    launcher: str | None = typer.Option(None, "--launcher", help=LAUNCHER_HELP),
    jobs: int | None = typer.Option(None, "--jobs", help=JOBS_HELP),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
    batch_seeds: int = typer.Option(1, "--batch-seeds", help=BATCH_SEEDS_HELP),
    partition: Partition = None, gpus_per_job: GpusPerJob = None, cpus_per_job: CpusPerJob = None,
    time_limit: TimeLimit = "240", mem: Memory = None,
    resolution: int | None = typer.Option(
        None, "--resolution", help="Image side in pixels (default: the data set's; ImageNet subsets 224)."
    ),
    json_path: Path | None = typer.Option(None, "--json", help="Write the grid summary as JSON here."),
) -> None:
    """Train seeds x archs by a recipe, keeping epoch snapshots; resumable and re-submittable."""
    from ddz.zoo.launch import LaunchConfig

    changes = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "momentum": momentum,
               "weight_decay": weight_decay, "zca": zca}
    recipe = _recipe(recipe_name, changes, milestones, snapshots, net_option)
    config = LaunchConfig(launcher=launcher, jobs=jobs, threads=threads, batch_seeds=batch_seeds,
                          cluster=cluster_options(partition, gpus_per_job, cpus_per_job, time_limit, mem))
    settings.use_threads()  # this process's; --threads after `train` is each job's
    zoo, data, planned = _plan(dataset, arch, list(range(seed_start, seed_start + seeds)), recipe, resolution)
    started = time.perf_counter()
    with RichProgress() as progress:
        summary = zoo.train([job for job, _ in planned], config, progress, data)
    wall = time.perf_counter() - started
    _report(summary, wall, planned[0][0].store.root)
    write_json(json_path, {**summary.to_json(), "wall_seconds": wall, "recipe": recipe.to_json()})
    if summary.failed:
        names = ", ".join(f"{r.arch}/seed{r.seed}" for r in summary.failed)
        raise DDZError(
            f"{len(summary.failed)} job(s) failed: {names} (see above); fix the cause and run the same "
            "command again: finished jobs are skipped"
        )


def _plan(dataset: str, archs: list[str], seeds: list[int], recipe: TrainRecipe,
          resolution: int | None) -> tuple[Zoo, ImageDataset, list[tuple[TrainJob, RunState]]]:
    """The zoo, the data and the grid's jobs with their states, checked before anything runs."""
    from ddz.data import check_data_reachable, load_dataset

    # "auto" travels as is: each worker picks its own node's device.
    device = "auto" if settings.device == "auto" else settings.torch_device
    check_data_reachable(dataset, settings.data_root)
    data = load_dataset(dataset, settings.data_root, "cpu", resolution)
    zoo = settings.zoo()
    planned = zoo.plan(dataset, archs, seeds, recipe, data, settings.data_root, device, resolution)
    todo = sum(state != "done" for _, state in planned)
    console.print(
        f"zoo grid: {data.name} x {', '.join(dict.fromkeys(archs))} x seeds {seeds[0]}..{seeds[-1]}"
        f" ({len(planned)} jobs, {todo} to run), {recipe.epochs} epochs, snapshots {list(recipe.snapshots)}"
        + (", ZCA-whitened" if recipe.zca else ""),
        highlight=False,
    )
    return zoo, data, planned


def _recipe(name: str, given: dict[str, Any], milestones: str | None, snapshots: str | None,
            net_option: list[str]) -> TrainRecipe:
    """The named recipe with the options given on the command line (None: the recipe's)."""
    from ddz.cli.parsing import parse_epochs, parse_net_options, parse_snapshots
    from ddz.zoo.recipes import recipe_named

    base = recipe_named(name)
    changes = {key: value for key, value in given.items() if value is not None}
    if milestones is not None:
        changes["milestones"] = parse_epochs(milestones, "--milestones")
    changes["snapshots"] = parse_snapshots(snapshots, base, changes.get("epochs", base.epochs))
    return replace(base, **changes, net=parse_net_options(net_option))


def _report(summary: GridSummary, wall: float, zoo_root: Path) -> None:
    """The grid's table, each failure with its log tail, and the wall time."""
    out.print(summary_table(summary))
    for failed in summary.failed:
        console.print(
            f"[bold red]failed[/bold red] {failed.arch}/seed{failed.seed}: {failed.error}", highlight=False
        )
        if failed.log_tail:
            console.print(failed.log_tail, highlight=False, markup=False)
    console.print(f"wall time {wall:.1f}s ({summary.launcher}); zoo at {zoo_root}", highlight=False)


def summary_table(summary: GridSummary) -> Table:
    table = Table(title=f"zoo grid ({summary.launcher})")
    table.add_column("run", no_wrap=True)
    for column in ("status", "epochs run", "resumed at", "train s", "images/s", "train_loss", "test_acc"):
        table.add_column(column)
    for r in summary.results:
        table.add_row(
            r.name,
            r.status,
            str(r.epochs_run),
            str(r.resumed_from) if r.resumed_from else "-",
            f"{r.seconds_train:.1f}",
            f"{r.images_per_sec:.0f}" if r.images_per_sec else "-",
            _fmt(r.metrics.get("train_loss")),
            _fmt(r.metrics.get("test_acc")),
        )
    return table


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


@zoo_app.command("list")
def list_command(
    query: str = typer.Argument(
        "*", help="A zoo query, e.g. 'digits/*@epoch4', 'digits/convnet3/seed{0..2}@best'."
    ),
    where: str | None = typer.Option(None, "--where", help="Metric filter, e.g. 'test_acc>0.5'."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the PTMs a query selects: local snapshots, hub entries and external models."""
    try:
        rows = settings.zoo().resolve(query, where)
    except QueryError:
        if query != "*" or where:
            raise
        rows = []  # an empty zoo lists as empty
    if as_json:
        print_json([row.to_json() for row in rows])
        return
    table = Table(title=f"{query} ({len(rows)} PTMs)")
    table.add_column("name", no_wrap=True)
    for column in ("source", "size", "train_loss", "test_acc", "sha256"):
        table.add_column(column)
    for row in rows:
        metrics = row.summary.metrics if row.summary else {}
        size = row.summary.size if row.summary else None
        table.add_row(
            row.name,
            row.source,
            _size(size) if size is not None else "-",
            _fmt(metrics.get("train_loss")),
            _fmt(metrics.get("test_acc")),
            (row.sha256 or "-")[:12],
        )
    out.print(table)


@zoo_app.command("show")
def show_command(
    name: str = typer.Argument(..., help="A snapshot name: DATASET/ARCH/seedN@epochE."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show one snapshot: its record, metadata and lineage; its sha256 is checked."""
    from ddz.io import check_sha256, sha256_file
    from ddz.zoo.records import SnapshotName
    from ddz.zoo.sources.local import read_snapshot_meta

    store = settings.zoo().local
    try:
        parsed = SnapshotName.parse(name)
    except QueryError:
        matches = store.records(name)
        if len(matches) != 1:
            raise
        parsed = matches[0].name
    record = store.record(parsed)
    actual = sha256_file(record.path) if record.path.exists() else None
    verified = actual == record.sha256
    metadata = read_snapshot_meta(record.path).to_json() if record.path.exists() else {}
    if as_json:
        print_json({**record.to_json(), "verified": verified, "metadata": metadata})
    else:
        out.print(_show_table(parsed, record, verified, actual, metadata))
    if actual is None:
        raise IntegrityError(f"{record.path} is missing; re-train or re-pull it")
    check_sha256(record.path, actual, record.sha256)


def _show_table(parsed, record, verified: bool, actual: str | None, metadata: dict) -> Table:
    table = Table(title=str(parsed), show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("path", str(record.path))
    table.add_row("size", _size(record.size))
    table.add_row("sha256", f"{record.sha256} ({'verified' if verified else 'MISMATCH: ' + str(actual)})")
    for key, value in metadata.items():
        if key not in ("name",):
            table.add_row(key, value if isinstance(value, str) else _compact(value))
    return table


def _compact(value: object) -> str:
    return json.dumps(value, separators=(", ", ": "))
