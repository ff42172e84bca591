"""Which zoo runs a spec's cells read, at one scale.

The scale's `zoo` entries become the runs and snapshots they will train (`planned_runs`: each
entry's recipe, epochs and snapshots, as `ddz repro run` trains them); every cell's PTM and expert
queries are matched against those rows (`zoo_use`). A run no query reads, or trained past the
last epoch any query reads, is training nobody needs: spec_file rejects such a spec at its zoo
entry, so that every spec trains only the zoo runs its cells use.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ddz.errors import QueryError
from ddz.repro.grid import Cell, expand
from ddz.repro.spec import Spec, ZooNeed
from ddz.zoo.query import Query
from ddz.zoo.recipes import TrainRecipe, recipe_named
from ddz.zoo.records import dataset_slug


def need_recipe(need: ZooNeed) -> TrainRecipe:
    """The recipe a zoo entry trains by: its named recipe with the entry's epochs, snapshots (the
    recipe's that fit, and the last, when the entry gives none), net options and ZCA."""
    base = recipe_named(need.recipe)
    epochs = need.epochs or base.epochs
    snapshots = need.snapshots or base.snapshots_up_to(epochs)
    return replace(base, epochs=epochs, snapshots=snapshots, net=need.net, zca=need.zca or base.zca)


@dataclass(frozen=True)
class PlannedRun:
    """One (dataset, arch, seed) run a zoo entry trains, and the snapshots it will have."""

    entry: int  # index of its entry in the scale's zoo
    dataset: str  # as the zoo names it (dataset_slug)
    arch: str
    seed: int
    epochs: int
    snapshots: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.arch}/seed{self.seed}"


def planned_runs(zoo: tuple[ZooNeed, ...]) -> list[PlannedRun]:
    runs = []
    for index, need in enumerate(zoo):
        recipe = need_recipe(need)
        for arch in need.archs:
            for seed in need.seed_list:
                runs.append(PlannedRun(index, dataset_slug(need.dataset), arch, seed, recipe.epochs,
                                       tuple(sorted(recipe.snapshots))))
    return runs


def snapshots_read(query: Query, run: PlannedRun) -> set[int]:
    """The epochs of `run` that `query` selects (`@best` may pick any of them: all count)."""
    for axis, value in (("dataset", run.dataset), ("arch", run.arch), ("seed", f"seed{run.seed}")):
        glob = getattr(query, axis)
        if glob is not None and not glob.match(value):
            return set()
    if query.selector == "last":
        return {max(run.snapshots)}
    if query.snapshot is None:
        return set(run.snapshots)
    return {e for e in run.snapshots if query.snapshot.match(f"epoch{e}")}


def cell_queries(cell: Cell) -> list[str]:
    """The zoo queries a cell reads: its guidance pool, its experts, its soft labels' teacher."""
    return [*cell.ptm, *cell.experts, *cell.teacher]


@dataclass
class ZooUse:
    """The planned runs, the epochs the cells read from each, and the queries that read no
    planned run (external PTMs, or a zoo the spec does not train)."""

    runs: list[PlannedRun]
    read: dict[PlannedRun, set[int]] = field(default_factory=dict)
    unmatched: list[tuple[str, str]] = field(default_factory=list)  # (cell key, query)

    @property
    def used(self) -> list[PlannedRun]:
        return [run for run in self.runs if self.read.get(run)]

    @property
    def unused(self) -> list[PlannedRun]:
        return [run for run in self.runs if not self.read.get(run)]

    @property
    def overtrained(self) -> list[tuple[PlannedRun, int]]:
        """Runs read, but only up to an epoch before their last: (run, last epoch read)."""
        return [(run, max(self.read[run])) for run in self.used if max(self.read[run]) < run.epochs]


def zoo_use(spec: Spec, scale: str, cells: list[Cell] | None = None) -> ZooUse:
    cells = cells if cells is not None else expand(spec, scale)
    use = ZooUse(planned_runs(spec.scale(scale).zoo))
    parsed: dict[str, Query] = {}
    for cell in cells:
        for text in cell_queries(cell):
            if text not in parsed:
                try:
                    parsed[text] = Query.parse(text)
                except QueryError:
                    use.unmatched.append((cell.key, text))
                    continue
            hits = 0
            for run in use.runs:
                epochs = snapshots_read(parsed[text], run)
                if epochs:
                    use.read.setdefault(run, set()).update(epochs)
                    hits += 1
            if not hits:
                use.unmatched.append((cell.key, text))
    return use


def seeds_text(seeds: list[int]) -> str:
    """[0, 1, 2, 5] -> "seed0-2, seed5"."""
    parts, start = [], None
    for i, seed in enumerate(seeds):
        if start is None:
            start = seed
        if i + 1 == len(seeds) or seeds[i + 1] != seed + 1:
            parts.append(f"seed{start}" if start == seed else f"seed{start}-{seed}")
            start = None
    return ", ".join(parts)


def unused_message(spec: Spec, scale: str, entry: int, use: ZooUse) -> str | None:
    """One line for a zoo entry that trains runs (or epochs) no cell reads; None when it does not."""
    need = spec.scale(scale).zoo[entry]
    unused = [run for run in use.unused if run.entry == entry]
    if unused:
        by_arch: dict[str, list[int]] = {}
        for run in unused:
            by_arch.setdefault(run.arch, []).append(run.seed)
        listed = "; ".join(f"{need.dataset}/{arch} {seeds_text(seeds)}" for arch, seeds in by_arch.items())
        return (f"scales.{scale}.zoo trains {len(unused)} run(s) that no cell's query reads ({listed}); "
                "train only what the cells use (split the entry by archs and seeds)")
    late = [(run, last) for run, last in use.overtrained if run.entry == entry]
    if late:
        run, last = late[0]
        return (f"scales.{scale}.zoo trains {run.name} for {run.epochs} epochs but the cells read at most "
                f"epoch {last}; set epochs: {max(e for _, e in late)}")
    return None
