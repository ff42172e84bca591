"""The zoo behind one small API: what the CLI, the demo and distillation call.

    zoo = Zoo(ZooPaths.under(Path("runs/demo/home")))      # or Zoo.from_env() at a CLI's edge
    rows = zoo.resolve("digits/*@epoch4")
    ptms = zoo.load_ptms(["digits/*@epoch4"], device="cuda")
    zoo.push("digits/*", "/srv/hub/my-lab"); zoo.pull("digits/*/*@last")

Layers, each importing only those below it:
    query (grammar)  <-  records, paths, hub_url, external_spec  <-  registry, lockfile
    <-  sources (local, hub, external)  <-  resolve, fetch, publish, loading, train, launch  <-  api

Loading PTMs and training need torch; resolving, listing, locking, pushing and pulling do not,
so those two import their layers when called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ddz.progress import Progress
from ddz.zoo.fetch import materialize, pull
from ddz.zoo.lockfile import write_lock
from ddz.zoo.paths import ZooPaths, offline_from_env
from ddz.zoo.publish import PushResult, push
from ddz.zoo.records import SOURCES, Resolved, SourceKind
from ddz.zoo.registry import Registry, load_registry
from ddz.zoo.resolve import resolve, resolve_all
from ddz.zoo.sources.local import LocalZoo

if TYPE_CHECKING:
    from ddz.data.base import ImageDataset
    from ddz.zoo.launch import GridSummary, LaunchConfig
    from ddz.zoo.ptm import PTM
    from ddz.zoo.recipes import TrainRecipe
    from ddz.zoo.records import RunState
    from ddz.zoo.runs import TrainJob


class Zoo:
    """The zoo at `paths`; `offline` keeps every call off the network (what is missing is named)."""

    def __init__(self, paths: ZooPaths, offline: bool = False):
        self.paths, self.offline = paths, offline

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Zoo:
        """DDZ_HOME, DDZ_REGISTRY, HF_HUB_CACHE / HF_HOME, HF_ENDPOINT, HF_HUB_OFFLINE / DDZ_OFFLINE."""
        return cls(ZooPaths.from_env(environ, cwd), offline_from_env(environ))

    @property
    def local(self) -> LocalZoo:
        return LocalZoo(self.paths.zoo)

    def registry(self) -> Registry:
        """The registry as the file stands now (other processes may add to it)."""
        return load_registry(self.paths.registry)

    def hub_url(self, value: str | None) -> str | None:
        """A hub URL, or the URL of the hub registered under that name."""
        return None if value is None else self.registry().resolve_hub(value)

    # --- queries ---

    def resolve(self, query: str, where: str | None = None, *, hub: str | None = None,
                revision: str | None = None, sources: Sequence[SourceKind] = SOURCES) -> list[Resolved]:
        return resolve(query, self.paths, self.registry(), where, offline=self.offline,
                       hub=self.hub_url(hub), revision=revision, sources=sources)

    def resolve_all(self, queries: Sequence[str], where: str | None = None, *, hub: str | None = None,
                    revision: str | None = None) -> list[Resolved]:
        return resolve_all(queries, self.paths, self.registry(), where, offline=self.offline,
                           hub=self.hub_url(hub), revision=revision)

    def lock(self, queries: Sequence[str], output: Path, where: str | None = None, *,
             hub: str | None = None, revision: str | None = None) -> list[Resolved]:
        """Resolve `queries` and write the rows to the lockfile `output`."""
        rows = self.resolve_all(queries, where, hub=hub, revision=revision)
        write_lock(output, rows, queries, where)
        return rows

    # --- moving bytes ---

    def push(self, query: str, hub: str, *, tag: str | None = None, where: str | None = None,
             progress: Progress | None = None) -> PushResult:
        return push(query, self.hub_url(hub), self.paths, tag=tag, where=where, progress=progress)

    def pull(self, query: str, *, hub: str | None = None, revision: str | None = None,
             where: str | None = None, progress: Progress | None = None) -> list[tuple[Resolved, Path]]:
        return pull(query, self.paths, self.registry(), hub=self.hub_url(hub), revision=revision,
                    where=where, offline=self.offline, progress=progress)

    def files(self, rows: Sequence[Resolved], progress: Progress | None = None) -> dict[str, Path]:
        """A verified local file for every zoo row (fetched when needed)."""
        return materialize(rows, self.paths, self.registry(), self.offline, progress)

    # --- PTMs and training (these import torch) ---

    def load_ptms(self, queries: Sequence[str], device: str = "cpu", where: str | None = None,
                  progress: Progress | None = None) -> list[PTM]:
        """Frozen PTMs for `queries` (each a query or `@lockfile`), every file verified by sha256."""
        from ddz.zoo.loading import load_ptms

        rows = self.resolve_all(queries, where)
        return load_ptms(rows, self.files(rows, progress), self.paths.hf_cache, device, self.offline)

    def load(self, name: str, device: str = "cpu") -> PTM:
        """One local snapshot by name, checked against its manifest."""
        from ddz.zoo.loading import load_snapshot

        record = self.local.record(name)
        return load_snapshot(record.path, record.sha256, device)

    def plan(self, dataset: str, archs: list[str], seeds: list[int], recipe: TrainRecipe,
             data: ImageDataset, data_root: str | Path = "data", device: str = "auto",
             resolution: int | None = None) -> list[tuple[TrainJob, RunState]]:
        """Every (arch, seed) job of a grid in this zoo, with its state, checked before anything runs."""
        from ddz.zoo.plan import plan_grid

        return plan_grid(dataset, archs, seeds, recipe, data, self.paths.zoo, data_root, device, resolution)

    def train(self, jobs: list[TrainJob], launch: LaunchConfig | None = None,
              progress: Progress | None = None, data: ImageDataset | None = None) -> GridSummary:
        """Run the jobs (finished ones are skipped) through the launcher; job folders under home/jobs."""
        from ddz.zoo.launch import run_grid

        return run_grid(jobs, launch, progress, data, self.paths.jobs)
