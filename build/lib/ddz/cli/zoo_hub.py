"""`ddz zoo lock | push | pull`: pin a query to exact files, publish snapshots, fill the cache."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from ddz.cli.common import RichProgress, console, out, print_json, settings
from ddz.cli.zoo import zoo_app

WHERE_HELP = "Filter on recorded metrics, e.g. 'test_acc>0.5 and epoch<=10' (ops < <= > >= == !=)."


def _pin(row) -> str:
    return f"{row.repo}@{row.revision[:12]}" if row.on_hub else "-"


@zoo_app.command("lock")
def lock_command(
    queries: list[str] = typer.Argument(..., help="Queries (or @lockfiles), e.g. 'digits/*@epoch4'."),
    output: Path = typer.Option(..., "-o", "--output", help="Lockfile to write (.json, or .yaml/.yml)."),
    where: str | None = typer.Option(None, "--where", help=WHERE_HELP),
    hub: str | None = typer.Option(None, "--hub", help="Pin at this hub (URL or registry name) instead."),
    revision: str | None = typer.Option(None, "--revision", help="Pin at this tag/branch/commit of the hub."),
) -> None:
    """Resolve queries to exact rows (hub, repo, commit, path, sha256); `--ptm @FILE` reuses them."""
    rows = settings.zoo().lock(queries, output, where, hub=hub, revision=revision)
    table = Table(title=f"{output} ({len(rows)} PTMs)")
    for column in ("name", "source", "repo@revision", "sha256"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row.name, row.source, _pin(row), (row.sha256 or "-")[:12])
    out.print(table)
    unpublished = [r.name for r in rows if r.source == "local" and not r.on_hub]
    if unpublished:
        console.print(
            f"note: {len(unpublished)} row(s) exist only in this machine's zoo (never pushed), e.g. "
            f"{unpublished[0]}; the lockfile reloads them here only"
        )


@zoo_app.command("push")
def push_command(
    query: str = typer.Argument(..., help="Local snapshots to publish, e.g. 'digits/*'."),
    hub: str = typer.Option(..., "--hub", help="Git repo folder, file://..., hf://ORG, or a registry name."),
    tag: str | None = typer.Option(None, "--tag", help="Tag for the commit (default v<date>)."),
    where: str | None = typer.Option(None, "--where", help=WHERE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Publish snapshots: one commit + tag per (dataset, arch) repo; record them in registry.yaml."""
    started = time.perf_counter()
    with RichProgress() as progress:
        result = settings.zoo().push(query, hub, tag=tag, where=where, progress=progress)
    seconds = time.perf_counter() - started
    if as_json:
        print_json({
            "hub": result.hub, "hub_name": result.hub_name, "registry": str(result.registry),
            "seconds": round(seconds, 3),
            "repos": [{"repo": r.repo, "revision": r.revision, "tag": r.tag, "snapshots": r.snapshots}
                      for r in result.repos],
        })
        return
    table = Table(title=f"pushed to {result.hub} in {seconds:.1f} s")
    for column in ("repo", "commit", "tag", "snapshots"):
        table.add_column(column, overflow="fold")
    for r in result.repos:
        table.add_row(r.repo, r.revision[:12], r.tag, str(len(r.snapshots)))
    out.print(table)
    console.print(f"registered {len(result.rows)} entries (hub {result.hub_name!r}) in {result.registry}")


@zoo_app.command("pull")
def pull_command(
    query: str = typer.Argument(..., help="Published snapshots to fetch, or @lockfile."),
    hub: str | None = typer.Option(None, "--hub", help="Fetch from this hub (URL or registry name) instead."),
    revision: str | None = typer.Option(None, "--revision", help="A tag/branch/commit instead of the pin."),
    where: str | None = typer.Option(None, "--where", help=WHERE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Download (or copy from a git hub) into the cache, verifying every file's sha256."""
    started = time.perf_counter()
    with RichProgress() as progress:
        pairs = settings.zoo().pull(query, hub=hub, revision=revision, where=where, progress=progress)
    seconds = time.perf_counter() - started
    if as_json:
        print_json({"seconds": round(seconds, 3),
                    "ptms": [{**row.to_json(), "file": str(path)} for row, path in pairs]})
        return
    table = Table(title=f"{len(pairs)} PTM file(s) verified in {seconds:.1f} s")
    for column in ("name", "repo@revision", "sha256", "file"):
        table.add_column(column, overflow="fold")
    for row, path in pairs:
        table.add_row(row.name, _pin(row), row.sha256[:12], str(path))
    out.print(table)
