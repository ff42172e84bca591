"""An experiment spec: one of the paper's tables or figures as a grid of `ddz distill` cells.

A spec (YAML, shipped in ddz/repro/specs/) names
- `grid`: blocks of axes (dataset, method, ipc, pool, alpha); each block is the product of its
  axes, the cells are the blocks' cells in order;
- `pools`: PTM pools as zoo query templates (`$dataset`, and the scale's variables), the guidance;
- `scales`: `paper` (the paper's data sets and settings) and `smoke` (the same grid on the embedded
  digits, small counts): the data set each spec data set stands for, the template variables, the
  zoo to train, runs, distillation and evaluation settings;
- `paper`: the numbers the paper reports, each with its table and row, at the cells they belong to.

Reading and validating a spec file is ddz.repro.spec_file's job.
"""

from __future__ import annotations

import itertools
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddz.errors import ConfigError, unknown_name

AXES = ("dataset", "method", "ipc", "pool", "alpha")
SCALES = ("paper", "smoke")
DEFAULT_ALPHA = "default"  # the alpha axis value that keeps ddz's default (the authors' table)


@dataclass(frozen=True)
class Pool:
    """A PTM pool: zoo query templates (none: the unguided baseline) and the guidance kind."""

    name: str
    label: str
    ptm: tuple[str, ...] = ()
    guidance: str = "auto"

    def queries(self, variables: dict[str, str]) -> list[str]:
        return [string.Template(t).substitute(variables) for t in self.ptm]


@dataclass(frozen=True)
class ZooNeed:
    """Seeds x archs of one data set that the scale's pools draw from."""

    dataset: str
    archs: tuple[str, ...]
    seeds: int
    epochs: int = 150
    snapshots: tuple[int, ...] | None = None  # None: the paper's snapshots that fit, and the last
    net: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Scale:
    """The settings a grid runs at."""

    name: str
    datasets: dict[str, str]  # spec data set -> the data set loaded (identity when absent)
    variables: dict[str, str]
    zoo: tuple[ZooNeed, ...] = ()
    runs: int = 5
    eval_archs: tuple[str, ...] = ("convnet3",)
    eval_models: int = 5
    eval_epochs: int | None = None
    iterations: dict[str, int] = field(default_factory=dict)  # per method; absent: the protocol's
    arch: str = "convnet3"  # the distillation net
    batch_real: int = 256
    outer_loop: int | None = None
    inner_loop: int | None = None
    net: tuple[tuple[str, Any], ...] = ()
    cclom_batch: int = 1024
    resolution: int | None = None

    def data_set(self, name: str) -> str:
        return self.datasets.get(name, name)

    @property
    def comparable(self) -> bool:
        """Whether ddz's numbers at this scale can stand beside the paper's (same data sets)."""
        return self.name == "paper"

    def not_comparable_note(self, spec_datasets: list[str]) -> str:
        used = dict.fromkeys(self.data_set(d) for d in spec_datasets)
        return f"not comparable: {', '.join(used)}"


@dataclass(frozen=True)
class PaperValue:
    """One number the paper reports (accuracy, %), where it stands, and the cell it belongs to."""

    at: dict[str, Any]  # axis -> value; "arch": the evaluation architecture (default: the first)
    mean: float
    std: float | None
    table: str
    row: str

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "table": self.table, "row": self.row}


@dataclass(frozen=True)
class PlotSpec:
    """A figure: ddz accuracy against `x` (an axis), one line per `lines` value, one panel per
    `panels` value, the baseline pool dotted."""

    x: str
    lines: str = "method"
    panels: str | None = None
    x_values: dict[str, float] = field(default_factory=dict)  # pool name -> x, when x is "pool"
    x_label: str = ""
    log_x: bool = False


@dataclass(frozen=True)
class Spec:
    name: str
    title: str
    source: Path
    grid: tuple[dict[str, tuple[Any, ...]], ...]
    pools: dict[str, Pool]
    scales: dict[str, Scale]
    paper: tuple[PaperValue, ...] = ()
    baseline: str | None = None  # the pool of the unguided cells every CLoM effect is measured from
    plot: PlotSpec | None = None
    notes: tuple[str, ...] = ()

    def scale(self, name: str) -> Scale:
        if name not in self.scales:
            raise ConfigError(unknown_name("scale", name, self.scales))
        return self.scales[name]

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(d for block in self.grid for d in block["dataset"]))


def template_variables(scale: Scale, dataset: str) -> dict[str, str]:
    """What a pool's query may name: $dataset (the cell's data set, as loaded), every spec data
    set name (as loaded at this scale), and the scale's variables."""
    return {**{k: scale.data_set(k) for k in scale.datasets}, **scale.variables, "dataset": dataset}


def coordinates(grid: tuple[dict[str, tuple[Any, ...]], ...]) -> list[dict[str, Any]]:
    """Every cell's axis values: each block's product, blocks in order, repeats dropped."""
    cells: dict[tuple, dict[str, Any]] = {}
    for block in grid:
        for values in itertools.product(*(block[axis] for axis in AXES)):
            cells.setdefault(values, dict(zip(AXES, values, strict=True)))
    return list(cells.values())


def paper_value_matches(value: PaperValue, coords: dict[str, Any]) -> bool:
    """Whether a paper value sits at a cell: every axis it names has the cell's value (alpha
    defaults to the default alpha)."""
    wanted = {"alpha": DEFAULT_ALPHA, **{k: v for k, v in value.at.items() if k != "arch"}}
    return all(coords[axis] == wanted_value for axis, wanted_value in wanted.items())
