"""Rows to verified local files: the local zoo when it holds a row's bytes, else the caches,
else the row's hub. Offline, what only a remote hub has is named in one OfflineError."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ddz.errors import NotFoundError
from ddz.progress import Progress
from ddz.zoo.paths import ZooPaths
from ddz.zoo.records import Resolved
from ddz.zoo.registry import Registry
from ddz.zoo.resolve import resolve
from ddz.zoo.sources import Source
from ddz.zoo.sources.hub import HubSource
from ddz.zoo.sources.local import LocalZoo


def materialize(rows: Sequence[Resolved], paths: ZooPaths, registry: Registry, offline: bool = False,
                progress: Progress | None = None) -> dict[str, Path]:
    """A verified local file for every zoo row, by name (external rows have none): each source
    in turn serves what it can of the rows still without one."""
    sources: list[Source] = [LocalZoo(paths.zoo), HubSource(registry, paths, offline)]
    files: dict[str, Path] = {}
    for source in sources:
        files.update(source.fetch([r for r in rows if r.source != "external" and r.name not in files],
                                  progress))
    return files


def pull(query: str, paths: ZooPaths, registry: Registry, *, hub: str | None = None,
         revision: str | None = None, where: str | None = None, offline: bool = False,
         progress: Progress | None = None) -> list[tuple[Resolved, Path]]:
    """Fill the caches with the published PTMs `query` selects (verified); (row, file) pairs.
    A pull fills the cache even when the local zoo holds the same bytes."""
    rows = resolve(query, paths, registry, where, offline=offline, hub=hub, revision=revision,
                   sources=("hub",))
    published = [replace(r, local_path=None) for r in rows if r.on_hub]
    if not published:
        raise NotFoundError(f"'{query}' selects nothing published on a hub; nothing to pull", query)
    files = HubSource(registry, paths, offline).fetch(published, progress)
    return [(row, files[row.name]) for row in published]
