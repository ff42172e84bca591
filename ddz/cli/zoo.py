"""`ddz zoo ...`: train a grid of PTM snapshots, list and show the local zoo.

`zoo_app` is the sub-app; other modules (e.g. ddz.cli.zoo_hub) add commands to it."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import typer
from rich.table import Table

from ddz.cli.common import RichProgress, console, out, print_json, settings, write_json
from ddz.cli.main import app
from ddz.errors import ConfigError, DDZError, IntegrityError, QueryError

zoo_app = typer.Typer(
    name="zoo",
    help="The PTM zoo: train seeds x archs x epoch snapshots; list, show, push, pull, lock.",
    no_args_is_help=True,
)
app.add_typer(zoo_app, name="zoo")


def parse_minutes(text: str) -> int:
    """SLURM-style time: MINUTES, H:MM[:SS] or D-H[:MM[:SS]] -> whole minutes."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if match is None:
        raise ConfigError(f"bad --time {text!r}; use minutes (90), H:MM:SS (4:00:00) or D-HH (1-12)")
    days, first, second, third = match.groups()
    if days is None and second is None:
        return int(first)
    hours, minutes, seconds = int(first), int(second or 0), int(third or 0)
    return max(1, int(days or 0) * 1440 + hours * 60 + minutes + (1 if seconds else 0))


def parse_gigabytes(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([MGT]?)B?", text.strip(), flags=re.IGNORECASE)
    if match is None:
        raise ConfigError(f"bad --mem {text!r}; use gigabytes (16), or 16G / 16000M")
    value, unit = float(match[1]), match[2].upper()
    return value * {"M": 1 / 1024, "G": 1.0, "T": 1024.0, "": 1.0}[unit]


@zoo_app.command("train")
def train_command(
    dataset: str = typer.Option(..., "--dataset", help="A data set name, npz:FILE or folder:DIR."),
    arch: list[str] = typer.Option(..., "--arch", help="Architectures (repeatable)."),
    seeds: int = typer.Option(1, "--seeds", help="How many seeds per arch."),
    seed_start: int = typer.Option(0, "--seed-start", help="First seed number."),
    recipe_name: str = typer.Option(
        "ptm", "--recipe", help="ptm (the paper's PTMs, 150 epochs) | mtt-expert (MTT's expert trajectories)."
    ),
    epochs: int | None = typer.Option(None, "--epochs", help="Training epochs (default: the recipe's)."),
    snapshots: str | None = typer.Option(
        None,
        "--snapshots",
        help="Epochs to keep, e.g. 1,4,6,10 or 'every' (0 = the initial weights; default: the recipe's "
        "that are <= --epochs, and the last).",
    ),
    batch_size: int | None = typer.Option(None, "--batch-size"),
    lr: float | None = typer.Option(None, "--lr"),
    momentum: float | None = typer.Option(None, "--momentum"),
    weight_decay: float | None = typer.Option(None, "--weight-decay"),
    milestones: str | None = typer.Option(None, "--milestones", help="Epochs after which lr x0.1."),
    net_option: list[str] = typer.Option(
        [], "--net-option", help="KEY=VALUE passed to the net factory, e.g. width=16 (repeatable)."
    ),
    launcher: str | None = typer.Option(
        None, "--launcher", help="inline | local | slurm (default: inline for one job, else local)."
    ),
    jobs: int | None = typer.Option(
        None, "--jobs", help="Concurrent jobs (local default: GPUs, or 1 on CPU; slurm: all)."
    ),
    threads: int | None = typer.Option(
        None, "--threads", help="torch CPU threads per job (CPU runs are bit-identical for the same count)."
    ),
    batch_seeds: int = typer.Option(
        1, "--batch-seeds", help="Train K seeds of an arch together as one batched model (inline launcher)."
    ),
    partition: str | None = typer.Option(None, "--partition", help="SLURM partition."),
    gpus_per_job: int | None = typer.Option(None, "--gpus-per-job", help="SLURM GPUs per job."),
    cpus_per_job: int | None = typer.Option(
        None, "--cpus-per-job", help="SLURM CPUs (= torch threads) per job."
    ),
    time_limit: str = typer.Option("240", "--time", help="SLURM time limit: minutes or H:MM:SS."),
    mem: str | None = typer.Option(None, "--mem", help="SLURM memory per job, e.g. 16G."),
    resolution: int | None = typer.Option(
        None, "--resolution", help="Image side in pixels (default: the data set's; ImageNet subsets 224)."
    ),
    json_path: Path | None = typer.Option(None, "--json", help="Write the grid summary as JSON here."),
) -> None:
    """Train seeds x archs by a recipe, keeping epoch snapshots; resumable and re-submittable."""
    from dataclasses import replace

    from ddz.data import load_dataset
    from ddz.zoo.launch import LaunchConfig
    from ddz.zoo.train import (
        check_data_reachable,
        parse_epochs,
        parse_net_options,
        recipe_named,
        snapshots_for,
    )

    base = recipe_named(recipe_name)
    given = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "momentum": momentum,
             "weight_decay": weight_decay}
    changes = {key: value for key, value in given.items() if value is not None}
    if milestones is not None:
        changes["milestones"] = parse_epochs(milestones, "--milestones")
    total = changes.get("epochs", base.epochs)
    changes["snapshots"] = snapshots_for(base, total, snapshots)
    recipe = replace(base, **changes, net=parse_net_options(net_option))
    config = LaunchConfig(
        launcher=launcher,
        jobs=jobs,
        partition=partition,
        gpus_per_job=gpus_per_job,
        cpus_per_job=cpus_per_job,
        time_min=parse_minutes(time_limit),
        mem_gb=parse_gigabytes(mem) if mem else None,
        threads=threads,
        batch_seeds=batch_seeds,
    )
    # "auto" travels as is: each worker picks its own node's device.
    device = "auto" if settings.device == "auto" else settings.torch_device
    check_data_reachable(dataset, settings.data_root)
    data = load_dataset(dataset, settings.data_root, "cpu", resolution)
    zoo = settings.zoo()
    seed_list = list(range(seed_start, seed_start + seeds))
    planned = zoo.plan(dataset, arch, seed_list, recipe, data, settings.data_root, device, resolution)
    todo = sum(state != "done" for _, state in planned)
    console.print(
        f"zoo grid: {data.name} x {', '.join(dict.fromkeys(arch))} x seeds "
        f"{seed_start}..{seed_start + seeds - 1}"
        f" ({len(planned)} jobs, {todo} to run), {recipe.epochs} epochs, snapshots {list(recipe.snapshots)}",
        highlight=False,
    )
    started = time.perf_counter()
    with RichProgress() as progress:
        summary = zoo.train([job for job, _ in planned], config, progress, data)
    wall = time.perf_counter() - started
    out.print(summary_table(summary))
    for failed in summary.failed:
        console.print(
            f"[bold red]failed[/bold red] {failed.arch}/seed{failed.seed}: {failed.error}", highlight=False
        )
        if failed.log_tail:
            console.print(failed.log_tail, highlight=False, markup=False)
    console.print(
        f"wall time {wall:.1f}s ({summary.launcher}); zoo at {planned[0][0].store.root}", highlight=False
    )
    write_json(json_path, {**summary.to_json(), "wall_seconds": wall, "recipe": recipe.to_json()})
    if summary.failed:
        names = ", ".join(f"{r.arch}/seed{r.seed}" for r in summary.failed)
        raise DDZError(
            f"{len(summary.failed)} job(s) failed: {names} (see above); fix the cause and run the same "
            "command again: finished jobs are skipped"
        )


def summary_table(summary) -> Table:
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
